"""The image side of a promotion, in two steps so that tags come last: `stage` copies the image by digest (every
blob the destination lacks, mounted from the source repository on the same registry, several at once; index
children first), its referrers (scan records, SBOMs) and its cosign signature tag `sha256-<hex>.sig`, then
checks the digest at the destination (a destination tag that named the image already, read and hashed, is that
check); `tag` writes the tag (refused when it names another digest, unless forced) and the alias tags. What
the destination holds already (blobs, manifests by digest, listed referrers) is not written again. Nothing else
is copied: no `mlci-key-*` tag, no build-cache record (an artifact without a subject, so never a referrer). A
re-run reuses everything that already arrived."""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from mlci.core.errors import EnvironmentProblem, GateFailed, UsageError
from mlci.core.log import logger
from mlci.oci import referrers
from mlci.oci.copy import LayoutEndpoint, RegistryEndpoint, copy_blobs, manifest_tree
from mlci.oci.manifest import Manifest, NotFound, sha256_digest
from mlci.oci.progress import Progress
from mlci.oci.transport import Endpoint, ImageSource
from mlci.sign.tag import signature_tag

RELEASE = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")


class TagMoved(GateFailed):
    """A destination tag already names another digest (tags are immutable there)."""


@dataclass
class Staged:
    """What `stage` put into the destination (all but the tags)."""

    digest: str
    manifest: Manifest
    copied: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    bytes_copied: int = 0
    referrers: list[str] = field(default_factory=list)
    signature: str | None = None

    def count(self, copied: Iterable[str], reused: Iterable[str]) -> None:
        """Blobs sent and blobs found there, each listed once, in one list: one that several manifests share (the
        empty config of signatures and scan records) is copied for the first and found for the others."""
        for digest in copied:
            if digest not in self.copied:
                self.copied.append(digest)
        self.reused = [d for d in dict.fromkeys([*self.reused, *reused]) if d not in self.copied]


@dataclass
class Tagged:
    """The tags written, and the digest a forced move replaced."""

    tags: list[str]
    previous: str | None = None
    forced: bool = False


def alias_tags(tag: str) -> list[str]:
    """The alias tags of a release tag vX.Y.Z (or X.Y.Z): X.Y and X, with the tag's `v` if it has one."""
    match = RELEASE.fullmatch(tag)
    if match is None:
        return []
    prefix = "v" if tag.startswith("v") else ""
    major, minor, _ = match.groups()
    return [f"{prefix}{major}.{minor}", f"{prefix}{major}"]


def _newer_releases(dst: Endpoint, name: str) -> dict[str, str]:
    """For each alias of release `name`, a release of its series at the destination newer than `name` (the
    alias then stays where it is), read from the destination's tags."""
    version = _version(name)
    tags = list(dst.registry.tags(dst.repository)) if isinstance(dst, RegistryEndpoint) else \
        dst.layout.tags() if isinstance(dst, LayoutEndpoint) else []  # an archive is written whole: no tag list
    found: dict[str, str] = {}
    for tag in tags:
        other = _version(tag)
        if version is not None and other is not None and other > version:
            for alias in set(alias_tags(tag)) & set(alias_tags(name)):  # the same series, with or without `v`
                found.setdefault(alias, tag)
    return found


def _version(tag: str) -> tuple[int, int, int] | None:
    match = RELEASE.fullmatch(tag)
    return None if match is None else (int(match[1]), int(match[2]), int(match[3]))


def existing(dst: Endpoint, tag: str) -> str | None:
    """The digest `tag` names at the destination, None when it names nothing yet."""
    try:
        return dst.get_manifest(tag).digest
    except NotFound:
        return None


def check_tag(dst: Endpoint, tag: str, digest: str, *, force: bool) -> str | None:
    """Refuse (exit 1, before anything is copied) a tag that already names another digest, unless forced;
    returns the digest it named (None: a new tag)."""
    current = existing(dst, tag)
    if current is not None and current != digest and not force:
        raise TagMoved(f"tag {tag!r} already names {current} at the destination; promoting {digest} would move "
                       "it (tags are immutable there): promote under a new tag, or --force where "
                       "promote.allow_force permits (the move is recorded)")
    return current


def stage(src: ImageSource, src_ref: str | None, dst: Endpoint, top: Manifest | None = None, *,
          there: str | None = None, listing: referrers.Listing | None = None) -> Staged:
    """Copy the image `src_ref` names, its referrers and its signatures into `dst`, by digest, untagged (`top`:
    its manifest, when the caller has read it already; `there`: the digest check_tag found the destination's tag
    naming, read and hashed there a moment ago, so neither looked for nor read back again; `listing`: the source's
    referrers of `top`, when the caller has listed them)."""
    if isinstance(src, RegistryEndpoint) and isinstance(dst, RegistryEndpoint) \
            and src.registry.host == dst.registry.host and src.repository != dst.repository:
        dst.mount_from = (*dst.mount_from, src.repository)  # the same registry: blobs mounted, not sent
    if top is None or top.digest != src_ref:
        top = src.get_manifest(src_ref)
    manifests = manifest_tree(src, top)
    staged = Staged(top.digest, top)
    # A manifest named by its digest is there or not, never rewritten; a registry accepts a manifest only once the
    # blobs it names are there (distribution checks them on PUT), so those of a present manifest are not asked for.
    missing = [m for m in manifests if m.digest != there and not _present(dst, m.digest)]
    staged.count((), sorted({b.digest for m in manifests if m not in missing for b in m.blobs()}))
    _blobs(src, dst, missing, staged)
    for manifest in missing:
        dst.put_manifest(manifest, None, child=True)  # by digest: no tag yet
    given = listing is not None and listing.subject == top.digest
    listings: dict[str, referrers.Listing | None] = {top.digest: listing} if given else {}
    for manifest in manifests:
        if manifest.digest not in listings:
            listings[manifest.digest] = _listing(src, manifest.digest)
        staged.referrers.extend(_copy_referrers(src, dst, listings[manifest.digest], staged))
    staged.signature = _copy_signature(src, dst, top.digest, listings[top.digest], staged)
    if top.digest != there:
        arrived = dst.get_manifest(top.digest)
        if arrived.digest != top.digest or sha256_digest(arrived.data) != top.digest:
            raise EnvironmentProblem(f"the destination answers {arrived.digest} for {top.digest}: not the image sent")
    return staged


def tag(dst: Endpoint, staged: Staged, name: str, *, aliases: bool, force: bool, seen: str | None) -> Tagged:
    """Write `name` (then the aliases, which move by design) for the staged image; `seen` is what check_tag
    found. A tag that moved since that check (another promoter) is refused, not overwritten; one that named the
    image then is not read again (nothing is written to it: a forced move by another promoter is theirs to record)."""
    now = seen if seen == staged.digest else existing(dst, name)
    if now != seen and now != staged.digest:
        raise TagMoved(f"tag {name!r} moved at the destination during this promotion (now {now}): another "
                       "promotion got there first; nothing was tagged")
    if now != staged.digest:  # a re-promotion finds the tag naming the image already: nothing to write or re-check
        dst.put_manifest(staged.manifest, name)
    written = [name]
    newer = _newer_releases(dst, name) if aliases and alias_tags(name) else {}
    for alias in alias_tags(name) if aliases else []:
        if alias in newer:  # aliases move forward only: promoting 1.0.3 after 1.0.5 leaves 1.0 on 1.0.5
            logger.info("mlci: alias tag %s stays on the newer release %s", alias, newer[alias])
            continue
        dst.put_manifest(staged.manifest, alias)
        written.append(alias)
    dst.commit()
    after = existing(dst, name) if now != staged.digest else now
    if after != staged.digest:
        raise TagMoved(f"tag {name!r} names {after} right after it was written: another promotion wrote it at the "
                       "same moment; check the destination")
    return Tagged(written, previous=seen if seen != staged.digest else None,
                  forced=seen is not None and seen != staged.digest)


def _present(dst: Endpoint, digest: str) -> bool:
    """Whether the destination holds the manifest `digest` (a HEAD on a registry)."""
    if isinstance(dst, RegistryEndpoint):
        return dst.registry.has_manifest(dst.repository, digest)
    try:
        dst.get_manifest(digest)
    except NotFound:
        return False
    return True


def _blobs(src: ImageSource, dst: Endpoint, manifests: list[Manifest], staged: Staged) -> None:
    blobs = {b.digest: b for m in manifests for b in m.blobs()}
    with Progress(staged.digest, [b.size for b in blobs.values()]) as progress:
        result = copy_blobs(src, dst, list(blobs.values()), progress)
    staged.count(result.copied, result.reused)
    staged.bytes_copied += result.bytes_copied


def _listing(src: ImageSource, digest: str) -> referrers.Listing | None:
    """The source's referrers of `digest` (None: an oci-archive keeps none)."""
    if not isinstance(src, RegistryEndpoint | LayoutEndpoint | referrers.ReferrerSource):
        return None
    return referrers.listing(src, digest)


def _copy_referrers(src: ImageSource, dst: Endpoint, listing: referrers.Listing | None, staged: Staged) -> list[str]:
    """The referrers of a manifest at the source (records, SBOMs: its `listing`), copied and listed at the
    destination."""
    if listing is None:
        return []
    if not isinstance(dst, RegistryEndpoint | LayoutEndpoint):
        raise UsageError("an oci-archive destination cannot hold the image's referrers (scan records, SBOM): "
                         "promote into a registry or an oci: layout")
    if not listing.descriptors:
        return []
    copied = []
    listed = {d.digest for d in referrers.referrers(dst, listing.subject)}
    for descriptor in listing.descriptors:
        if descriptor.digest in listed:  # a re-run: stored and listed there already
            copied.append(descriptor.digest)
            continue
        manifest = src.get_manifest(descriptor.digest)
        _blobs(src, dst, [manifest], staged)
        referrers.put_referrer(dst, manifest)
        copied.append(manifest.digest)
    return copied


def _copy_signature(src: ImageSource, dst: Endpoint, digest: str, listing: referrers.Listing | None,
                    staged: Staged) -> str | None:
    """cosign's signature manifest of `digest`, copied under its tag (not looked for when the source's `listing`
    read a tag list without it); one already at the destination keeps its signatures and gains the source's
    (mlci.sign.cosign.unite: layers appended, config rebuilt, as cosign does)."""
    tag = signature_tag(digest)
    if listing is not None and not listing.may_hold(tag):
        return None
    try:
        signatures = src.get_manifest(tag)
    except NotFound:
        return None
    if not isinstance(dst, RegistryEndpoint | LayoutEndpoint):
        raise UsageError("an oci-archive destination cannot hold the image's signatures: promote into a registry "
                         "or an oci: layout")
    from mlci.sign import cosign

    _blobs(src, dst, [signatures], staged)
    return cosign.unite(dst, digest, signatures).digest
