"""Referrers: artifacts attached to an image manifest by their `subject` (a scan record, an SBOM, later a
signature or promotion's evidence), pushed and listed as distribution-spec 1.1 says, in a registry or a layout.

An artifact is an OCI image manifest with `artifactType`, a config (the empty one `{}` by default), its payloads
as layers and `subject` = the image manifest's descriptor. Its descriptor in any listing carries the
artifactType (or the config's media type) and a copy of its annotations, as the spec asks.

**A registry with the referrers API** (the PUT answers `OCI-Subject`, or GET /v2/<name>/referrers/<digest>
lists the new manifest) needs nothing more, and is listed through that API.

**A registry without one** (Debian's docker-registry 2.8, GHCR, Nexus, ...) gets the spec's fallback: an image
index tagged `sha256-<hex>` lists every referrer of the image, whoever wrote it. It is shared by every writer
and updated by read-modify-write, and the registry offers no compare-and-swap: distribution 2.8 ignores
If-Match on a manifest PUT (it is sent anyway; a registry that honours it answers 412 and the update re-reads).
So mlci also tags each referrer it pushes, `sha256-<subject hex>.ref-<32 hex of the referrer's digest>` (the
journal): one tag per referrer, written once and shared by no one, so it cannot be lost to a concurrent write.
mlci's listing is the index plus the journal (the index is read only when the tag list, read for the journal,
holds its tag: the listing trusts the registry's tag list, as the journal does); every update rebuilds the
index from what it read, every entry it saw earlier in the same update (unless that manifest was deleted) and
the whole journal. One update:

1. read the journal (the tag list) and the manifests of journal tags not seen yet, then the index, and at once
   PUT it (If-Match its ETag; If-None-Match: * for a new one) if it lacks an entry; that PUT is sent once, never
   retried blindly (a late retry could land over a newer index);
2. read it again: anything missing (another writer's PUT landed over ours) goes back to 1 after a jittered
   backoff; once complete, wait SETTLE seconds (jittered) and read once more, so that a writer whose read came
   before our PUT but whose PUT landed after our check is caught too. An update that finds everything listed
   writes nothing and waits for nothing (attaching the same artifact again).

What is left: a writer whose read preceded our PUT and whose PUT lands after our last check (which comes at least
SETTLE = 0.2 s after our entry was seen in place: a stalled connection or a slow writer), or a tool that does not
follow this protocol, can drop our entry from the index. The journal keeps it visible to mlci, and the next mlci
update for the image puts it back; until then a reader of the index alone (trivy, cosign) does not see it. A
registry with the referrers API has no such window. An index that is not an OCI image index (or would outgrow the
4 MiB registries accept) is never overwritten: attaching fails in one line, listing warns and uses the journal.
Entries that are not descriptors are skipped, and dropped at the next write; other tools' entries are kept as they
are.

**An OCI layout** (image-spec 1.1) lists a referrer in index.json, untagged, with its artifactType and annotations;
its manifest and blobs are blobs of the layout. index.json is changed under the layout's lock (no race).
An oci-archive is not supported (copy it to a layout or a registry first).
"""
from __future__ import annotations

import datetime
import io
import json
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from mlci.core.bounded import Unreadable
from mlci.core.errors import EnvironmentProblem, UsageError
from mlci.core.http import RETRY_STATUSES
from mlci.core.log import logger
from mlci.oci.copy import LayoutEndpoint, RegistryEndpoint
from mlci.oci.layout import parse_index
from mlci.oci.manifest import (
    MANIFEST_TYPES,
    MAX_MANIFEST,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Manifest,
    ManifestError,
    NotFound,
    check_digest,
    sha256_digest,
)
from mlci.oci.registry import Registry
from mlci.oci.transport import ImageSource, Opener

CREATED = "org.opencontainers.image.created"
TITLE = "org.opencontainers.image.title"
EMPTY = b"{}"
EMPTY_CONFIG = Descriptor(OCI_EMPTY, sha256_digest(EMPTY), len(EMPTY))
JOURNAL = ".ref-"
ATTEMPTS = 12  # rounds of one fallback update (read, maybe write) before it gives up
SETTLE = 0.2  # seconds (plus up to as much jitter) between the check that found the index complete and the last
MAX_JOURNAL_READS = 256  # journal manifests read in one listing (those the index does not already list)
REFERRER_TYPES = (OCI_MANIFEST, OCI_INDEX)  # what can carry a `subject`
_jitter = random.SystemRandom()


@runtime_checkable
class ReferrerSource(ImageSource, Protocol):
    """A read-only source that lists the referrers it holds itself (a verified bundle's layout,
    mlci/bundle/source.py): read like a layout, never written."""

    def has_blob(self, digest: str) -> bool:
        """Whether the blob is there."""

    def referrers_of(self, digest: str) -> list[Descriptor]:
        """The referrers of the manifest `digest` it holds (descriptors as a layout's index.json lists them)."""


class ReferrersError(EnvironmentProblem):
    """A referrer could not be attached or listed (names the image, the tag or the entry, and why)."""


@dataclass(frozen=True)
class Blob:
    """One payload of an artifact: its bytes, media type and the annotations of its descriptor."""

    media_type: str
    data: bytes
    annotations: Mapping[str, str] = field(default_factory=dict)

    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, sha256_digest(self.data), len(self.data), dict(self.annotations))


def referrers_tag(digest: str) -> str:
    """The fallback index's tag for a subject: `sha256-<hex>` (the spec's tag schema)."""
    return check_digest(digest, "referrers subject").replace(":", "-")


def journal_tag(subject: str, referrer: str) -> str:
    """The tag mlci gives a referrer of `subject` in a registry without the referrers API (104 characters)."""
    return referrers_tag(subject) + JOURNAL + check_digest(referrer, "referrer")[7:39]


def created(moment: datetime.datetime) -> str:
    """A time as `org.opencontainers.image.created` wants it (RFC 3339, UTC, seconds)."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def artifact_manifest(subject: Descriptor, artifact_type: str, layers: Sequence[Descriptor],
                      annotations: Mapping[str, str] | None = None, config: Descriptor = EMPTY_CONFIG) -> Manifest:
    """An artifact manifest whose subject is `subject` (deterministic bytes: the same inputs, the same digest)."""
    body: dict[str, Any] = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
        "config": config.to_json(), "layers": [layer.to_json() for layer in layers or [EMPTY_CONFIG]],
        "subject": Descriptor(subject.media_type, subject.digest, subject.size).to_json(),
    }
    if annotations:
        body["annotations"] = dict(sorted(annotations.items()))
    return Manifest.of(json.dumps(body, separators=(",", ":")).encode(), OCI_MANIFEST)


def referrer_descriptor(manifest: Manifest) -> Descriptor:
    """How a listing describes a referrer: its artifactType (else its config's media type, for an image manifest)
    and a copy of its annotations. ManifestError when it is not a manifest with a subject."""
    body = manifest.body()
    if manifest.subject() is None:
        raise ManifestError(f"manifest {manifest.digest}: has no subject (not a referrer)")
    artifact = body.get("artifactType")
    if not isinstance(artifact, str) or not artifact:
        config = body.get("config")
        artifact = config.get("mediaType") if isinstance(config, dict) and not manifest.is_index else None
    annotations = body.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
        raise ManifestError(f"manifest {manifest.digest}: annotations: not a string map")
    return Descriptor(manifest.media_type, manifest.digest, len(manifest.data), dict(annotations),
                      artifact_type=artifact if isinstance(artifact, str) and artifact else None)


def subject_of(source: ImageSource, reference: str) -> Descriptor:
    """The descriptor of the image manifest `reference` names (a tag or a digest), to attach referrers to."""
    manifest = source.get_manifest(reference)
    if manifest.media_type not in MANIFEST_TYPES:
        raise ReferrersError(f"{reference}: a {manifest.media_type[:80]} is not an image manifest or index")
    return manifest.descriptor()


def attach(endpoint: RegistryEndpoint | LayoutEndpoint, subject: Descriptor, artifact_type: str,
           payloads: Sequence[Blob], annotations: Mapping[str, str] | None = None,
           config: Blob | None = None) -> Descriptor:
    """Push an artifact of `payloads` (its layers, in order) whose subject is `subject`, and list it as a referrer
    of it; returns its descriptor. Blobs already there are not uploaded again, and the same artifact attached
    twice is one referrer."""
    _check_endpoint(endpoint, "attached")
    empty = [Blob(OCI_EMPTY, EMPTY)] if config is None or not payloads else []
    for blob in [*empty, *([config] if config else []), *payloads]:
        descriptor = blob.descriptor()
        if not endpoint.has_blob(descriptor.digest):
            endpoint.put_blob(descriptor, _opener(blob.data))
    manifest = artifact_manifest(subject, artifact_type, [b.descriptor() for b in payloads], annotations,
                                 config.descriptor() if config else EMPTY_CONFIG)
    return put_referrer(endpoint, manifest)


def _opener(data: bytes) -> Opener:
    return lambda: io.BytesIO(data)


def put_referrer(endpoint: RegistryEndpoint | LayoutEndpoint, manifest: Manifest) -> Descriptor:
    """Store a referrer whose blobs are already there (an artifact copied from elsewhere, as promotion does) and
    list it: the referrers API, else the fallback index and the journal; in a layout, index.json."""
    descriptor = referrer_descriptor(manifest)
    subject = manifest.subject()
    assert subject is not None  # referrer_descriptor checked it
    _check_endpoint(endpoint, "attached")
    if isinstance(endpoint, LayoutEndpoint):
        endpoint.put_referrer(manifest, descriptor)
        return descriptor
    registry, repo = endpoint.registry, endpoint.repository
    response = registry.push_manifest(repo, manifest.digest, manifest)
    if response.headers.get("OCI-Subject") == subject.digest or _api_lists(registry, repo, subject.digest, descriptor):
        return descriptor
    registry.put_manifest(repo, journal_tag(subject.digest, manifest.digest), manifest)
    try:
        _FallbackUpdate(registry, repo, subject.digest, descriptor).run()
    except ReferrersError as exc:
        tag = journal_tag(subject.digest, manifest.digest)
        raise ReferrersError(f"{exc} (the referrer is pushed and tagged {tag}; mlci finds it, other tools may not)"
                             ) from None
    return descriptor


@dataclass(frozen=True)
class Listing:
    """The referrers of one subject as listed once, and, where that read the registry's tag list (no referrers
    API), every tag the list holds under the subject's `sha256-<hex>` prefix: the fallback index, mlci's journal,
    cosign's `.sig`. A caller that needs both (a promotion: the scan records, every referrer, the signature tag)
    reads them once."""

    subject: str
    descriptors: tuple[Descriptor, ...]
    tags: frozenset[str] | None = None  # None: no tag list was read (a referrers API, a layout, a bundle)

    def of_type(self, artifact_type: str | None) -> list[Descriptor]:
        """The descriptors of `artifact_type` (all of them for None)."""
        return [d for d in self.descriptors if artifact_type is None or d.artifact_type == artifact_type]

    def may_hold(self, tag: str) -> bool:
        """False only when the tag list was read and lacks `tag` (a tag under the subject's prefix): the listing
        trusts the registry's tag list for it as it does for the fallback index."""
        return self.tags is None or tag in self.tags


def listing(source: RegistryEndpoint | LayoutEndpoint | ReferrerSource, digest: str,
            artifact_type: str | None = None) -> Listing:
    """The referrers of the manifest `digest` (of `artifact_type` only, if given): the referrers API, else the
    fallback index and mlci's journal; in a layout, index.json; a ReferrerSource lists its own. A fallback index
    that cannot be read as one is a warning and counts as empty, as the spec says; an entry that is not a
    descriptor is skipped."""
    check_digest(digest, "referrers subject")
    tags = None
    if isinstance(source, ReferrerSource):
        found = source.referrers_of(digest)
    elif isinstance(source, LayoutEndpoint):
        found = _layout_referrers(source, digest)
    else:
        _check_endpoint(source, "listed")
        found, tags = _registry_referrers(source.registry, source.repository, digest, artifact_type)
    return Listing(digest, tuple(d for d in found if artifact_type is None or d.artifact_type == artifact_type),
                   tags)


def referrers(source: RegistryEndpoint | LayoutEndpoint | ReferrerSource, digest: str,
              artifact_type: str | None = None) -> list[Descriptor]:
    """listing()'s descriptors."""
    return list(listing(source, digest, artifact_type).descriptors)


def _check_endpoint(endpoint: object, what: str) -> None:
    if not isinstance(endpoint, (RegistryEndpoint, LayoutEndpoint)):
        kind = "an oci-archive" if type(endpoint).__name__ == "ArchiveEndpoint" else type(endpoint).__name__
        raise UsageError(f"referrers are {what} in a registry or an OCI layout, not in {kind} (copy the image to "
                         "oci:DIR or a registry first)")


# --- registries ------------------------------------------------------------------------------------------------


def _api_lists(registry: Registry, repo: str, subject: str, descriptor: Descriptor) -> bool:
    """Whether the registry's referrers API lists `descriptor` (False when it has no such API)."""
    pages = registry.referrers_pages(repo, subject, descriptor.artifact_type)
    if pages is None:
        return False
    return any(d.digest == descriptor.digest for d in _entries(pages, f"{repo}: referrers of {subject}"))


def _registry_referrers(registry: Registry, repo: str, digest: str, artifact_type: str | None
                        ) -> tuple[list[Descriptor], frozenset[str] | None]:
    """The referrers, and the subject's tags when the tag list was read for them (None: the referrers API)."""
    where = f"registry {registry.host}: {repo}:{referrers_tag(digest)}"
    pages = registry.referrers_pages(repo, digest, artifact_type)
    if pages is not None:
        return _entries(pages, f"registry {registry.host}: {repo}: referrers of {digest}"), None
    tags = _subject_tags(registry, repo, digest)
    try:  # no such tag: nothing to read
        index = _read_index(registry, repo, digest) if referrers_tag(digest) in tags else None
    except ReferrersError as exc:
        logger.warning("mlci: warning: %s; its entries are ignored", exc)
        index = None
    listed = _descriptors(index.entries if index else [], where)
    return listed + _journal_descriptors(registry, repo, digest, _journal(tags, digest),
                                         {d.digest for d in listed}), tags


@dataclass
class _Index:
    """The fallback index as read: its JSON (entries kept as they are) and the registry's ETag."""

    body: dict[str, Any]
    etag: str | None

    @property
    def entries(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self.body["manifests"]
        return entries


def _read_index(registry: Registry, repo: str, digest: str) -> _Index | None:
    """The fallback index of `digest` (None when the tag does not exist); ReferrersError when the tag holds
    anything but an OCI image index of descriptors."""
    tag = referrers_tag(digest)
    where = f"registry {registry.host}: {repo}:{tag}"
    try:
        manifest, etag = registry.fetch_manifest(repo, tag)
    except NotFound:
        return None
    except EnvironmentProblem as exc:  # too large, or it broke off
        raise ReferrersError(f"{where}: the referrers index cannot be read ({exc})") from None
    if manifest.media_type != OCI_INDEX:
        raise ReferrersError(f"{where}: holds a {manifest.media_type[:80]}, not the OCI image index of referrers")
    try:
        body = parse_index(manifest.data, where)
    except EnvironmentProblem as exc:
        raise ReferrersError(str(exc)) from None
    if body.get("mediaType", OCI_INDEX) != OCI_INDEX or body.get("schemaVersion") != 2:
        raise ReferrersError(f"{where}: not an OCI image index (mediaType/schemaVersion)")
    return _Index(body, etag)


def _entries(pages: Iterable[bytes], where: str) -> list[Descriptor]:
    """The descriptors of a referrers API answer's pages."""
    found: list[Descriptor] = []
    for page in pages:
        try:
            body = parse_index(page, where)
        except EnvironmentProblem as exc:
            raise ReferrersError(str(exc)) from None
        found += _descriptors(body["manifests"], where)
    return found


def _descriptors(entries: Iterable[dict[str, Any]], where: str) -> list[Descriptor]:
    """Entries that are descriptors, each digest once; the rest are skipped with one warning."""
    found: dict[str, Descriptor] = {}
    bad: list[str] = []
    for i, entry in enumerate(entries):
        try:
            descriptor = Descriptor.from_json(entry, f"manifests[{i}]")
        except ManifestError as exc:
            bad.append(str(exc))
            continue
        found.setdefault(descriptor.digest, descriptor)
    if bad:
        logger.warning("mlci: warning: %s: %d entr%s skipped, not descriptors (first: %s)", where, len(bad),
                       "y" if len(bad) == 1 else "ies", bad[0][:160])
    return list(found.values())


def _subject_tags(registry: Registry, repo: str, subject: str) -> frozenset[str]:
    """The tags the registry lists that begin with the subject's `sha256-<hex>` (the fallback index, mlci's
    journal, cosign's `.sig`...); none for a repository the registry does not know."""
    index_tag = referrers_tag(subject)
    # A strict prefix sorts before all of them; every page is looked through: registries may not sort.
    return frozenset(t for t in registry.tags(repo, last=index_tag[:-1]) if t.startswith(index_tag))


def _journal(tags: Iterable[str], subject: str) -> dict[str, str]:
    """mlci's journal of the referrers of `subject` among `tags`: referrer digest prefix -> tag."""
    prefix = referrers_tag(subject) + JOURNAL
    return {t[len(prefix):]: t for t in tags if t.startswith(prefix) and len(t) == len(prefix) + 32}


def _journal_descriptors(registry: Registry, repo: str, subject: str, journal: Mapping[str, str],
                         known: set[str]) -> list[Descriptor]:
    """The journal's referrers that `known` does not list, read from their tags (a tag that does not hold a
    referrer of `subject` is skipped with a warning)."""
    listed = {d[7:39] for d in known}
    missing = [tag for short, tag in sorted(journal.items()) if short not in listed]
    if len(missing) > MAX_JOURNAL_READS:
        logger.warning("mlci: warning: registry %s: %s: %d referrer tags the index does not list; reading %d",
                       registry.host, repo, len(missing), MAX_JOURNAL_READS)
    found: list[Descriptor] = []
    for tag in missing[:MAX_JOURNAL_READS]:
        try:
            manifest = registry.get_manifest(repo, tag)
            descriptor = referrer_descriptor(manifest)
            subject_digest = manifest.subject().digest  # type: ignore[union-attr]  # checked just above
        except NotFound:
            continue  # deleted since the tag list was read
        except EnvironmentProblem as exc:
            logger.warning("mlci: warning: registry %s: %s:%s: not a referrer (%s); skipped", registry.host, repo,
                           tag, exc)
            continue
        if subject_digest != subject or not tag.endswith(descriptor.digest[7:39]):
            logger.warning("mlci: warning: registry %s: %s:%s: not a referrer of %s; skipped", registry.host, repo,
                           tag, subject)
            continue
        found.append(descriptor)
    return found


class _FallbackUpdate:
    """One read-modify-write of the fallback index that adds `ours` (see the module's docstring)."""

    def __init__(self, registry: Registry, repo: str, subject: str, ours: Descriptor) -> None:
        self.registry, self.repo, self.subject, self.ours = registry, repo, subject, ours
        self.where = f"registry {registry.host}: {repo}:{referrers_tag(subject)}"
        self.seen: dict[str, dict[str, Any]] = {ours.digest: ours.to_json()}  # every entry this update saw
        self.gone: set[str] = set()  # entries seen, then dropped by someone, whose manifest is deleted
        self.conditional = True  # If-Match / If-None-Match sent (until a registry refuses them for no change)
        self.refused: tuple[str | None, ...] | None = None  # the ETag a 412 answered, if the last PUT got one
        self.problem = ""  # why the last PUT did not land, if it did not

    def run(self) -> None:
        self._remember(_read_index(self.registry, self.repo, self.subject))
        wrote = settled = backed_off = False
        conflicts = 0
        for _round in range(ATTEMPTS):
            # the index is read whatever the tag list says
            journal = _journal(_subject_tags(self.registry, self.repo, self.subject), self.subject)
            for descriptor in _journal_descriptors(self.registry, self.repo, self.subject, journal, set(self.seen)):
                self.seen.setdefault(descriptor.digest, descriptor.to_json())
            index = _read_index(self.registry, self.repo, self.subject)  # then the PUT at once: a short window
            self._remember(index)
            have = {str(e.get("digest")) for e in index.entries} if index else set()
            missing = [d for d in self.seen if d not in have and d not in self.gone]
            if not missing:
                if not wrote or settled:
                    return
                time.sleep(SETTLE + _jitter.uniform(0, SETTLE))
                settled = True
                continue
            if wrote and not backed_off:  # our PUT was overwritten (or refused): look, back off, read again
                conflicts += 1
                self._drop_gone(missing)  # entries another writer dropped go back only if they exist
                time.sleep(_jitter.uniform(0, min(1.0, 0.05 * 2 ** conflicts)))
                backed_off = True
                continue
            self._write(index, missing)
            wrote, settled, backed_off = True, False, False
        raise ReferrersError(f"{self.where}: the referrers index could not be updated in {ATTEMPTS} rounds "
                             f"(last: {self.problem or 'another writer changed it each time'}); try again")

    def _remember(self, index: _Index | None) -> None:
        """Every entry of the index as read joins `seen` (kept as it is, whoever wrote it)."""
        for entry in index.entries if index else []:
            digest = entry.get("digest")
            if isinstance(digest, str) and _is_entry(entry):
                self.seen.setdefault(digest, entry)

    def _drop_gone(self, digests: Iterable[str]) -> bool:
        """Mark the entries whose manifest is gone (deleted: it stays deleted, and a registry refuses an index that
        lists one); False when none is."""
        before = len(self.gone)
        for digest in digests:
            if digest != self.ours.digest and digest not in self.gone \
                    and not self.registry.has_manifest(self.repo, digest):
                self.gone.add(digest)
        return len(self.gone) > before

    def _write(self, index: _Index | None, missing: list[str]) -> None:
        body: dict[str, Any] = dict(index.body) if index else {}
        entries = [e for e in (index.entries if index else []) if _is_entry(e) and e.get("digest") not in self.gone]
        junk = sum(1 for e in index.entries if not _is_entry(e)) if index else 0
        if junk:
            logger.warning("mlci: warning: %s: %d entries that are not descriptors dropped from the referrers index",
                           self.where, junk)
        body.update(schemaVersion=2, mediaType=OCI_INDEX, manifests=[*entries, *(self.seen[d] for d in missing)])
        manifest = Manifest.of(json.dumps(body, separators=(",", ":")).encode(), OCI_INDEX)
        if len(manifest.data) > MAX_MANIFEST:
            raise ReferrersError(f"{self.where}: the referrers index would exceed {MAX_MANIFEST} bytes "
                                 f"({len(body['manifests'])} entries)")
        based_on = (index.etag,) if index else (None,)
        if self.refused == based_on:  # a 412 for an index nobody changed: this registry's conditions are broken
            logger.info("mlci: %s: the registry refused a conditional PUT of an unchanged index; sending it plain",
                        self.where)
            self.conditional = False
        condition = {} if not self.conditional else \
            {"If-Match": index.etag} if index and index.etag else {} if index else {"If-None-Match": "*"}
        self.refused = None
        try:
            response = self.registry.push_manifest(self.repo, referrers_tag(self.subject), manifest,
                                                   headers=condition, once=True, accept=tuple(range(200, 600)))
        except EnvironmentProblem as exc:  # the connection dropped; sent once: the next round reads what is there
            self.problem = str(exc)
            logger.info("mlci: %s: %s; reading the index again", self.where, exc)
            return
        status, errors = response.status_code, self.registry.error_codes(response)
        if status == 201:
            return
        self.problem = f"{status} on PUT: {errors[:200]}"
        if status == 412:
            logger.info("mlci: %s changed underneath (412); reading it again", self.where)
            self.refused = based_on
        elif status == 400 and "MANIFEST_BLOB_UNKNOWN" in errors \
                and self._drop_gone([str(e.get("digest")) for e in body["manifests"]]):
            logger.info("mlci: %s lists manifests that are gone; they are dropped", self.where)
        elif status in RETRY_STATUSES:
            logger.info("mlci: %s: %s; reading the index again", self.where, self.problem)
        else:
            raise ReferrersError(f"{self.where}: the registry refused the referrers index ({self.problem})")


def _is_entry(entry: object) -> bool:
    try:
        Descriptor.from_json(entry, "entry")
    except ManifestError:
        return False
    return True


# --- layouts -------------------------------------------------------------------------------------------------------


def _layout_referrers(source: LayoutEndpoint, digest: str) -> list[Descriptor]:
    """Manifests listed in index.json whose subject is `digest` (the entry's artifactType and annotations when it
    has them, else those of the manifest)."""
    layout = source.layout
    if not (layout.root / "index.json").exists():
        return []
    found: list[Descriptor] = []
    for entry in _descriptors(layout.entries(), f"{layout.root}/index.json"):
        if entry.media_type not in REFERRER_TYPES or not layout.has_blob(entry.digest):
            continue
        try:
            data = layout.read_manifest(entry.digest)
        except Unreadable as exc:
            logger.warning("mlci: warning: %s; skipped", exc)
            continue
        if sha256_digest(data) != entry.digest:  # larger than any manifest, or not what its name says
            continue
        try:
            manifest = Manifest(data, entry.media_type, entry.digest)
            subject = manifest.subject()
            if subject is not None and subject.digest == digest:
                found.append(entry if entry.artifact_type else referrer_descriptor(manifest))
        except ManifestError:
            continue  # an image, or a manifest that is not JSON: not a referrer
    return found
