"""`mlci promote` as a library: the environment's policy first (the source's ref and commit, a passing scan
record under today's scan policy, approvals), then the image staged by digest with its referrers and
signatures, the model's data and artifacts, the signature, and only then the tags; the GitOps record last."""
from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from mlci.core.errors import UsageError
from mlci.core.log import logger
from mlci.oci.reference import DockerRef, ImageRef
from mlci.oci.transport import discarding
from mlci.promote import approvals, audit, copy, gitops, gto, policy
from mlci.promote.record import Approver, PromotionRecord, Scalar, ScanFacts, read_metrics
from mlci.promote.settings import Environment
from mlci.settings import Config

ApprovalMode = Literal["none", "forge", "variable"]

if TYPE_CHECKING:
    from mlci.nexus.raw import RawRepository, Uploaded
    from mlci.oci import referrers
    from mlci.oci.transport import Endpoint
    from mlci.promote.dvcdata import DataCopy
    from mlci.scan.record import ScanRecord
    from mlci.sign.keys import SigningKey


@dataclass(frozen=True)
class Request:
    """What the release manager asked for."""

    source: str
    destination: str | None
    environment: str
    tag: str | None = None
    force: bool = False


@dataclass
class Result:
    """What a promotion did."""

    source: str
    destination: str
    environment: str
    digest: str
    staged: copy.Staged
    tagged: copy.Tagged
    scan_record: str | None = None
    approvals: approvals.Approvals | None = None
    signature: str | None = None  # the payload (layer) digest of mlci's signature: stable per image and reference
    record: gitops.RecordResult | None = None
    artifacts: list[dict[str, object]] = field(default_factory=list)  # what went to the Nexus raw repository
    data: dict[str, Any] | None = None  # the DVC objects copied to the environment's DVC remote


def environment(config: Config, name: str) -> Environment:
    """The environment's settings (exit 2 when mlci.yaml does not have it)."""
    environments = config.promote.environments
    if name not in environments:
        known = ", ".join(sorted(environments)) or "none"
        raise UsageError(f"promote.environments has no {name!r} (configured: {known}); add it to mlci.yaml")
    return environments[name]


def promote(request: Request, config: Config, root: Path, config_dir: Path, environ: Mapping[str, str],
            now: datetime.datetime | None = None) -> Result:
    """Check the policy, then promote; nothing is copied when the policy refuses."""
    from mlci.core import git
    from mlci.image.labels import read_revision
    from mlci.oci import referrers
    from mlci.oci.copy import LayoutEndpoint, RegistryEndpoint, open_endpoint
    from mlci.oci.reference import LayoutRef, check_tag, parse

    moment = now or datetime.datetime.now(datetime.UTC)
    env = environment(config, request.environment)
    destination = request.destination or env.image
    if not destination:
        raise UsageError(f"name the destination, or set promote.environments.{request.environment}.image")
    if request.force and not config.promote.allow_force:
        raise UsageError("--force moves an existing tag; mlci.yaml must allow it (promote.allow_force: true)")
    src_ref, dst_ref = parse(request.source), parse(destination)
    if isinstance(dst_ref, DockerRef) and dst_ref.digest:
        raise UsageError(f"{destination}: a destination is a repository (and a tag), not a digest: the image "
                         "promoted is the source's digest")
    ref = policy.source_ref(environ, root)
    # A release tag's pipeline promotes under the release tag; otherwise the destination's or source's tag.
    name = request.tag if request.tag is not None else (ref.name if ref is not None and ref.kind == "tag" else None) \
        or _tag_of(dst_ref) or _tag_of(src_ref)
    if name is None or name.startswith("sha256:"):
        raise UsageError("name the tag to promote under (--tag, or a tag in the destination or source reference)")
    check_tag(name, "--tag" if request.tag is not None else "the tag to promote under")
    legacy = (config.image.plain_http, config.image.ca_bundle, config.registries)
    src, src_tag = open_endpoint(src_ref, *legacy)
    dst, _ = open_endpoint(DockerRef(dst_ref.registry, dst_ref.repository) if isinstance(dst_ref, DockerRef)
                           else LayoutRef(dst_ref.transport, dst_ref.path), *legacy)
    top = src.get_manifest(src_tag)
    digest = top.digest
    sha = git.head_sha(root)
    policy.check_source(request.environment, env, ref, digest)
    policy.check_revision(read_revision(src, top), sha, digest, policy.tag_digest(src))
    # One listing of the image's referrers: its scan records here, every referrer and the signature tag in stage.
    listing = referrers.listing(src, digest) if isinstance(src, RegistryEndpoint | LayoutEndpoint) else None
    scan = _passing_scan(config, config_dir, request.environment, env, src, listing, digest, moment)
    approved = approvals.approvals(request.environment, env.approval, environ, config.forge)
    key = _signing_key(config, env, request.environment, config_dir, environ)
    model = gto.model_name(root, config.promote.model)
    version = gto.version_of(ref.name) if ref is not None and ref.kind == "tag" else None
    if config.promote.gitops.gto:
        gto.check_stage(request.environment)
        gto.check_version(root, model, version, sha)  # a version names one commit: refused before any copy
    if env.dvc_remote is not None:  # DVC and mlci's DVC parts are imported only for an environment that uses them
        from mlci.promote import dvcdata

        dvcdata.check_remotes(root, request.environment, env)
    nexus = _nexus(config, env)  # its URL and plain-HTTP rule refused before any write
    audit.check_audit(Path(config.promote.audit_log))
    gitops.check_before_writes(config.promote)
    seen = copy.check_tag(dst, name, digest, force=request.force)
    if seen != digest:  # else the image is there already: a write still due fails on its own, with nothing half-made
        dst.check_writable()
    logger.info("mlci: promoting %s into %s (%s) as %s", digest, request.environment, destination, name)
    with discarding(dst):
        staged = copy.stage(src, digest, dst, top, there=seen, listing=listing)
        data: DataCopy | None = None
        if env.dvc_remote is not None:
            from mlci.promote import dvcdata

            data = dvcdata.copy_environment_data(root, config.image, request.environment, env, sha)
        uploaded = _artifacts(config, nexus, root, model, version or name, scan) if nexus is not None else []
        signature = _sign(dst, dst_ref, digest, key) if key is not None else None
        tagged = copy.tag(dst, staged, name, aliases=env.aliases, force=request.force, seen=seen)
    facts = PromotionRecord(
        environment=request.environment, repository=repository_of(dst_ref), digest=digest, model=model, git_sha=sha,
        promoted_at=moment, promoted_by=approved.promoter, version=version, git_ref=ref.name if ref else None,
        tags=tuple(tagged.tags), source=request.source, metrics=_metrics(root),
        scan=ScanFacts.of(scan) if scan is not None else None, signature=signature,
        approval_mode=cast(ApprovalMode, approved.mode), approvals=approvers(approved),
        forced=tagged.forced, job=environ.get("CI_JOB_URL") or github_run(environ))
    recorded = record_promotion(config, facts)
    if config.promote.gitops.gto:
        gto.write_gto_tags(root, model, version, request.environment, sha=sha, by=approved.promoter, when=moment,
                           message=f"promoted {digest} into {request.environment} by mlci",
                           push=config.promote.gitops.push and config.promote.gitops.repository is not None)
    return Result(request.source, pinned(dst_ref, name, digest), request.environment, digest, staged, tagged,
                  scan_record=scan.referrer.digest if scan is not None and scan.referrer is not None else None,
                  approvals=approved, signature=signature, record=recorded, artifacts=[u.to_json() for u in uploaded],
                  data=data.as_dict() if data is not None else None)


def _passing_scan(config: Config, config_dir: Path, name: str, env: Environment, src: Endpoint,
                  listing: referrers.Listing | None, digest: str, moment: datetime.datetime) -> ScanRecord | None:
    """The scan record the environment's policy asks for (policy.check_scan; exit 1 without one), None when it asks
    for none (then neither the records nor the scan policy are read)."""
    if not env.require_scan:
        return None
    from mlci.oci.copy import LayoutEndpoint, RegistryEndpoint
    from mlci.scan import policy as scan_policy
    from mlci.scan import record, trivyignore

    records = record.find(src, digest, listing=listing) if isinstance(src, RegistryEndpoint | LayoutEndpoint) else []
    ignore = trivyignore.configured(config.scan.trivyignore, config_dir)
    return policy.check_scan(name, env, records, scan_policy.policy_hash(config.scan, ignore), digest, moment)


def _signing_key(config: Config, env: Environment, name: str, config_dir: Path, environ: Mapping[str, str]
                 ) -> SigningKey | None:
    """The key to sign with (read before anything is copied: a bad key is exit 2 with nothing written)."""
    if not env.sign:
        return None
    from mlci.sign import keys

    signing = config.promote.signing
    if not (signing.key_file or signing.key_env):
        raise UsageError(f"promote.environments.{name}.sign is true (the default) but promote.signing names no "
                         "key: set promote.signing.key_file or key_env, or sign: false for this environment")
    return keys.load_signing_key(signing, config_dir, environ)


def _sign(dst: Endpoint, ref: ImageRef, digest: str, key: SigningKey) -> str:
    """Sign the promoted digest at the destination (cosign's key-based format); the signature's payload digest."""
    from mlci.oci.copy import LayoutEndpoint, RegistryEndpoint
    from mlci.sign import cosign

    if not isinstance(dst, RegistryEndpoint | LayoutEndpoint):
        raise UsageError("an oci-archive destination cannot hold a signature: promote into a registry or a layout")
    reference = cosign.identity(ref) if isinstance(ref, DockerRef) else str(ref)
    signed = cosign.sign(dst, digest, key, docker_reference=reference)
    logger.info("mlci: signed %s for %s (%s)", digest, reference, "added" if signed.added else "already signed")
    return signed.layer.digest


def _nexus(config: Config, env: Environment) -> RawRepository | None:
    """The environment's Nexus raw repository, when it has one (no request is made)."""
    if env.nexus_raw is None:
        return None
    from mlci.nexus.raw import RawRepository

    return RawRepository(env.nexus_raw, config.registries)


def _artifacts(config: Config, repository: RawRepository, root: Path, model: str, version: str,
               scan: ScanRecord | None) -> list[Uploaded]:
    """The model's files (image.artifacts, pulled with DVC when the checkout lacks them), its metrics files, dvc.lock
    and the scan record, into the environment's Nexus raw repository under MODEL/VERSION/, checksums verified;
    SHA256SUMS last (a directory without it is an interrupted promotion that a re-run completes)."""
    from mlci.core.fsutil import files_within
    from mlci.dvcstage.fetch import pull_missing
    from mlci.image.entries import Collector
    from mlci.image.labels import metrics_files

    pull_missing(config.image.artifacts, root)
    files: list[tuple[str, Path | bytes]] = []
    for kind, paths in (("model", config.image.artifacts), ("metrics", metrics_files(root, Collector(root)))):
        for name in paths:
            files += [(f"{kind}/{p.relative_to(root).as_posix()}", p) for p in files_within(root, name, "uploaded")]
    if (root / "dvc.lock").is_file():
        files.append(("dvc.lock", root / "dvc.lock"))
    if scan is not None:
        files.append(("scan-record.json", scan.to_bytes()))
    directory = f"{model}/{version}"
    done = [repository.upload(f"{directory}/{name}", source) for name, source in files]
    return [*done, repository.upload_checksums(directory, done)]


def record_promotion(config: Config, facts: PromotionRecord) -> gitops.RecordResult:
    """The GitOps commit, then the audit line (written even when the GitOps repository cannot be reached: the
    image is promoted by then, and the audit log must say so)."""
    try:
        result = gitops.record_promotion(config.promote, facts)
    except BaseException:
        audit.append_audit(Path(config.promote.audit_log), facts)
        raise
    audit.append_audit(Path(config.promote.audit_log), result.record)
    return result


def _metrics(root: Path) -> Mapping[str, Mapping[str, Scalar]]:
    from mlci.image.entries import Collector
    from mlci.image.labels import metrics_files

    return read_metrics(root, metrics_files(root, Collector(root)))


def approvers(approved: approvals.Approvals) -> tuple[Approver, ...]:
    """The approvers as the promotion record lists them (forge, or the weak variable mode)."""
    mode: Literal["forge", "variable"] = "variable" if approved.weak else "forge"
    return tuple(Approver(a.login, mode, _time(a.at)) for a in approved.approvers)


def _time(text: str | None) -> datetime.datetime | None:
    """A forge's approval time, None when it has none or it is not one."""
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None
    except ValueError:
        return None


def github_run(environ: Mapping[str, str]) -> str | None:
    """The URL of the GitHub Actions run this job belongs to, None outside one."""
    keys = ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")
    if not all(environ.get(k) for k in keys):
        return None
    return f"{environ['GITHUB_SERVER_URL']}/{environ['GITHUB_REPOSITORY']}/actions/runs/{environ['GITHUB_RUN_ID']}"


def repository_of(ref: ImageRef) -> str:
    """The repository a record names: HOST/REPO, or TRANSPORT:PATH."""
    if isinstance(ref, DockerRef):
        return f"{ref.registry}/{ref.repository}"
    return f"{ref.transport}:{ref.path}"


def _tag_of(ref: ImageRef) -> str | None:
    return ref.tag


def pinned(ref: ImageRef, tag: str, digest: str) -> str:
    """The destination as `docker://HOST/REPO:TAG@DIGEST` (or `oci:DIR:TAG@DIGEST`)."""
    if isinstance(ref, DockerRef):
        return f"docker://{ref.registry}/{ref.repository}:{tag}@{digest}"
    return f"{ref.transport}:{ref.path}:{tag}@{digest}"
