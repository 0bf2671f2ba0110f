"""`mlci build`: the model image without a Docker daemon (the native builder), reproducibly."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

from mlci.core import log


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Register `build`."""
    parser = sub.add_parser("build", parents=[common], help="build the model image (native, no daemon)",
                            description="Append reproducible dependency, code and artifact layers to the base "
                                        "image; reuse the image when the build key is already in the registry.")
    parser.add_argument("--tag", help="the image tag (default: CI_COMMIT_SHORT_SHA, else the short git sha)")
    parser.add_argument("--digest-file", metavar="PATH", help="write the manifest digest here")
    parser.add_argument("--dotenv", metavar="PATH", help="write MLCI_IMAGE=... and MLCI_IMAGE_DIGEST=... here")
    parser.add_argument("--repo", default=".", help="the model repository (default: the current directory)")
    parser.set_defaults(handler=lambda a: run(config_path=a.config, repo=Path(a.repo), tag=a.tag,
                                              digest_file=a.digest_file, dotenv=a.dotenv, as_json=a.json))


def run(*, config_path: str | None, repo: Path, tag: str | None, digest_file: str | None, dotenv: str | None,
        as_json: bool) -> int:
    """Build or reuse; print `ref@digest`; write the digest file and dotenv for later jobs."""
    from mlci import settings as cfg
    from mlci.core.fsutil import atomic_write
    from mlci.core.git import git
    from mlci.dvcstage.fetch import pull_missing
    from mlci.image.build import build

    loaded = cfg.load(config_path, repo.resolve())
    root = loaded.path.parent if loaded.path else repo
    pull_missing(loaded.config.image.artifacts, root)  # the weights come from DVC, not CI artifacts
    sha = git(root, "rev-parse", "HEAD").stdout.strip()
    tag = tag or os.environ.get("CI_COMMIT_SHORT_SHA") or sha[:12] or "latest"
    epoch = os.environ.get("SOURCE_DATE_EPOCH") or git(root, "log", "-1", "--format=%ct").stdout.strip() or "0"
    result = build(loaded.config.image, root, tag, int(epoch), _labels(root, sha, tag, int(epoch)))
    if result.reused:
        log.logger.info("mlci: reused %s (build key %s already in the registry)", result.digest, result.key[:16])
    else:
        log.logger.info("mlci: built %s; uploaded %d blob(s)", result.digest, len(result.uploaded))
    pinned = f"{result.reference}@{result.digest}"
    if digest_file:
        atomic_write(Path(digest_file), result.digest + "\n")
    if dotenv:
        atomic_write(Path(dotenv), f"MLCI_IMAGE={result.reference}\nMLCI_IMAGE_DIGEST={result.digest}\n")
    log.out(json.dumps({"image": pinned, "digest": result.digest, "key": result.key, "reused": result.reused,
                        "uploaded": result.uploaded}, indent=2) if as_json else pinned)
    return 0


def _labels(root: Path, sha: str, tag: str, epoch: int) -> dict[str, str]:
    """OCI annotations plus mlci's own: the dvc.lock and metrics digests the image was built from."""
    import datetime

    from mlci.core.git import git

    source = os.environ.get("CI_PROJECT_URL") or git(root, "remote", "get-url", "origin").stdout.strip()
    labels = {
        "org.opencontainers.image.revision": sha,
        "org.opencontainers.image.source": log.redact(source),
        "org.opencontainers.image.created": datetime.datetime.fromtimestamp(
            epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "org.opencontainers.image.version": tag,
    }
    for name, path in (("io.mlci.dvc-lock.digest", root / "dvc.lock"),
                       ("io.mlci.metrics.digest", root / "metrics.json")):
        if path.is_file():
            labels[name] = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    return labels
