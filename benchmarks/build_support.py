"""Shared parts of benchmarks/build.py: measured processes (`/usr/bin/time -v`), a model repo whose weights
are a DVC stage output, a DVC HTTP remote that logs what it serves, registry upload accounting, and the one
call into mlci's OCI engine (`engine_push`, also run as `python benchmarks/build_support.py push SRC DST
PLAIN_HTTP_HOST` so that its peak RSS is measured in a process of its own).

Names of mlci that another change may rename live here only: `engine_push` (mlci.oci.copy.copy and
open_endpoint) and `mlci_config` (the `image` section; `registries.HOST.plain_http`).
"""
from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
MLCI = VENV_BIN / "mlci"
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "mlci bench", "GIT_AUTHOR_EMAIL": "bench@mlci.invalid",
                "GIT_COMMITTER_NAME": "mlci bench", "GIT_COMMITTER_EMAIL": "bench@mlci.invalid"}
NEEDED_DEBS = {"/usr/bin/time": "time", "/usr/bin/skopeo": "skopeo", "/usr/bin/buildah": "buildah",
               "/usr/bin/docker-registry": "docker-registry"}
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


@dataclass(frozen=True)
class Run:
    """One measured process: wall seconds, peak RSS (kB) and what it printed."""

    wall: float
    rss_kb: int
    stdout: str
    stderr: str

    @property
    def rss_mb(self) -> float:
        return self.rss_kb / 1024


def ensure_tools() -> None:
    """apt-get install what the benchmark runs and scripts/test does not install (as scripts/ do)."""
    missing = sorted({deb for path, deb in NEEDED_DEBS.items() if not Path(path).exists()})
    if missing:
        print(f"==> apt-get install {' '.join(missing)}", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, stdout=subprocess.DEVNULL)
    if not MLCI.exists():
        raise SystemExit(f"{MLCI} is missing: run scripts/test once (it makes .venv)")


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a set-up command (not measured); its stdout, or exit with its output on failure."""
    done = subprocess.run(argv, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                         f"{done.stderr[-3000:]}")
    return done.stdout


def timed(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> Run:
    """Run one command under `/usr/bin/time -v`: wall clock and peak RSS (largest process of the tree)."""
    done = subprocess.run(["/usr/bin/time", "-v", *argv], cwd=cwd, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                         f"{done.stderr[-3000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", done.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    if wall is None or rss is None:
        raise SystemExit(f"/usr/bin/time -v printed no figures for {argv[:3]}:\n{done.stderr[-2000:]}")
    seconds = int(wall[1] or 0) * 3600 + int(wall[2]) * 60 + float(wall[3])
    return Run(seconds, int(rss[1]), done.stdout, done.stderr)


def git(repo: Path, *args: str) -> str:
    return run(["git", *args], repo, GIT_IDENTITY)


def commit_all(repo: Path, message: str) -> str:
    """Stage everything and commit (as a CI pipeline's commit); returns the sha."""
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


def code_change(repo: Path, n: int) -> str:
    """A one-line change of the code only, committed; returns the sha."""
    serve = repo / "src" / "serve.py"
    serve.write_text(serve.read_text() + f"\n# code-only change {n}\n")
    return commit_all(repo, f"code-only change {n}")


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


# --- the DVC remote ---------------------------------------------------------------------------------------------


@dataclass
class Served:
    """One request the DVC remote answered."""

    method: str
    path: str
    status: int
    sent: int


@dataclass
class DvcRemote:
    """A DVC HTTP remote on 127.0.0.1 serving a directory read-only, with an access log in memory: which
    objects were downloaded and how many bytes were sent. DVC 3's remote layout (files/md5/..) is the same as
    its cache's, so it can serve the source repo's .dvc/cache directly (no second copy of the weights)."""

    directory: Path
    log: list[Served] = field(default_factory=list)
    _server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> str:
        remote = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def send_response(self, code: int, message: str | None = None) -> None:
                self._status = code
                super().send_response(code, message)

            def copyfile(self, source: Any, outputfile: Any) -> None:
                """Send the file, counting the bytes; a client that hangs up early is recorded, not an error."""
                try:
                    while chunk := source.read(1 << 20):
                        outputfile.write(chunk)
                        self._sent += len(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
                """Recorded after the body is sent (see handle_one_request below), not here."""

            def handle_one_request(self) -> None:
                self._status, self._sent = 0, 0
                super().handle_one_request()
                if getattr(self, "command", None):
                    remote.log.append(Served(self.command, self.path, self._status, self._sent))

        handler = partial(Handler, directory=str(self.directory))
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True, name="dvc-remote").start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def sent_for(self, md5s: list[str], since: int = 0) -> int:
        """Bytes sent for the objects with these md5s (GET answered 200) after the `since`-th request."""
        paths = {f"/files/md5/{m[:2]}/{m[2:]}" for m in md5s}
        return sum(s.sent for s in self.log[since:] if s.method == "GET" and s.path.split("?")[0] in paths)


# --- the model repo ---------------------------------------------------------------------------------------------


def mlci_config(registry_host: str, repository: str, base: str, wheelhouse: Path) -> dict[str, Any]:
    """mlci.yaml for the example image with DVC-tracked weights: defaults except where it goes (plain HTTP
    to the loopback registry), the base, and where pip finds the pinned wheels (offline)."""
    return {"version": 1, "registries": {registry_host: {"plain_http": True}}, "image": {
        "name": f"docker://{registry_host}/{repository}", "base": base,
        "lock": "requirements.lock", "pip_args": ["--no-index", "--find-links", str(wheelhouse)],
        "code": ["src"], "artifacts": ["model/weights.bin"], "cmd": ["python3", "src/serve.py"]}}


def make_model_repo(repo: Path, weights_mb: int, remote_url: str, config: dict[str, Any], wheelhouse: Path) -> str:
    """A git + DVC repo like a model team's: the example's code and lock, weights made by a DVC stage
    (`dvc repro`, recorded in dvc.lock, committed); the DVC remote is `remote_url`. Returns the weights' md5.

    Pinned for disk only: DVC `cache.type hardlink` (default reflink,copy), so workspace, cache and the
    remote served from the cache share one copy of the weights."""
    example = ROOT / "example-model-repo"
    shutil.copytree(example / "src", repo / "src")
    shutil.copy(example / "requirements.lock", repo)
    shutil.copytree(wheelhouse, repo / "wheelhouse", ignore=shutil.ignore_patterns("done"), copy_function=os.link)
    (repo / ".gitignore").write_text("/wheelhouse/\n")
    (repo / ".dockerignore").write_text(".git\n.dvc\n")
    (repo / "Dockerfile").write_text(DOCKERFILE)
    (repo / "mlci.yaml").write_text(json.dumps(config, indent=2) + "\n")
    size = weights_mb << 20
    (repo / "dvc.yaml").write_text(
        "stages:\n  weights:\n"
        f"    cmd: mkdir -p model && head -c {size} /dev/urandom > model/weights.bin\n"
        "    outs:\n      - model/weights.bin\n")
    git(repo, "init", "-q", "-b", "main")
    dvc = str(VENV_BIN / "dvc")
    run([dvc, "init", "-q"], repo)
    run([dvc, "config", "cache.type", "hardlink"], repo)
    run([dvc, "remote", "add", "-d", "bench", remote_url], repo)
    run([dvc, "repro", "-q"], repo)
    commit_all(repo, f"model with {weights_mb} MB of weights")
    lock = (repo / "dvc.lock").read_text()
    md5 = re.search(r"md5: ([0-9a-f]{32})", lock)
    if md5 is None:
        raise SystemExit(f"no md5 in {repo}/dvc.lock:\n{lock}")
    return md5[1]


def dvc_env(work: Path) -> dict[str, str]:
    """DVC without analytics and with its site cache in the work dir (not /var/tmp/dvc)."""
    return {"DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(work / "dvc-site")}


# --- registries -------------------------------------------------------------------------------------------------


def uploaded_bytes(registry: Any, since: int) -> int:
    """Bytes of the blobs whose uploads completed (PUT ...?digest= answered 201) after the `since`-th
    access-log entry of a tests.testing.registry registry."""
    from tests.testing.registry import access_log

    total = 0
    for entry in access_log(registry)[since:]:
        match = re.search(r"digest=sha256(?::|%3A)([0-9a-f]{64})", entry.target)
        if entry.method == "PUT" and entry.status == 201 and match:
            blob = registry.root / "docker/registry/v2/blobs/sha256" / match[1][:2] / match[1] / "data"
            total += blob.stat().st_size if blob.exists() else 0
    return total


def log_mark(registry: Any) -> int:
    from tests.testing.registry import access_log

    return len(access_log(registry))


# --- mlci's OCI engine ------------------------------------------------------------------------------------------


def engine_push(source: str, destination: str, plain_http_host: str) -> None:
    """Copy one image with mlci's OCI engine, as `mlci build` pushes (today: mlci.oci.copy.open_endpoint +
    copy + commit). The one place to adapt when the engine's names change."""
    from mlci.oci.copy import copy, open_endpoint
    from mlci.oci.reference import parse

    src, src_ref = open_endpoint(parse(source))
    dst, dst_tag = open_endpoint(parse(destination), plain_http=(plain_http_host,))
    dst.check_writable()
    copy(src, src_ref, dst, dst_tag)
    dst.commit()


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "push":
        raise SystemExit("usage: build_support.py push SRC DST PLAIN_HTTP_HOST")
    sys.path.insert(0, str(ROOT))
    engine_push(sys.argv[2], sys.argv[3], sys.argv[4])
