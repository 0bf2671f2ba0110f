"""`mlci scan` as a library: find trivy and its DB, reuse a stored scan of the same digest (same DB, trivy and
scanners: judged again under today's policy, nothing pulled), else prepare the image and run trivy and the
model-file scanner; judge; write every report asked for; record the verdict, bound to the digest."""
from __future__ import annotations

import dataclasses
import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlci.core import log
from mlci.core.errors import UsageError
from mlci.core.fsutil import atomic_write, atomic_write_json
from mlci.core.scratch import scratch_dir
from mlci.scan import policy
from mlci.scan.findings import ScanOutput
from mlci.scan.settings import ScanSettings
from mlci.scan.trivyignore import IgnoreFile
from mlci.scan.verdict import Verdict

if TYPE_CHECKING:
    from mlci.oci.copy import LayoutEndpoint, RegistryEndpoint
    from mlci.oci.settings import RegistrySettings
    from mlci.scan import models, record, targets
    from mlci.scan.trivy import Trivy

logger = log.logger


@dataclass(frozen=True)
class Outputs:
    """Where the reports go (None: not written)."""

    json_out: Path | None = None
    sarif_out: Path | None = None
    gitlab_out: Path | None = None
    sbom_out: Path | None = None
    md: Path | None = None
    record_out: Path | None = None


@dataclass(frozen=True)
class Context:
    """What every scan needs: the policy, where mlci.yaml is (relative paths), and the registries."""

    settings: ScanSettings
    config_dir: Path
    config_shown: str
    registries: dict[str, RegistrySettings]
    legacy_plain_http: tuple[str, ...] = ()
    legacy_ca_bundle: str | None = None


@dataclass(frozen=True)
class Result:
    """A scan's verdict and how it came about (`reused`: the stored scan judged again, nothing scanned)."""

    verdict: Verdict
    reused: bool
    attached: tuple[str, ...] = ()


def scan_image(reference: str, context: Context, outputs: Outputs, *, attach: bool, rescan: bool,
               now: datetime.datetime | None = None) -> Result:
    """Scan the image `reference` names (docker://, oci:, oci-archive:) and write the reports."""
    from mlci.oci.copy import LayoutEndpoint, RegistryEndpoint, open_endpoint
    from mlci.oci.reference import parse
    from mlci.scan import record, targets

    settings = context.settings
    ignore = _ignore_file(context)
    scanner = _trivy(settings)
    ref = parse(reference)
    endpoint, tag = open_endpoint(ref, context.legacy_plain_http, context.legacy_ca_bundle, context.registries)
    started = now or _now()
    recordable = endpoint if isinstance(endpoint, RegistryEndpoint | LayoutEndpoint) else None
    stored = None
    if recordable is not None and not rescan:
        stored = _stored_scan(recordable, tag, scanner, settings, need_sbom=outputs.sbom_out is not None)
    standing = None  # the stored record reused
    if stored is not None:
        output, sbom, standing = stored
        logger.info("mlci: %s: scanned before with the same DB, trivy and scanners; judged again under today's "
                    "policy (--rescan scans again)", output.digest)
    else:
        with scratch_dir("mlci-scan-") as tmp, targets.prepare_image(
                ref, registries=context.registries, plain_http=context.legacy_plain_http,
                ca_bundle=context.legacy_ca_bundle) as image:
            sbom_path = Path(tmp) / "sbom.cdx.json" if settings.sbom else None
            output = _trivy_image(scanner, image, sbom_path)
            output = _with_models(output, _models_in_image(image, settings), settings)
            sbom = sbom_path.read_bytes() if sbom_path is not None and sbom_path.is_file() else None
    verdict = policy.judge(output, settings, ignore, now=_now() if now is None else now,
                           config_shown=context.config_shown)
    _write_reports(verdict, outputs, sbom, started=started, image=reference)
    attached: list[str] = []
    if output.digest is not None:
        scan_record = record.from_verdict(verdict, reference)
        # Judged again to the same verdict under the same policy: the record attached already says it (the scan
        # it reports is the same scan, with the same DB), so nothing new is attached and that record is the file.
        unchanged = standing is not None and (standing.passed, standing.policy_hash) == (verdict.passed,
                                                                                       verdict.policy_hash)
        if unchanged:
            assert standing is not None
            scan_record = standing
        if outputs.record_out is not None:
            record.write(scan_record, outputs.record_out)
        if unchanged:
            logger.info("mlci: %s: the scan record of %s stands (same verdict, same policy)", output.digest,
                        scan_record.scanned_at.isoformat())
        elif attach and settings.attach and recordable is not None:
            attached = [d.digest for d in record.attach(scan_record, recordable, sbom=sbom, output=output)]
        elif attach and settings.attach:
            logger.info("mlci: %s: an oci-archive is not changed; the scan record is not attached (--record-out "
                        "keeps it as a file)", reference)
    return Result(verdict, reused=stored is not None, attached=tuple(attached))


def scan_directory(root: Path, context: Context, outputs: Outputs, *, now: datetime.datetime | None = None) -> Result:
    """Scan a repository directory (`--fs`): trivy fs and the model files in it, DVC's cache objects too."""
    from mlci.scan import trivy

    for name, value in (("--gitlab-out", outputs.gitlab_out), ("--record-out", outputs.record_out)):
        if value is not None:
            raise UsageError(f"{name} is for images (a container-scanning report, a record bound to a digest); "
                             "not with --fs")
    settings = context.settings
    ignore = _ignore_file(context)
    scanner = _trivy(settings)
    started = now or _now()
    with scratch_dir("mlci-scan-") as tmp:
        sbom_path = Path(tmp) / "sbom.cdx.json" if settings.sbom and outputs.sbom_out is not None else None
        output = (trivy.scan_fs(scanner, root, sbom=sbom_path) if scanner is not None
                  else ScanOutput(target=root.absolute().name))
        output = _with_models(output, _models_in_tree(root, settings), settings)
        sbom = sbom_path.read_bytes() if sbom_path is not None and sbom_path.is_file() else None
    verdict = policy.judge(output, settings, ignore, now=_now() if now is None else now,
                           config_shown=context.config_shown)
    _write_reports(verdict, outputs, sbom, started=started, image=None)
    return Result(verdict, reused=False)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _ignore_file(context: Context) -> IgnoreFile | None:
    from mlci.scan import trivyignore

    return trivyignore.configured(context.settings.trivyignore, context.config_dir)


def _trivy(settings: ScanSettings) -> Trivy | None:
    """trivy, checked, when a scanner of its runs; its DB checked when `vuln` does (exit 3 before any pull)."""
    from mlci.scan import trivy

    if not trivy.scanners(settings):
        return None
    found = trivy.find_trivy(settings)
    if "vuln" in settings.scanners:
        trivy.db_info(found.cache_dir)
    return found


def _stored_scan(endpoint: RegistryEndpoint | LayoutEndpoint, tag: str | None, scanner: Trivy | None,
                 settings: ScanSettings, *, need_sbom: bool
                 ) -> tuple[ScanOutput, bytes | None, record.ScanRecord] | None:
    """The output of an earlier scan of the same digest with the same DB, trivy and scanners (and its SBOM when
    one is asked for), from the records attached to the image; None when there is none to reuse."""
    from mlci.oci.manifest import NotFound
    from mlci.scan import record, trivy

    try:
        digest = endpoint.get_manifest(tag).digest
    except NotFound:
        return None  # preparing the image says what is missing
    db = trivy.db_info(scanner.cache_dir) if scanner is not None and "vuln" in settings.scanners else None
    found = record.find_reusable(endpoint, digest, db.version if db else None, db.updated_at if db else None,
                                 trivy_version=scanner.version if scanner else None, scanners=settings.scanners)
    output = record.load_output(endpoint, found) if found is not None else None
    if output is None:
        return None
    sbom = _stored_sbom(endpoint, digest) if need_sbom else None
    return None if (need_sbom and sbom is None) or found is None else (output, sbom, found)


def _stored_sbom(endpoint: RegistryEndpoint | LayoutEndpoint, digest: str) -> bytes | None:
    """The newest CycloneDX SBOM attached to `digest`, if any."""
    from mlci.oci import referrers
    from mlci.oci.smallblob import read_small
    from mlci.scan import record

    listed = referrers.referrers(endpoint, digest, record.SBOM_TYPE)
    listed.sort(key=lambda d: d.annotations.get(referrers.CREATED, ""), reverse=True)
    for descriptor in listed:
        layers = endpoint.get_manifest(descriptor.digest).blobs()[1:]
        if layers and layers[0].size <= MAX_SBOM:
            return read_small(endpoint, layers[0], MAX_SBOM, f"SBOM {descriptor.digest} of {digest}")
    return None


MAX_SBOM = 256 << 20


def _trivy_image(scanner: Trivy | None, image: targets.PreparedImage, sbom: Path | None) -> ScanOutput:
    from mlci.scan import trivy

    if scanner is None:
        return ScanOutput(target=trivy.display_name(image), digest=image.digest)
    return trivy.scan_image(scanner, image, sbom=sbom)


def _with_models(output: ScanOutput, found: models.ModelScan | None, settings: ScanSettings) -> ScanOutput:
    """The trivy output with the model-file scanner's findings and unscanned files (when it ran)."""
    if found is None:
        return output
    scanners = (*output.scanners, "model")
    return dataclasses.replace(output, findings=(*output.findings, *found.findings),
                               unscanned=(*output.unscanned, *found.unscanned), scanners=scanners)


def _models_in_image(image: targets.PreparedImage, settings: ScanSettings) -> models.ModelScan | None:
    from mlci.scan import models

    if "model" not in settings.scanners:
        return None
    return models.scan_layout(image.layout, image.manifest_digest, max_bytes=settings.model_max_mb << 20)


def _models_in_tree(root: Path, settings: ScanSettings) -> models.ModelScan | None:
    from mlci.scan import models

    if "model" not in settings.scanners:
        return None
    return models.scan_tree(root, max_bytes=settings.model_max_mb << 20)


def _write_reports(verdict: Verdict, outputs: Outputs, sbom: bytes | None, *, started: datetime.datetime,
                   image: str | None) -> None:
    """Every report asked for, each written whole or not at all (the gate's exit comes after them)."""
    from mlci.scan.reports import gitlab, markdown, sarif, summary

    if outputs.json_out is not None:
        atomic_write_json(outputs.json_out, summary.summary(verdict))
    if outputs.sarif_out is not None:
        atomic_write_json(outputs.sarif_out, sarif.sarif(verdict))
    if outputs.gitlab_out is not None and image is not None:
        atomic_write_json(outputs.gitlab_out, gitlab.container_scanning(verdict, started=started, finished=_now(),
                                                                        image=image))
    if outputs.md is not None:
        atomic_write(outputs.md, markdown.markdown(verdict))
    if outputs.sbom_out is not None:
        if sbom is None:
            logger.warning("mlci: warning: no SBOM to write to %s (scan.sbom is false, or trivy wrote none)",
                           outputs.sbom_out)
        else:
            atomic_write(outputs.sbom_out, sbom)
