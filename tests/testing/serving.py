"""Run the example's model server (on the host or inside an image) and talk to it over 127.0.0.1."""
from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

APPLICANT = {"age": 41, "income": 52000.0, "loan_amount": 15000.0, "term_months": 36, "num_delinquencies": 0,
             "region": "north", "employment_type": "salaried", "credit_history": "good"}


def start(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start a server in its own process group (so `stop` also ends what it spawned)."""
    return subprocess.Popen(argv, cwd=cwd, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def stop(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group and wait for it."""
    os.killpg(child.pid, 15)
    child.wait(timeout=20)


def wait_healthy(url: str, attempts: int = 300) -> None:
    """Poll GET /health every 0.1 s until it answers."""
    for _ in range(attempts):
        try:
            urllib.request.urlopen(url + "/health", timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not start")


def predict(url: str) -> list[float]:
    """The server's predictions for two fixed applicants."""
    body = json.dumps({"instances": [APPLICANT, {**APPLICANT, "credit_history": "poor"}]}).encode()
    request = urllib.request.Request(url + "/predict", data=body, headers={"Content-Type": "application/json"})
    return list(json.loads(urllib.request.urlopen(request, timeout=10).read())["predictions"])


def buildah(env: dict[str, str], *args: str) -> str:
    """Run buildah (its storage in `env`, tests.testing.images.buildah_env); its stdout."""
    done = subprocess.run(["buildah", *args], env={**os.environ, **env}, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def assert_image_serves_like_the_host(image: str, example: Path, workdir: Path, env: dict[str, str],
                                      python: str) -> None:
    """Pull `image` (docker://, plain HTTP), run its server with `buildah run --isolation chroot` and the example's
    on the host: both answer /predict alike."""
    from tests.testing.procs import free_port

    container = buildah(env, "from", "--tls-verify=false", image.removeprefix("docker://"))
    image_port, host_port = free_port(), free_port()
    in_image = start(["buildah", "run", "--isolation", "chroot", "-e", "HOST=127.0.0.1",
                      "-e", f"PORT={image_port}", container, "--", python, "src/serve.py"], workdir, env)
    on_host = start(["python", "src/serve.py"], example, {"HOST": "127.0.0.1", "PORT": str(host_port)})
    try:
        wait_healthy(f"http://127.0.0.1:{image_port}")
        wait_healthy(f"http://127.0.0.1:{host_port}")
        assert predict(f"http://127.0.0.1:{image_port}") == predict(f"http://127.0.0.1:{host_port}")
    finally:
        stop(in_image)
        stop(on_host)
