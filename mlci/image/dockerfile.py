"""Dockerfile builders: buildah (runs here, daemonless), kaniko and docker buildx (thin argv builders,
unverified on a real runner: neither can run on this machine). Each returns the pushed digest, read
from the tool's own digest/metadata file, never parsed from its log."""
from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

from mlci.core import proc
from mlci.core.errors import EnvironmentProblem, PipelineFailed
from mlci.image.settings import ImageSettings
from mlci.oci.reference import DockerRef, ImageRef


def _flags(settings: ImageSettings, labels: dict[str, str], flag_arg: str = "--build-arg",
           flag_label: str = "--label") -> list[str]:
    args = [x for k, v in sorted(settings.build_args.items()) for x in (flag_arg, f"{k}={v}")]
    return args + [x for k, v in sorted(labels.items()) for x in (flag_label, f"{k}={v}")]


def _run(argv: list[str], what: str, cwd: Path, env: dict[str, str] | None = None) -> None:
    result = proc.run(argv, cwd=cwd, env=env, stream=True, check=False)
    if result.returncode != 0:
        raise PipelineFailed(f"{what} failed (exit {result.returncode}):\n{result.tail(30)}")


def _digest(path: Path, what: str) -> str:
    text = path.read_text().strip() if path.is_file() else ""
    if not text.startswith("sha256:"):
        raise EnvironmentProblem(f"{what} wrote no digest to {path}")
    return text


def buildah(settings: ImageSettings, root: Path, dest: ImageRef, tag: str, labels: dict[str, str],
            mtime: int) -> str:
    """`buildah bud --isolation chroot`, then `buildah push --digestfile` (credentials from the auth file)."""
    local = f"localhost/mlci-build:{tag}"
    env = {"BUILDAH_ISOLATION": "chroot"}
    _run(["buildah", "bud", "--isolation", "chroot", "--timestamp", str(mtime), "-f", settings.dockerfile,
          *_flags(settings, labels), "-t", local, settings.context], "buildah bud", root, env)
    target = f"{dest}:{tag}" if isinstance(dest, DockerRef) and not dest.tag else str(dest)
    tls = ["--tls-verify=false"] if isinstance(dest, DockerRef) and dest.registry in settings.plain_http else []
    with tempfile.TemporaryDirectory(prefix="mlci-buildah-") as tmp:
        digest_file = Path(tmp) / "digest"
        _run(["buildah", "push", *tls, "--digestfile", str(digest_file), local, target], "buildah push", root, env)
        return _digest(digest_file, "buildah push")


def kaniko(settings: ImageSettings, root: Path, dest: ImageRef, tag: str, labels: dict[str, str],
           mtime: int) -> str:
    """kaniko's executor with --digest-file and --reproducible (unverified on a real runner)."""
    if not isinstance(dest, DockerRef):
        raise EnvironmentProblem("the kaniko builder pushes to a registry: image.name must be docker://...")
    insecure = ["--insecure", "--insecure-registry", dest.registry] if dest.registry in settings.plain_http else []
    certs = ["--registry-certificate", f"{dest.registry}={settings.ca_bundle}"] if settings.ca_bundle else []
    with tempfile.TemporaryDirectory(prefix="mlci-kaniko-") as tmp:
        digest_file = Path(tmp) / "digest"
        _run([settings.kaniko_executor, "--context", f"dir://{(root / settings.context).resolve()}",
              "--dockerfile", str((root / settings.dockerfile).resolve()),
              "--destination", f"{dest.registry}/{dest.repository}:{tag}", "--digest-file", str(digest_file),
              "--reproducible", *insecure, *certs, *_flags(settings, labels)], "kaniko", root)
        return _digest(digest_file, "kaniko")


def docker(settings: ImageSettings, root: Path, dest: ImageRef, tag: str, labels: dict[str, str],
           mtime: int) -> str:
    """`docker buildx build --push --metadata-file` (needs a daemon; unverified on a real runner)."""
    if not isinstance(dest, DockerRef):
        raise EnvironmentProblem("the docker builder pushes to a registry: image.name must be docker://...")
    with tempfile.TemporaryDirectory(prefix="mlci-docker-") as tmp:
        metadata = Path(tmp) / "metadata.json"
        _run(["docker", "buildx", "build", "--file", settings.dockerfile, *_flags(settings, labels),
              "--tag", f"{dest.registry}/{dest.repository}:{tag}", "--push", "--provenance=false",
              "--metadata-file", str(metadata), settings.context], "docker buildx build", root,
             {"SOURCE_DATE_EPOCH": str(mtime)})
        try:
            digest = json.loads(metadata.read_text())["containerimage.digest"]
        except (OSError, ValueError, KeyError):
            raise EnvironmentProblem(f"docker buildx wrote no image digest to {metadata}") from None
        return str(digest)


BUILDERS: dict[str, Callable[[ImageSettings, Path, ImageRef, str, dict[str, str], int], str]] = {
    "buildah": buildah, "kaniko": kaniko, "docker": docker,
}
