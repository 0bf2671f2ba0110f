"""Rebuild the example image with 1 GB of weights after a code-only change: `mlci build` (native)
against `buildah bud --layers` + `buildah push`, to the same registry, side by side in one run.

Fair set-up for buildah: overlay storage, a warm layer cache (one build before the measured one),
and the weights copied before the code in the Dockerfile, so only the code layer is rebuilt. Both
push to the same local registry, which already holds the first build's blobs. Reports wall time
and peak RSS of the measured rebuild (`/usr/bin/time -v`), the bytes each uploaded, and the ratio.

    .venv/bin/python benchmarks/build.py [--weights-mb 1024]

Needs what scripts/test prepares: buildah, docker-registry, .tools/base (debootstrap) and
.tools/wheelhouse.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.testing.images import BASE_TAG, base_layout, wheelhouse  # noqa: E402 - after sys.path
from tests.testing.registry import access_log, start_registry, stop_registry  # noqa: E402

MLCI = ROOT / ".venv" / "bin" / "mlci"
DOCKERFILE = """\
FROM localhost/mlci-bench-base:1
COPY wheelhouse /wheels
COPY requirements.lock /app/requirements.lock
RUN python3 -m ensurepip >/dev/null 2>&1 || true; mkdir -p /opt/mlci/site-packages && \\
    cd /wheels && python3 -c "import zipfile,glob;\
    [zipfile.ZipFile(w).extractall('/opt/mlci/site-packages') for w in glob.glob('*.whl')]"
ENV PYTHONPATH=/opt/mlci/site-packages
COPY model /app/model
COPY src /app/src
WORKDIR /app
CMD ["python3", "src/serve.py"]
"""


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int, str]:
    """Wall seconds and peak RSS (kB) of one command, and its stdout."""
    done = subprocess.run(["/usr/bin/time", "-v", *argv], cwd=cwd, env={**os.environ, **env},
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", done.stderr)
    assert wall
    seconds = int(wall[1] or 0) * 3600 + int(wall[2]) * 60 + float(wall[3])
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)[1])  # type: ignore[index]
    return seconds, rss, done.stdout


def uploaded_bytes(registry_root: Path, log_entries: list[object], since: int) -> int:
    """Bytes of the blobs whose uploads completed after the `since`-th access-log entry."""
    total = 0
    for entry in log_entries[since:]:
        match = re.search(r"digest=sha256(?::|%3A)([0-9a-f]{64})", entry.target)  # type: ignore[attr-defined]
        if entry.method == "PUT" and entry.status == 201 and match:  # type: ignore[attr-defined]
            blob = registry_root / "docker/registry/v2/blobs/sha256" / match[1][:2] / match[1] / "data"
            total += blob.stat().st_size if blob.exists() else 0
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights-mb", type=int, default=1024)
    args = parser.parse_args()
    registry = start_registry()
    work = Path(tempfile.mkdtemp(prefix="mlci-bench-build-"))
    try:
        repo = work / "repo"
        shutil.copytree(ROOT / "example-model-repo" / "src", repo / "src")
        shutil.copy(ROOT / "example-model-repo" / "requirements.lock", repo)
        (repo / "model").mkdir()
        with (repo / "model" / "weights.bin").open("wb") as handle:
            for _ in range(args.weights_mb):
                handle.write(os.urandom(1 << 20))
        shutil.copytree(wheelhouse(), repo / "wheelhouse", ignore=shutil.ignore_patterns("done"))
        (repo / "Dockerfile").write_text(DOCKERFILE)
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
        (repo / "mlci.yaml").write_text(json.dumps({"version": 1, "image": {
            "name": f"docker://{registry.host}/bench/native", "plain_http": [registry.host],
            "base": f"oci:{base_layout()}:{BASE_TAG}", "lock": "requirements.lock",
            "pip_args": ["--no-index", "--find-links", str(repo / "wheelhouse")], "code": ["src"],
            "artifacts": ["model"], "cmd": ["python3", "src/serve.py"]}}))
        storage = work / "storage.conf"
        storage.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{work}/graph"\nrunroot = "{work}/run"\n')
        env = {"CONTAINERS_STORAGE_CONF": str(storage), "BUILDAH_ISOLATION": "chroot",
               "SOURCE_DATE_EPOCH": "1700000000"}
        base = work / "baselayout"  # buildah derives an image name from the path: no dots in it
        shutil.copytree(base_layout(), base, copy_function=os.link)
        pulled = subprocess.run(["buildah", "pull", "-q", f"oci:{base}:{BASE_TAG}"],
                                env={**os.environ, **env}, check=True, capture_output=True, text=True)
        subprocess.run(["buildah", "tag", pulled.stdout.split()[-1], "localhost/mlci-bench-base:1"],
                       env={**os.environ, **env}, check=True, capture_output=True)
        bud = ["buildah", "bud", "--layers", "--isolation", "chroot", "-t", "localhost/bench:1", "."]
        push = ["buildah", "push", "--tls-verify=false", "localhost/bench:1", f"docker://{registry.host}/bench/buildah:1"]
        print("warming both (first builds and pushes)...", flush=True)
        timed([str(MLCI), "build", "--tag", "1"], env, repo)
        timed(bud, env, repo)
        timed(push, env, repo)
        (repo / "src" / "serve.py").write_text((repo / "src" / "serve.py").read_text() + "\n# a code-only change\n")
        start = len(access_log(registry))
        ours = timed([str(MLCI), "build", "--tag", "2"], env, repo)
        ours_bytes = uploaded_bytes(registry.root, access_log(registry), start)
        start = len(access_log(registry))
        bud_t = timed(bud, env, repo)
        push_t = timed(push, env, repo)
        theirs_bytes = uploaded_bytes(registry.root, access_log(registry), start)
        theirs = (bud_t[0] + push_t[0], max(bud_t[1], push_t[1]))
        print(f"\ncode-only rebuild with {args.weights_mb} MB of weights, to the same registry:\n")
        print("| builder | wall | peak RSS | uploaded |")
        print("|---|---|---|---|")
        print(f"| mlci build (native) | {ours[0]:.2f} s | {ours[1] / 1024:.0f} MB | {ours_bytes / 1e6:.2f} MB |")
        print(f"| buildah bud --layers + push | {theirs[0]:.2f} s (bud {bud_t[0]:.2f} + push {push_t[0]:.2f}) | "
              f"{theirs[1] / 1024:.0f} MB | {theirs_bytes / 1e6:.2f} MB |")
        print(f"\nratio mlci/buildah: {ours[0] / theirs[0]:.2f}x (target <= 0.2x)")
    finally:
        stop_registry(registry)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    started = time.time()
    main()
    print(f"(benchmark took {time.time() - started:.0f} s)")
