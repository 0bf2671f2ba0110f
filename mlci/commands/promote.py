"""`mlci promote`: a tagged image into a target environment, by digest, with its evidence, under that
environment's policy (docs/promote.md)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from mlci.commands import handed_on_image
from mlci.core import log


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Register `promote`."""
    parser = sub.add_parser("promote", parents=[common], help="promote an image into an environment",
                            description="Copy SRC by digest (with its scan records, SBOM and signatures) into the "
                                        "environment's registry, if its policy accepts it; tags last. Exit 1 when "
                                        "the policy refuses (nothing copied).")
    parser.add_argument("source", metavar="SRC", nargs="?",
                        help="the image: docker://HOST/REPO:TAG, oci:DIR:TAG, ... (default: MLCI_IMAGE, pinned by "
                             "MLCI_IMAGE_DIGEST, as `mlci build --dotenv` hands it on)")
    parser.add_argument("destination", metavar="DEST", nargs="?",
                        help="where it goes (default: promote.environments.ENV.image)")
    parser.add_argument("--env", metavar="ENV", default=os.environ.get("CI_ENVIRONMENT_NAME") or None,
                        help="the target environment (promote.environments; default: CI_ENVIRONMENT_NAME, the "
                             "GitLab job's `environment:`)")
    parser.add_argument("--tag", help="the tag at the destination (default: the release tag of a tag pipeline, "
                                      "else the destination's or the source's tag)")
    parser.add_argument("--force", action="store_true",
                        help="move a tag that names another digest (needs promote.allow_force; recorded)")
    parser.add_argument("--digest-file", metavar="PATH", help="write the promoted digest here")
    parser.add_argument("--dotenv", metavar="PATH",
                        help="write MLCI_PROMOTED_IMAGE=... and MLCI_PROMOTED_DIGEST=... here")
    parser.add_argument("--repo", default=".", help="the model repository (default: the current directory)")
    parser.add_argument("--if-configured", action="store_true",
                        help="exit 0 with 'skipped: ...' when ENV is not in promote.environments or no image was "
                             "handed on (the pipeline's automatic promotion of a repo that configures neither)")
    parser.set_defaults(handler=lambda a: run(
        config_path=a.config, repo=Path(a.repo), source=a.source, destination=a.destination, env=a.env, tag=a.tag,
        force=a.force, digest_file=a.digest_file, dotenv=a.dotenv, as_json=a.json, if_configured=a.if_configured))


def _skipped(reason: str, as_json: bool) -> int:
    if as_json:
        log.out_json({"skipped": reason})
    else:
        log.out(f"skipped: {reason}")
    return 0


def run(*, config_path: str | None, repo: Path, source: str | None, destination: str | None, env: str | None,
        tag: str | None, force: bool, digest_file: str | None, dotenv: str | None, as_json: bool,
        if_configured: bool = False) -> int:
    """Promote; print the destination `ref:tag@digest` (or JSON with what was copied, reused and tagged)."""
    from mlci import settings as cfg
    from mlci.core.fsutil import atomic_write, check_writable
    from mlci.promote import run as promotion

    for flag, value in (("--digest-file", digest_file), ("--dotenv", dotenv)):
        if value is not None:
            check_writable(Path(value), flag)
    from mlci.core.errors import UsageError

    if not env:
        raise UsageError("name the target environment: --env ENV (or run in a job with a GitLab `environment:`)")
    source = source or handed_on_image()
    loaded = cfg.load(config_path, repo.resolve())
    root = loaded.path.parent if loaded.path else repo.resolve()
    target = loaded.config.promote.environments.get(env)
    if if_configured and target is None:
        return _skipped(f"no promote.environments.{env}", as_json)
    if source is None:
        if if_configured:
            return _skipped("no image (none named, and no `mlci build --dotenv` handed one on)", as_json)
        raise UsageError("name the image to promote (SRC), or run after `mlci build --dotenv` (MLCI_IMAGE)")
    if target is not None and target.via == "bundle":  # no link: the same policy, then a bundle (docs/airgap.md)
        from mlci.commands.bundle import export_bundle

        if destination is not None:
            raise UsageError(f"promote.environments.{env}.via is bundle: there is no DEST to copy to; the bundle "
                             "goes to bundle.output (or `mlci bundle export --out PATH`)")
        log.logger.info("mlci: %s is reached through bundles (via: bundle): exporting its bundle", env)
        return export_bundle(loaded.config, repo.resolve(), root, source, env, as_json=as_json, tag=tag,
                             dotenv=dotenv)
    result = promotion.promote(promotion.Request(source, destination, env, tag, force), loaded.config, repo.resolve(),
                               root, os.environ)
    staged, tagged = result.staged, result.tagged
    log.logger.info("mlci: %s: %d blob(s) copied (%.1f MB), %d already there; %d referrer(s)%s; tagged %s%s",
                    result.environment, len(staged.copied), staged.bytes_copied / 1e6, len(staged.reused),
                    len(staged.referrers), ", signatures" if staged.signature else "", ", ".join(tagged.tags),
                    f" (moved from {tagged.previous}, forced)" if tagged.forced else "")
    if digest_file:
        atomic_write(Path(digest_file), result.digest + "\n")
    if dotenv:
        atomic_write(Path(dotenv), f"MLCI_PROMOTED_IMAGE={result.destination.rsplit('@', 1)[0]}\n"
                                   f"MLCI_PROMOTED_DIGEST={result.digest}\n")
    if as_json:
        log.out_json({"image": result.destination, "digest": result.digest, "environment": result.environment,
                      "copied": staged.copied, "reused": staged.reused, "bytes_copied": staged.bytes_copied,
                      "referrers": staged.referrers, "signature": staged.signature, "tagged": tagged.tags,
                      "previous": tagged.previous, "forced": tagged.forced, "scan_record": result.scan_record,
                      "approval": result.approvals.record() if result.approvals else None,
                      "signed": result.signature, "artifacts": result.artifacts, "data": result.data,
                      "gitops": result.record.commit if result.record else None})
    else:
        log.out(result.destination)
    return 0

