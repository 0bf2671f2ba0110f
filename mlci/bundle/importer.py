"""`mlci bundle import` as a library: the whole bundle verified first (signature, bundle.json, every member), then
the target environment's promotion policy (the source's ref, the scan record it carries under today's scan
policy, the image's signature, immutable tags, approvals), the incremental base checked at the destinations, and
only then the writes: blobs, manifests, referrers and signatures, the DVC objects, the Nexus raw artifacts, the
tags last, the GitOps record. Nothing is written to any destination before all of it has passed.

The bundle is read twice, never staged (docs/airgap.md): once by verify(), once to push, each member
hashed again on the second read (mlci/bundle/source.py) so that a bundle changed in between stops the import
before anything is tagged or recorded. A re-run after an interruption sends only what has not arrived: the
registry, the DVC remote and Nexus are asked what they have, and the GitOps record of an import has an id derived
from the bundle, so that a record that landed is not written twice."""
from __future__ import annotations

import datetime
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from mlci.core.errors import EnvironmentProblem, GateFailed, UsageError
from mlci.core.log import logger

if TYPE_CHECKING:
    from mlci.bundle.manifest import BundleManifest, ImageEntry, Provenance
    from mlci.bundle.source import BundleSource
    from mlci.bundle.verify import Verified
    from mlci.nexus.raw import RawRepository, Uploaded
    from mlci.oci.manifest import Descriptor
    from mlci.oci.progress import Progress
    from mlci.oci.reference import ImageRef
    from mlci.oci.transport import Endpoint, Opener
    from mlci.promote.approvals import Approvals
    from mlci.promote.copy import Tagged
    from mlci.promote.policy import SourceRef
    from mlci.promote.record import PromotionRecord
    from mlci.promote.settings import Environment
    from mlci.scan.record import ScanRecord
    from mlci.settings import Config
    from mlci.sign.keys import PublicKey

SHOWN = 3  # missing base blobs or objects named in a refusal


@dataclass(frozen=True)
class ImportRequest:
    """What the release manager inside asked for."""

    bundle: Path
    public_key: PublicKey
    destination: str | None = None  # --to docker://HOST/REPO (default: the environment's image)
    environment: str | None = None  # default: the bundle's provenance.environment
    dvc_remote: str | None = None  # --dvc-remote NAME (default: the environment's dvc_remote)
    nexus_raw: str | None = None  # --nexus-raw URL (default: the environment's nexus_raw)
    force: bool = False


@dataclass
class Imported:
    """What an import did."""

    digest: str
    destination: str
    environment: str
    tags: list[str]
    copied: list[str] = field(default_factory=list)  # blob digests sent
    reused: list[str] = field(default_factory=list)  # already at the destination (a re-run)
    summary: dict[str, Any] = field(default_factory=dict)  # for --json


@dataclass(frozen=True)
class _Plan:
    """Everything the checks established, before the first write."""

    name: str  # the environment
    env: Environment
    image: ImageEntry
    blobs: list[Descriptor]  # every blob a copy of the image (referrers, signature) reads
    dst: Endpoint
    dst_ref: ImageRef
    seen: str | None  # what the tag names at the destination now
    scan: ScanRecord | None
    signature: str | None  # the payload digest of the image's signature by the bundle's key
    approved: Approvals
    dvc_remote: str | None
    nexus: RawRepository | None


def import_bundle(request: ImportRequest, config: Config, root: Path, config_dir: Path, environ: Mapping[str, str],
                  now: datetime.datetime | None = None) -> Imported:
    """Verify everything, check the policy and the base, then write; BundleInvalid / GateFailed before any write."""
    from mlci.bundle import verify
    from mlci.bundle.archive import open_bundle
    from mlci.bundle.source import BundleSource, Keeping

    moment = now or datetime.datetime.now(datetime.UTC)
    if request.force and not config.promote.allow_force:
        raise UsageError("--force moves an existing tag; mlci.yaml must allow it (promote.allow_force: true)")
    keeping = Keeping(open_bundle(request.bundle))
    source: BundleSource | None = None
    try:
        verified = verify.verify(keeping, request.public_key)
        source = BundleSource(request.bundle, keeping.reader, verified.manifest, kept=keeping.kept,
                              order=keeping.order, heads=keeping.heads)
        logger.info("mlci: %s: verified: %d files, %.1f MB, signed by %s", keeping.where,
                    len(verified.manifest.files), verified.bytes_read / 1e6, verified.keyid[:16])
        plan = _checked(request, config, root, config_dir, environ, verified, source, moment)
        return _written(plan, request, config, root, environ, verified, source, moment)
    finally:
        if source is not None:
            source.close()
        else:
            keeping.close()


def _checked(request: ImportRequest, config: Config, root: Path, config_dir: Path, environ: Mapping[str, str],
             verified: Verified, source: BundleSource, moment: datetime.datetime) -> _Plan:
    """The target environment's policy and the incremental base, with nothing written yet."""
    from mlci.oci.copy import open_endpoint
    from mlci.oci.reference import DockerRef, LayoutRef, parse
    from mlci.promote import approvals, copy, policy, run
    from mlci.scan import policy as scan_policy
    from mlci.scan import record, trivyignore
    from mlci.sign import cosign

    manifest, provenance = verified.manifest, verified.manifest.provenance
    name = request.environment or provenance.environment
    if name != provenance.environment:
        logger.warning("mlci: warning: %s was exported for environment %s; importing it into %s, under that "
                       "environment's policy", source.where, provenance.environment, name)
    env = run.environment(config, name)
    destination = request.destination or env.image
    if not destination:
        raise UsageError(f"name the destination (--to), or set promote.environments.{name}.image")
    image, blobs = _image(manifest, source)
    dst_ref = parse(destination)
    if dst_ref.tag not in (None, image.tag) or (isinstance(dst_ref, DockerRef) and dst_ref.digest):
        raise UsageError(f"{destination}: the bundle promotes {image.digest} under tag {image.tag!r}; name the "
                         "destination repository without a tag or digest")
    legacy = (config.image.plain_http, config.image.ca_bundle, config.registries)
    dst, _ = open_endpoint(DockerRef(dst_ref.registry, dst_ref.repository) if isinstance(dst_ref, DockerRef)
                           else LayoutRef(dst_ref.transport, dst_ref.path), *legacy)
    digest = image.digest
    policy.check_source(name, env, _source_ref(provenance), digest)
    ignore = trivyignore.configured(config.scan.trivyignore, config_dir)
    scan = policy.check_scan(name, env, record.find(source, digest), scan_policy.policy_hash(config.scan, ignore),
                             digest, moment)
    signature = cosign.verify(source, digest, request.public_key)[0].payload if env.sign else None
    approved = approvals.approvals(name, env.approval, environ, config.forge)
    remote = (request.dvc_remote or env.dvc_remote) if manifest.dvc is not None else None
    if manifest.dvc is not None and remote is None:
        logger.warning("mlci: warning: %s carries the model's DVC objects, and no DVC remote is named "
                       "(--dvc-remote, promote.environments.%s.dvc_remote): they are not imported", source.where, name)
    nexus = _nexus(request, config, env, manifest, name, source)
    from mlci.promote import gitops
    from mlci.promote.audit import check_audit

    check_audit(Path(config.promote.audit_log))  # before any write: the import must not fail on its record
    gitops.check_before_writes(config.promote)
    seen = copy.check_tag(dst, image.tag, digest, force=request.force)
    _check_base(manifest, dst, destination, root, remote, source)
    dst.check_writable()  # last: it opens and cancels an upload session, the first request that is not a read
    return _Plan(name, env, image, blobs, dst, dst_ref, seen, scan, signature, approved, remote, nexus)


def _written(plan: _Plan, request: ImportRequest, config: Config, root: Path, environ: Mapping[str, str],
             verified: Verified, source: BundleSource, moment: datetime.datetime) -> Imported:
    """The writes, in order: blobs, manifests, referrers, the signature; DVC objects; Nexus; tags; the record."""
    from mlci.oci.transport import discarding
    from mlci.promote import copy, run

    manifest, digest = verified.manifest, plan.image.digest
    logger.info("mlci: importing %s into %s (%s) as %s", digest, plan.name, run.repository_of(plan.dst_ref),
                plan.image.tag)
    with discarding(plan.dst):
        streamed = [] if source.random_access else _send_streamed(source, plan.dst, plan.blobs, digest)
        staged = copy.stage(source, digest, plan.dst, there=plan.seen)
        data = _dvc_objects(plan, root, manifest, source)
        uploaded = _artifacts(plan, manifest, source, root)
        tagged = copy.tag(plan.dst, staged, plan.image.tag, aliases=plan.env.aliases, force=request.force,
                          seen=plan.seen)
    recorded = run.record_promotion(config, _facts(plan, verified, tagged, environ, moment))
    copied = list(dict.fromkeys([*streamed, *staged.copied]))
    reused = [d for d in staged.reused if d not in copied]  # each blob in one list, once
    pinned = run.pinned(plan.dst_ref, plan.image.tag, digest)
    summary = {
        "image": pinned, "digest": digest, "environment": plan.name, "copied": copied, "reused": reused,
        "referrers": staged.referrers,
        "signature": staged.signature, "signed": plan.signature, "tagged": tagged.tags, "previous": tagged.previous,
        "forced": tagged.forced, "scan_record": plan.scan.referrer.digest if plan.scan and plan.scan.referrer else None,
        "approval": plan.approved.record(), "artifacts": [u.to_json() for u in uploaded], "data": data,
        "gitops": recorded.commit,
        "bundle": {"path": str(request.bundle), "aggregate": manifest.aggregate, "signer": verified.keyid,
                   "bytes_verified": verified.bytes_read, "base": manifest.base.aggregate if manifest.base else None,
                   "random_access": source.random_access, "passes": source.passes},
    }
    return Imported(digest, pinned, plan.name, tagged.tags, copied, reused, summary)


def _image(manifest: BundleManifest, source: BundleSource) -> tuple[ImageEntry, list[Descriptor]]:
    """The image the provenance names (index.json must tag it as bundle.json says) and every blob a copy of it
    reads: the image's, its referrers' and its signature's, each carried with the size its descriptor gives, or
    left to the base. BundleInvalid otherwise: a bundle that could not be imported whole is refused before any
    write, not found out half-way."""
    from mlci.bundle.errors import BundleInvalid
    from mlci.bundle.manifest import blob_path
    from mlci.oci.copy import manifest_tree
    from mlci.oci.manifest import NotFound
    from mlci.sign.tag import signature_tag

    wanted = manifest.provenance.image_digest
    image = next((i for i in manifest.images if i.digest == wanted), None)
    if image is None:
        raise BundleInvalid(f"{source.where}: bundle.json: provenance.image_digest {wanted} is none of its images")
    others = [i.digest for i in manifest.images if i is not image]
    if others:
        logger.warning("mlci: warning: %s: %d other image(s) in the bundle are not imported (first: %s)",
                       source.where, len(others), others[0])
    try:
        top = source.get_manifest(image.tag)
        if top.digest != image.digest:
            raise BundleInvalid(f"{source.where}: index.json tags {top.digest} as {image.tag!r}, bundle.json says "
                                f"{image.digest}")
        manifests = manifest_tree(source, top)
        for listed in [m.digest for m in manifests]:
            manifests += [source.get_manifest(d.digest) for d in source.referrers_of(listed)]
        try:
            manifests.append(source.get_manifest(signature_tag(image.digest)))
        except NotFound:
            pass
        blobs = {blob.digest: blob for m in manifests for blob in m.blobs()}
    except EnvironmentProblem as exc:  # not found in the layout, or not a manifest
        raise BundleInvalid(f"{source.where}: the image layout: {exc}") from None
    base = {b.digest: b.size for b in manifest.base.blobs} if manifest.base else {}
    problems = []
    for blob in blobs.values():
        carried = source.files.get(blob_path(blob.digest))
        size = carried.size if carried is not None else base.get(blob.digest)
        if size is None:
            problems.append(f"{blob.digest} (neither carried nor left to a base)")
        elif size != blob.size:
            problems.append(f"{blob.digest} ({size} bytes, its descriptor says {blob.size})")
    if problems:
        raise BundleInvalid(f"{source.where}: {len(problems)} blob(s) of the image cannot be imported: "
                            f"{_first(problems)}")
    return image, list(blobs.values())


def _source_ref(provenance: Provenance) -> SourceRef | None:
    """The exporting pipeline's ref as the environment's rule judges it: `refs/tags/NAME`, `refs/heads/NAME`, else a
    release tag when the provenance has a model version (which only a tag gives), a branch otherwise."""
    from mlci.promote.policy import SourceRef

    ref = provenance.git_ref
    if not ref:
        return None
    origin = "the bundle's provenance"
    for prefix, kind in (("refs/tags/", "tag"), ("refs/heads/", "branch")):
        if ref.startswith(prefix):
            return SourceRef(kind, ref.removeprefix(prefix), origin)
    return SourceRef("tag" if provenance.version is not None else "branch", ref, origin)


def _nexus(request: ImportRequest, config: Config, env: Environment, manifest: BundleManifest, name: str,
           source: BundleSource) -> RawRepository | None:
    """The Nexus raw repository the artifacts go to (its URL checked now), None when none is named."""
    url = request.nexus_raw or env.nexus_raw
    if not manifest.artifacts:
        return None
    if url is None:
        logger.warning("mlci: warning: %s carries %d artifact(s) for Nexus raw, and no repository is named "
                       "(--nexus-raw, promote.environments.%s.nexus_raw): they are not uploaded", source.where,
                       len(manifest.artifacts), name)
        return None
    from mlci.nexus.raw import RawRepository

    return RawRepository(url, config.registries)


def _check_base(manifest: BundleManifest, dst: Endpoint, destination: str, root: Path, remote: str | None,
                source: BundleSource) -> None:
    """What the bundle leaves to its base (and every DVC object it needs but does not carry) is at the destinations;
    GateFailed naming how many are missing and the first of them otherwise."""
    from mlci.bundle import dvcobjects

    base = manifest.base
    of_base = f" (an incremental bundle on {base.aggregate[:19]}...: import that bundle first)" if base else ""
    if base is not None:
        absent = [b.digest for b in base.blobs if not dst.has_blob(b.digest)]
        if absent:
            raise GateFailed(f"{source.where}: {destination} lacks {len(absent)} of the {len(base.blobs)} blob(s) the "
                             f"bundle leaves to its base{of_base}; missing: {_first(absent)}")
    if manifest.dvc is None or remote is None:
        return
    carried = {_oid(f.path) for f in manifest.files if f.kind == "dvc"}
    lacking = [oid for oid in dvcobjects.missing(root, remote, manifest.dvc.objects) if oid not in carried]
    if lacking:
        raise GateFailed(f"{source.where}: the DVC remote {remote} lacks {len(lacking)} object(s) the model needs and "
                         f"the bundle does not carry{of_base}; missing: {_first(lacking)}")


def _send_streamed(source: BundleSource, dst: Endpoint, blobs: list[Descriptor], digest: str) -> list[str]:
    """For a bundle without random access (a tar.zst): the image's blobs the destination lacks, in the bundle's
    order, so that one pass of the stream sends them all (the small ones kept from the verifying read are left
    to stage(), from memory)."""
    from mlci.bundle.manifest import blob_path
    from mlci.oci.progress import Progress

    position = {name: i for i, name in enumerate(source.order)}
    streamed = sorted((b for b in blobs if source.has_blob(b.digest) and blob_path(b.digest) not in source.kept),
                      key=lambda b: position[blob_path(b.digest)])
    sent = []
    with Progress(digest, [b.size for b in streamed]) as progress:
        for blob in streamed:
            if dst.try_reuse_blob(blob):
                progress.skipped(blob)
                continue
            dst.put_blob(blob, _tracked(source, blob, progress))
            progress.finished(blob)
            sent.append(blob.digest)
    return sent


def _tracked(source: BundleSource, blob: Descriptor, progress: Progress) -> Opener:
    return lambda: progress.track(source.open_blob(blob.digest), blob)


def _dvc_objects(plan: _Plan, root: Path, manifest: BundleManifest, source: BundleSource) -> dict[str, Any] | None:
    """The carried DVC objects into the inside DVC remote (those it lacks), then `dvc pull` of the revision proven."""
    from mlci.bundle import dvcobjects

    if manifest.dvc is None or plan.dvc_remote is None:
        return None
    objects = [(_oid(name), _opener(source, name)) for name in source.order
               if source.files[name].kind == "dvc"]
    pushed = dvcobjects.push(root, plan.dvc_remote, manifest.dvc, objects)
    return {"remote": pushed.remote, "copied": pushed.copied, "present": pushed.present, "bytes": pushed.bytes,
            "revision": manifest.dvc.revision, "outputs": list(manifest.dvc.outputs)}


def _artifacts(plan: _Plan, manifest: BundleManifest, source: BundleSource, root: Path) -> list[Uploaded]:
    """The artifacts into Nexus raw under MODEL/VERSION/ (in the bundle's order; an incremental bundle's unchanged
    model files from the inside's DVC remote), SHA256SUMS last."""
    from mlci.bundle import dvcobjects
    from mlci.bundle.errors import BundleInvalid
    from mlci.nexus.raw import Stream

    if plan.nexus is None:
        return []
    provenance = manifest.provenance
    directory = f"{provenance.model}/{provenance.version or plan.image.tag}"
    position = {name: i for i, name in enumerate(source.order)}
    done = []
    based = set(manifest.base.dvc_objects) if manifest.base else set()
    for artifact in sorted(manifest.artifacts, key=lambda a: position.get(a.path, len(position))):
        entry = source.files.get(artifact.path)
        if entry is not None:
            stream = Stream(f"{source.where}: {artifact.path}", entry.size, _opener(source, artifact.path))
        elif artifact.path.startswith("dvc/") and _oid(artifact.path) in based and plan.dvc_remote is not None:
            # unchanged since the base bundle: the inside's DVC remote holds it (checked before any write)
            size, opener = dvcobjects.remote_object(root, plan.dvc_remote, _oid(artifact.path))
            stream = Stream(f"DVC remote '{plan.dvc_remote}': {artifact.path}", size, opener)
        else:
            raise BundleInvalid(f"{source.where}: bundle.json: artifact {artifact.name} names {artifact.path}, "
                                "which the bundle does not hold")
        done.append(plan.nexus.upload(f"{directory}/{artifact.name}", stream))
    return [*done, plan.nexus.upload_checksums(directory, sorted(done, key=lambda u: u.path))]


def _facts(plan: _Plan, verified: Verified, tagged: Tagged, environ: Mapping[str, str],
           moment: datetime.datetime) -> PromotionRecord:
    """The promotion record of the import, naming the bundle and its signer; its id is derived from the bundle,
    the environment and the destination, so that a re-run finds the record it already pushed."""
    from mlci.promote import run
    from mlci.promote.record import PromotionRecord, ScanFacts

    provenance = verified.manifest.provenance
    repository = run.repository_of(plan.dst_ref)
    identity = f"mlci bundle import\n{verified.manifest.aggregate}\n{plan.name}\n{repository}\n"
    return PromotionRecord(
        environment=plan.name, repository=repository, digest=plan.image.digest, model=provenance.model,
        git_sha=provenance.git_sha, promoted_at=moment, promoted_by=plan.approved.promoter,
        version=provenance.version, git_ref=provenance.git_ref, tags=tuple(tagged.tags), source=plan.image.source,
        metrics=provenance.metrics, scan=ScanFacts.of(plan.scan) if plan.scan is not None else None,
        signature=plan.signature, approval_mode=cast(Literal["none", "forge", "variable"], plan.approved.mode),
        approvals=run.approvers(plan.approved), forced=tagged.forced,
        job=environ.get("CI_JOB_URL") or run.github_run(environ),
        id=hashlib.sha256(identity.encode()).hexdigest()[:32], bundle=verified.manifest.aggregate,
        bundle_signer=verified.keyid)


def _opener(source: BundleSource, name: str) -> Opener:
    return lambda: source.member(name)


def _oid(path: str) -> str:
    """The DVC object id of its bundle file `dvc/files/md5/<2>/<30>[.dir]`."""
    parts = path.split("/")
    return parts[-2] + parts[-1]


def _first(items: list[str]) -> str:
    return ", ".join(items[:SHOWN]) + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")
