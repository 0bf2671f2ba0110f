"""Dockerfile builders: buildah (runs here, daemonless), kaniko and docker buildx (thin argv builders,
unverified on a real runner: neither can run on this machine). Each returns the pushed digest, read
from the tool's own digest/metadata file, never parsed from its log."""
from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from mlci.core import jsonsafe, proc
from mlci.core.errors import EnvironmentProblem, PipelineFailed
from mlci.core.scratch import scratch_dir
from mlci.image.settings import ImageSettings
from mlci.oci.reference import DockerRef, ImageRef
from mlci.oci.settings import RegistryOptions


def _flags(settings: ImageSettings, labels: dict[str, str], flag_arg: str = "--build-arg",
           flag_label: str = "--label") -> list[str]:
    args = [x for k, v in sorted(settings.build_args.items()) for x in (flag_arg, f"{k}={v}")]
    return args + [x for k, v in sorted(labels.items()) for x in (flag_label, f"{k}={v}")]


def _run(argv: list[str], what: str, cwd: Path, env: dict[str, str] | None = None, *,
         private_tmp: bool = True) -> None:
    result = proc.run(argv, cwd=cwd, env=env, stream=True, check=False, private_tmp=private_tmp)
    if result.returncode != 0:
        raise PipelineFailed(f"{what} failed (exit {result.returncode}):\n{result.tail(30)}")


def _digest(path: Path, what: str) -> str:
    text = path.read_text().strip() if path.is_file() else ""
    if not text.startswith("sha256:"):
        raise EnvironmentProblem(f"{what} wrote no digest to {path}")
    return text


def _push_flags(options: RegistryOptions | None, tmp: Path) -> list[str]:
    """buildah push's flags for the destination's `registries` entry: plain HTTP, its CA bundle (a cert dir), and
    its credentials in a private auth file in `tmp` (never on the command line)."""
    if options is None:
        return []
    flags = ["--tls-verify=false"] if options.plain_http else []
    if options.ca_bundle:
        certs = tmp / "certs"
        certs.mkdir()
        shutil.copyfile(options.ca_bundle, certs / "ca.crt")
        flags += ["--cert-dir", str(certs)]
    credentials = options.credentials()
    if credentials is not None:
        auth = tmp / "auth.json"
        token = base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()
        # The credential itself, so not through fsutil (which masks registered secrets): a private file in a
        # private temp dir, removed with it.
        fd = os.open(auth, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, json.dumps({"auths": {options.host: {"auth": token}}}).encode())
        finally:
            os.close(fd)
        flags += ["--authfile", str(auth)]
    return flags


def buildah(settings: ImageSettings, root: Path, dest: ImageRef, tag: str, labels: dict[str, str],
            mtime: int, options: RegistryOptions | None) -> str:
    """`buildah bud --isolation chroot`, then `buildah push --digestfile` with the destination's `registries`
    settings (`options`; credentials from them, else buildah's own auth file chain)."""
    local = f"localhost/mlci-build:{tag}"
    env = {"BUILDAH_ISOLATION": "chroot"}
    # buildah picks its own temp dir for image copies of many GB (TMPDIR, else containers.conf's
    # image_copy_tmp_dir, else /var/tmp); a private one under /tmp could land them on a small tmpfs
    _run(["buildah", "bud", "--isolation", "chroot", "--timestamp", str(mtime), "-f", settings.dockerfile,
          *_flags(settings, labels), "-t", local, settings.context], "buildah bud", root, env, private_tmp=False)
    target = f"{dest}:{tag}" if isinstance(dest, DockerRef) and not dest.tag else str(dest)
    with scratch_dir("mlci-buildah-") as tmp:
        digest_file = Path(tmp) / "digest"
        _run(["buildah", "push", *_push_flags(options, Path(tmp)), "--digestfile", str(digest_file), local, target],
             "buildah push", root, env, private_tmp=False)
        return _digest(digest_file, "buildah push")


def kaniko(settings: ImageSettings, root: Path, dest: ImageRef, tag: str, labels: dict[str, str],
           mtime: int, options: RegistryOptions | None) -> str:
    """kaniko's executor with --digest-file and --reproducible (unverified on a real runner); credentials from
    kaniko's own /kaniko/.docker/config.json."""
    if not isinstance(dest, DockerRef):
        raise EnvironmentProblem("the kaniko builder pushes to a registry: image.name must be docker://...")
    insecure = ["--insecure", "--insecure-registry", dest.registry] if options and options.plain_http else []
    ca_bundle = options.ca_bundle if options else None
    certs = ["--registry-certificate", f"{dest.registry}={ca_bundle}"] if ca_bundle else []
    with scratch_dir("mlci-kaniko-") as tmp:
        digest_file = Path(tmp) / "digest"
        _run([settings.kaniko_executor, "--context", f"dir://{(root / settings.context).resolve()}",
              "--dockerfile", str((root / settings.dockerfile).resolve()),
              "--destination", f"{dest.registry}/{dest.repository}:{tag}", "--digest-file", str(digest_file),
              "--reproducible", *insecure, *certs, *_flags(settings, labels)], "kaniko", root)
        return _digest(digest_file, "kaniko")


def docker(settings: ImageSettings, root: Path, dest: ImageRef, tag: str, labels: dict[str, str],
           mtime: int, options: RegistryOptions | None) -> str:
    """`docker buildx build --push --metadata-file` (needs a daemon; unverified on a real runner; TLS and
    credentials are the daemon's and buildx's own)."""
    if not isinstance(dest, DockerRef):
        raise EnvironmentProblem("the docker builder pushes to a registry: image.name must be docker://...")
    with scratch_dir("mlci-docker-") as tmp:
        metadata = Path(tmp) / "metadata.json"
        _run(["docker", "buildx", "build", "--file", settings.dockerfile, *_flags(settings, labels),
              "--tag", f"{dest.registry}/{dest.repository}:{tag}", "--push", "--provenance=false",
              "--metadata-file", str(metadata), settings.context], "docker buildx build", root,
             {"SOURCE_DATE_EPOCH": str(mtime)})
        try:
            digest = jsonsafe.loads(metadata.read_text())["containerimage.digest"]
        except (OSError, ValueError, KeyError):
            raise EnvironmentProblem(f"docker buildx wrote no image digest to {metadata}") from None
        return str(digest)


Builder = Callable[[ImageSettings, Path, ImageRef, str, dict[str, str], int, RegistryOptions | None], str]
BUILDERS: dict[str, Builder] = {
    "buildah": buildah, "kaniko": kaniko, "docker": docker,
}
