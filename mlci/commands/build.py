"""`mlci build`: the model image without a Docker daemon (the native builder), reproducibly."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from mlci.commands import directory
from mlci.core import log

if TYPE_CHECKING:
    from mlci.image.build import BuildResult
    from mlci.image.settings import ImageSettings
    from mlci.oci.settings import RegistrySettings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Register `build`."""
    parser = sub.add_parser("build", parents=[common], help="build the model image (native, no daemon)",
                            description="Append reproducible dependency, code and artifact layers to the base "
                                        "image; reuse the image when the build key is already in the registry.")
    parser.add_argument("--tag", help="the image tag (default: the tag in image.name, else CI_COMMIT_SHORT_SHA, "
                                      "else the short git sha)")
    parser.add_argument("--digest-file", metavar="PATH", help="write the manifest digest here")
    parser.add_argument("--dotenv", metavar="PATH", help="write MLCI_IMAGE=... and MLCI_IMAGE_DIGEST=... here")
    parser.add_argument("--repo", default=".", type=directory,
                        help="the model repository (default: the current directory)")
    parser.set_defaults(handler=lambda a: run(config_path=a.config, repo=Path(a.repo), tag=a.tag,
                                              digest_file=a.digest_file, dotenv=a.dotenv, as_json=a.json))


def run(*, config_path: str | None, repo: Path, tag: str | None, digest_file: str | None, dotenv: str | None,
        as_json: bool) -> int:
    """Build or reuse; print `ref@digest`; write the digest file and dotenv for later jobs."""
    from mlci import settings as cfg

    loaded = cfg.load(config_path, repo.resolve())
    if not loaded.config.image.name:
        if as_json:
            log.out_json({"skipped": "no image.name"})
        else:
            log.out("skipped: no image.name")
        return 0
    # An OSError (a full disk, a permission, a file gone) is one line from the CLI's handler, never a crash.
    return _build(loaded.config.image, loaded.path.parent if loaded.path else repo, tag,
                  {"--digest-file": digest_file, "--dotenv": dotenv}, as_json, loaded.config.registries)


def _build(settings: ImageSettings, root: Path, tag: str | None, outputs: dict[str, str | None],
           as_json: bool, registries: dict[str, RegistrySettings] | None = None) -> int:
    from mlci.core import git
    from mlci.core.errors import EnvironmentProblem
    from mlci.core.fsutil import check_writable
    from mlci.dvcstage.fetch import pull_missing, recorded_outputs
    from mlci.image import build as image
    from mlci.image import labels as image_labels
    from mlci.image.entries import Collector
    from mlci.image.scan import Scanner
    from mlci.oci.reference import check_tag

    for flag, value in outputs.items():
        if value is not None:
            check_writable(Path(value), flag)
    collector = Collector(root)
    plan = image.plan(settings, root, tag, collector, registries)
    epoch = image_labels.source_date_epoch(os.environ)
    sha = git.head_sha(root)
    epoch = git.commit_time(root, sha) if epoch is None else epoch
    ci_tag = os.environ.get("CI_COMMIT_SHORT_SHA")
    tag = tag or plan.name_tag or (check_tag(ci_tag, "CI_COMMIT_SHORT_SHA") if ci_tag else sha[:12])
    dest = image.open_destination(plan)  # credentials and reachability before any pull or build
    artifacts = plan.paths["artifacts"]
    # The weights come from DVC, not CI artifacts, and only when their layer is not in the destination.
    recorded = (recorded_outputs(artifacts, root) or []) if artifacts and settings.builder == "native" else []
    metrics = image_labels.metrics_files(root, collector)
    try:
        pull_missing(metrics, root)
    except EnvironmentProblem as exc:
        log.logger.warning("mlci: metrics files not pulled (%s)", exc)
    labels = image_labels.compute(root, sha, tag, epoch, os.environ, collector, metrics)
    result = image.build(plan, dest, tag, epoch, labels, Scanner(log.registered_secrets()), collector, recorded,
                         lambda: pull_missing(artifacts, root))
    _report(result, outputs, as_json)
    return 0


def _report(result: BuildResult, outputs: dict[str, str | None], as_json: bool) -> None:
    """The log line, the digest file and dotenv, and `ref@digest` (or JSON) on stdout."""
    from mlci.core.fsutil import atomic_write
    from mlci.image.labels import REVISION

    if result.reused:
        log.logger.info("mlci: reused %s (build key %s already there; built from revision %s)", result.digest,
                        result.key[:16], result.labels.get(REVISION, "unknown"))
    else:
        log.logger.info("mlci: built %s; uploaded %d blob(s)", result.digest, len(result.uploaded))
    pinned = f"{result.reference}@{result.digest}"
    if outputs["--digest-file"]:
        atomic_write(Path(outputs["--digest-file"]), result.digest + "\n")
    if outputs["--dotenv"]:
        atomic_write(Path(outputs["--dotenv"]), f"MLCI_IMAGE={result.reference}\nMLCI_IMAGE_DIGEST={result.digest}\n")
    if as_json:
        log.out_json({"image": pinned, "digest": result.digest, "key": result.key, "reused": result.reused,
                      "uploaded": result.uploaded, "labels": result.labels})
    else:
        log.out(pinned)
