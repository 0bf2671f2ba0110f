"""`mlci bundle export` as a library: the promotion policy of the target environment on the connected side (the
source's ref, the image built from this commit, a passing scan record), then the plan (every file, its size and
sha256: image blobs by their digests, DVC objects and artifacts hashed in one read), bundle.json and its signature,
and one streamed write into the sink: the image read once, from its source into the bundle.

Order: the key first (a bundle is always signed: none is exit 2 before anything is read), then the policy (exit 1,
nothing written), then the plan, then the write; any failure or interruption (SIGTERM, Ctrl-C) aborts the sink, so
nothing is left at the output. Files are written in a fixed order: oci-layout, index.json, the image's manifests,
configs and layers (imageplan.py), the DVC objects, the artifacts, the trivy DB."""
from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlci.core.errors import UsageError
from mlci.core.log import logger

if TYPE_CHECKING:
    from mlci.bundle.archive import Format, Sink
    from mlci.bundle.dvcobjects import ObjectFile
    from mlci.bundle.exportfiles import Artifacts
    from mlci.bundle.imageplan import ImagePlan, InsideSignature, Planned
    from mlci.bundle.manifest import BundleManifest, DvcData, Provenance, TrivyDb
    from mlci.oci.manifest import Manifest
    from mlci.oci.transport import Endpoint
    from mlci.promote.policy import SourceRef
    from mlci.promote.settings import Environment
    from mlci.scan.record import ScanRecord
    from mlci.settings import Config
    from mlci.sign.keys import SigningKey


SHOWN = 8 << 20  # files of at least this size get a progress line of their own in CI


@dataclass(frozen=True)
class ExportRequest:
    """What the release manager (or the tag pipeline's export job) asked for."""

    source: str  # the image, any transport (docker://HOST/REPO:TAG, oci:DIR:TAG)
    environment: str  # the target environment inside (promote.environments NAME)
    output: Path  # the bundle's path (a directory, FILE.tar, FILE.tar.zst; split: FILE.tar.000, ...)
    format: Format = "tar"
    part_size: int | None = None
    zstd_level: int = 3
    since: Path | None = None  # a previous bundle's bundle.json: carry only what it did not
    trivy_db: bool = False
    tag: str | None = None  # the tag to promote under inside (default: the release tag, else the source's)


@dataclass
class Exported:
    """What an export wrote."""

    manifest: BundleManifest
    paths: list[Path]
    files: int
    bytes: int  # bytes of the files carried
    omitted_blobs: int = 0  # left to the base (incremental)
    omitted_objects: int = 0
    summary: dict[str, Any] = field(default_factory=dict)  # for --json


def export(request: ExportRequest, config: Config, root: Path, config_dir: Path, environ: Mapping[str, str],
           now: datetime.datetime | None = None) -> Exported:
    """Check, plan, sign and write the bundle; nothing is left at `output` when anything fails."""
    from mlci.bundle import dsse, exportfiles, imageplan
    from mlci.bundle import manifest as bundle_manifest

    moment = now or datetime.datetime.now(datetime.UTC)
    checked = _check(request, config, root, config_dir, environ, moment)
    top, previous = checked.top, checked.previous
    base_blobs, base_objects = exportfiles.base_sets(previous)
    logger.info("mlci: exporting %s for %s as %s%s", top.digest, request.environment, checked.tag,
                f" (incremental on {previous.aggregate})" if previous is not None else "")
    image = imageplan.plan_image(checked.src, top, checked.tag, sign=checked.inside, base=base_blobs)
    data, objects = exportfiles.dvc_objects(root, config, checked.env, checked.sha, base_objects)
    artifacts = exportfiles.artifacts(root, config, data, objects, checked.scan)
    trivy_db, trivy_files = exportfiles.trivy_db(config) if request.trivy_db else (None, [])
    files = [*image.files, *exportfiles.object_files(objects), *artifacts.files, *trivy_files]
    manifest = _manifest(request, previous, image, data, objects, artifacts, trivy_db, files,
                         _provenance(request, root, checked, environ, moment))
    manifest_bytes = bundle_manifest.dumps(manifest)
    envelope = dsse.sign(manifest, manifest_bytes, checked.key)
    paths = _write(request, top.digest, (manifest_bytes, envelope), files)
    omitted_objects = len(manifest.base.dvc_objects) if manifest.base is not None else 0
    return Exported(manifest, paths, len(files), sum(f.size for f in files), len(image.omitted), omitted_objects,
                    _summary(request, manifest, image))


@dataclass(frozen=True)
class _Checked:
    """What the checks before any planning established."""

    env: Environment
    key: SigningKey
    previous: BundleManifest | None
    ref: SourceRef | None
    tag: str
    inside: InsideSignature | None
    src: Endpoint
    top: Manifest
    sha: str
    scan: ScanRecord | None
    model: str
    version: str | None


def _check(request: ExportRequest, config: Config, root: Path, config_dir: Path, environ: Mapping[str, str],
           moment: datetime.datetime) -> _Checked:
    """Configuration first (the key, the output, --since, the tag: exit 2 before anything is read), then the
    policy (exit 1)."""
    from mlci.bundle import exportfiles
    from mlci.core import git
    from mlci.oci.copy import open_endpoint
    from mlci.oci.reference import parse
    from mlci.promote import gto, policy
    from mlci.promote.run import environment

    env = environment(config, request.environment)
    key = _bundle_key(config, config_dir, environ)
    _check_output(request.output)
    previous = exportfiles.previous(request.since) if request.since is not None else None
    src_ref = parse(request.source)
    ref = policy.source_ref(environ, root)
    name = _tag(request, ref, env, src_ref.tag)
    inside = _inside_signature(env, request.environment, key)
    if config.promote.gitops.gto:
        gto.check_stage(request.environment)
    src, src_tag = open_endpoint(src_ref, config.image.plain_http, config.image.ca_bundle, config.registries)
    top = src.get_manifest(src_tag)
    sha = git.head_sha(root)
    scan = _policy(config, config_dir, request.environment, env, ref, src, top, sha, moment)
    model = gto.model_name(root, config.promote.model)
    version = gto.version_of(ref.name) if ref is not None and ref.kind == "tag" else None
    if config.promote.gitops.gto:
        gto.check_version(root, model, version, sha)  # a version names one commit
    if previous is not None and (previous.provenance.environment, previous.provenance.model) \
            != (request.environment, model):
        logger.warning("mlci: warning: --since %s is a bundle of %s for %s, not of %s for %s: the inside refuses "
                       "this one unless its destination holds that bundle's content", request.since,
                       previous.provenance.model, previous.provenance.environment, model, request.environment)
    return _Checked(env, key, previous, ref, name, inside, src, top, sha, scan, model, version)


def _bundle_key(config: Config, config_dir: Path, environ: Mapping[str, str]) -> SigningKey:
    """promote.signing's key: every bundle is signed with it (exit 2 when none is configured)."""
    from mlci.sign import keys

    signing = config.promote.signing
    if not (signing.key_file or signing.key_env):
        raise UsageError("a bundle is always signed, but promote.signing names no key: set promote.signing.key_file "
                         "or key_env (the inside verifies bundles with its public key, bundle.public_key)")
    return keys.load_signing_key(signing, config_dir, environ)


def _check_output(output: Path) -> None:
    """The bundle's path is free (a tar's parts too), and not through a committed symlink out of the checkout, so
    that nothing is planned for a write that must fail or land elsewhere."""
    from mlci.core.fsutil import check_not_linked_out

    check_not_linked_out(output, "the bundle")
    taken = next((p for p in (output, Path(f"{output}.000")) if p.exists() or p.is_symlink()), None)
    if taken is not None:
        raise UsageError(f"{taken}: already exists; a bundle is never written over: name a new path")


def _tag(request: ExportRequest, ref: SourceRef | None, env: Environment, source_tag: str | None) -> str:
    """The tag inside: --tag, else a release tag's pipeline's tag, else the environment image's or the source's."""
    from mlci.oci.reference import check_tag, parse

    inside_tag = parse(env.image).tag if env.image else None
    name = request.tag if request.tag is not None else (ref.name if ref is not None and ref.kind == "tag" else None) \
        or inside_tag or source_tag
    if name is None or name.startswith("sha256:"):
        raise UsageError("name the tag to promote under (--tag, or a tag in the source reference)")
    return check_tag(name, "the tag inside")


def _inside_signature(env: Environment, name: str, key: SigningKey) -> InsideSignature | None:
    """What the image is signed as for the inside (promote.environments.NAME.sign), None when it is not."""
    from mlci.bundle.imageplan import InsideSignature
    from mlci.oci.reference import DockerRef, parse
    from mlci.sign import cosign

    if not env.sign:
        return None
    if not env.image:
        raise UsageError(f"promote.environments.{name}.image: name the inside repository the bundle is imported "
                         "into (the image's signature names it), or set sign: false for this environment")
    ref = parse(env.image)
    return InsideSignature(key, cosign.identity(ref) if isinstance(ref, DockerRef) else str(ref))


def _policy(config: Config, config_dir: Path, name: str, env: Environment, ref: SourceRef | None,
            src: Endpoint, top: Manifest, sha: str, moment: datetime.datetime) -> ScanRecord | None:
    """promote's checks before any copy: the source's ref, the image built from HEAD, a passing scan record."""
    from mlci.image.labels import read_revision
    from mlci.oci.copy import LayoutEndpoint, RegistryEndpoint
    from mlci.promote import policy
    from mlci.scan import policy as scan_policy
    from mlci.scan import record, trivyignore

    policy.check_source(name, env, ref, top.digest)
    policy.check_revision(read_revision(src, top), sha, top.digest, policy.tag_digest(src))
    records = record.find(src, top.digest) if env.require_scan and isinstance(src, RegistryEndpoint | LayoutEndpoint) \
        else []
    ignore = trivyignore.configured(config.scan.trivyignore, config_dir)
    return policy.check_scan(name, env, records, scan_policy.policy_hash(config.scan, ignore), top.digest, moment)


def _provenance(request: ExportRequest, root: Path, checked: _Checked, environ: Mapping[str, str],
                moment: datetime.datetime) -> Provenance:
    from mlci import __version__
    from mlci.bundle.manifest import Provenance, Scan
    from mlci.image.entries import Collector
    from mlci.image.labels import metrics_files
    from mlci.promote.record import read_metrics

    scan, ref = checked.scan, checked.ref
    facts = None if scan is None else Scan(
        scan.verdict, scan.referrer.digest if scan.referrer is not None else None, scan.policy_hash,
        _rfc3339(scan.db_updated_at) if scan.db_updated_at is not None else None, _rfc3339(scan.scanned_at))
    metrics = read_metrics(root, metrics_files(root, Collector(root)))
    return Provenance(
        git_sha=checked.sha, git_ref=ref.name if ref is not None else None, model=checked.model,
        version=checked.version, image_digest=checked.top.digest,
        metrics={k: dict(v) for k, v in sorted(metrics.items())}, scan=facts, mlci_version=__version__,
        created_at=_rfc3339(moment),
        exported_by=environ.get("GITLAB_USER_LOGIN") or environ.get("GITHUB_ACTOR") or None,
        environment=request.environment)


def _manifest(request: ExportRequest, previous: BundleManifest | None, image: ImagePlan, data: DvcData | None,
              objects: list[ObjectFile], artifacts: Artifacts, trivy_db: TrivyDb | None, files: list[Planned],
              provenance: Provenance) -> BundleManifest:
    from mlci.bundle.manifest import Base, BundleManifest, FileEntry, ImageEntry, aggregate
    from mlci.oci.reference import parse

    entries = tuple(sorted((FileEntry(f.name, f.size, f.sha256, f.kind) for f in files), key=lambda e: e.path))
    base = None
    if previous is not None:
        carried = {o.oid for o in objects}
        left = tuple(sorted(oid for oid in (data.objects if data is not None else ()) if oid not in carried))
        base = Base(previous.aggregate, image.omitted, left)
    return BundleManifest(
        files=entries, images=(ImageEntry(str(parse(request.source)), image.tag, image.top.digest),), dvc=data,
        artifacts=artifacts.entries, trivy_db=trivy_db, provenance=provenance, base=base,
        aggregate=aggregate(entries))


def _write(request: ExportRequest, digest: str, head: tuple[bytes, bytes], files: list[Planned]) -> list[Path]:
    """Every planned file into the sink, in order, then commit; anything that fails (or SIGTERM) aborts it. A
    terminal shows one bar; CI gets a line per file of at least SHOWN bytes."""
    from mlci.bundle import archive
    from mlci.oci.manifest import Descriptor
    from mlci.oci.progress import Progress

    sink: Sink = archive.open_sink(request.output, request.format, head, part_size=request.part_size,
                                   zstd_level=request.zstd_level)
    try:
        with Progress(digest, [f.size for f in files]) as progress:
            for planned in files:
                with planned.open() as opened:
                    big = planned.size >= SHOWN
                    stream = progress.track(opened, Descriptor(planned.kind, f"sha256:{planned.sha256}",
                                                               planned.size)) if big else opened
                    sink.add(planned.name, planned.size, planned.sha256, iter(partial(stream.read, archive.CHUNK), b""))
                if not big:
                    progress.advance(planned.size)
        return sink.commit()
    except BaseException:
        sink.abort()
        raise


def _summary(request: ExportRequest, manifest: BundleManifest, image: ImagePlan) -> dict[str, Any]:
    """For --json (beside the paths, files, bytes and aggregate the command shows)."""
    return {"format": request.format, "environment": request.environment, "image": image.top.digest,
            "tag": image.tag, "referrers": image.referrers, "signature": image.signature, "signed": image.signed,
            "base": manifest.base.aggregate if manifest.base is not None else None,
            "omitted_blobs": len(image.omitted),
            "omitted_objects": len(manifest.base.dvc_objects) if manifest.base is not None else 0,
            "dvc_objects": len(manifest.dvc.objects) if manifest.dvc is not None else 0,
            "artifacts": [a.name for a in manifest.artifacts],
            "trivy_db": manifest.trivy_db.updated_at if manifest.trivy_db is not None else None}


def _rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
