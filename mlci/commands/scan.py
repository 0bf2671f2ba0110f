"""`mlci scan`: an image (or a repository with --fs) through trivy and the model-file scanner, gated by the
`scan` policy, with reports for GitLab, GitHub code scanning, Dependency-Track and the MR, and a scan record."""
from __future__ import annotations

import argparse
from pathlib import Path

from mlci.commands import directory, handed_on_image
from mlci.core import log


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Register `scan`."""
    parser = sub.add_parser("scan", parents=[common], help="scan the model image (trivy + model files) and gate",
                            description="Scan an image (docker://, oci:, oci-archive:) or, with --fs, a repository "
                                        "directory; judge the findings with mlci.yaml `scan`; write the reports. "
                                        "Exit 1 when the policy fails (reports written), 3 when trivy, its DB or "
                                        "the image cannot be found.")
    parser.add_argument("image", nargs="?", help="the image (default: MLCI_IMAGE@MLCI_IMAGE_DIGEST from `mlci build "
                                                 "--dotenv`; neither: skipped)")
    parser.add_argument("--fs", metavar="DIR", type=directory, help="scan this directory instead of an image")
    parser.add_argument("--json-out", metavar="PATH", help="the normalised JSON summary (full precision)")
    parser.add_argument("--sarif-out", metavar="PATH", help="SARIF 2.1.0 (GitHub code scanning)")
    parser.add_argument("--gitlab-out", metavar="PATH", help="GitLab's container-scanning report (images)")
    parser.add_argument("--sbom-out", metavar="PATH", help="the CycloneDX SBOM")
    parser.add_argument("--md", metavar="PATH", help="the Markdown section for the MR report")
    parser.add_argument("--record-out", metavar="PATH", help="the scan record (images)")
    parser.add_argument("--no-attach", action="store_true",
                        help="do not attach the scan record and SBOM to the image (scan.attach)")
    parser.add_argument("--rescan", action="store_true",
                        help="scan even when a record of the same digest, DB, trivy and scanners is attached")
    parser.set_defaults(handler=lambda a: run(
        config_path=a.config, image=a.image, fs=Path(a.fs) if a.fs else None, as_json=a.json,
        outputs={"json_out": a.json_out, "sarif_out": a.sarif_out, "gitlab_out": a.gitlab_out,
                 "sbom_out": a.sbom_out, "md": a.md, "record_out": a.record_out},
        attach=not a.no_attach, rescan=a.rescan))


def run(*, config_path: str | None, image: str | None, fs: Path | None, as_json: bool,
        outputs: dict[str, str | None], attach: bool, rescan: bool) -> int:
    """Scan, write the reports, print the verdict; exit 1 when the policy fails."""
    from mlci import settings as cfg
    from mlci.core.errors import GateFailed, UsageError
    from mlci.core.fsutil import check_writable
    from mlci.scan import run as scan

    if image is not None and fs is not None:
        raise UsageError("name an image or --fs DIR, not both")
    loaded = cfg.load(config_path, (fs or Path.cwd()).resolve())
    for flag, value in outputs.items():
        if value is not None:
            check_writable(Path(value), "--" + flag.replace("_", "-") if flag != "md" else "--md")
    paths = scan.Outputs(**{k: Path(v) if v is not None else None for k, v in outputs.items()})
    config = loaded.config
    context = scan.Context(config.scan, loaded.path.parent if loaded.path else Path.cwd(),
                           loaded.source if loaded.path else "mlci.yaml", config.registries,
                           config.image.plain_http, config.image.ca_bundle)
    if fs is not None:
        result = scan.scan_directory(fs, context, paths)
    else:
        image = image or handed_on_image()
        if image is None:
            _out({"skipped": "no image"} if as_json else "skipped: no image (name one, or run after `mlci build "
                 "--dotenv` with MLCI_IMAGE and MLCI_IMAGE_DIGEST set)", as_json)
            return 0
        result = scan.scan_image(image, context, paths, attach=attach, rescan=rescan)
    verdict = result.verdict
    for line in verdict.warnings:
        log.logger.warning("mlci: warning: %s", line)
    counts = verdict.counts()
    if as_json:
        log.out_json({"target": verdict.output.target, "digest": verdict.output.digest,
                      "verdict": "pass" if verdict.passed else "fail", "reasons": list(verdict.reasons),
                      "counts": counts, "reused": result.reused, "attached": list(result.attached)})
    else:
        shown = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no findings"
        log.out(f"{'pass' if verdict.passed else 'FAIL'}: {_pinned(image, verdict.output.digest) if image else fs} "
                f"({shown})")
    if not verdict.passed:
        raise GateFailed("scan policy failed: " + "; ".join(verdict.reasons))
    return 0


def _pinned(image: str, digest: str | None) -> str:
    """The image as named, with the digest that was scanned (a tag moves; the digest is what was judged)."""
    return f"{image}@{digest}" if digest and not image.endswith(digest) else image


def _out(value: object, as_json: bool) -> None:
    if as_json:
        log.out_json(value)
    else:
        log.out(str(value))
