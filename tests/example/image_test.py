"""The example's model image, built natively on a Debian base, pushed to the real registry, pulled and
run with `buildah run --isolation chroot`: its /predict answers exactly as the host's server does."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.example.serve_test import APPLICANT, _free_port
from tests.testing import repos
from tests.testing.images import BASE_TAG, base_layout, wheelhouse
from tests.testing.registry import Registry


def _predict(url: str) -> list[float]:
    body = json.dumps({"instances": [APPLICANT, {**APPLICANT, "credit_history": "poor"}]}).encode()
    request = urllib.request.Request(url + "/predict", data=body, headers={"Content-Type": "application/json"})
    return list(json.loads(urllib.request.urlopen(request, timeout=10).read())["predictions"])


def _wait(url: str) -> None:
    for _ in range(300):
        try:
            urllib.request.urlopen(url + "/health", timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not start")


def _serve(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, cwd=cwd, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def _stop(child: subprocess.Popen[bytes]) -> None:
    os.killpg(child.pid, 15)
    child.wait(timeout=20)


def test_the_example_image_serves_the_same_predictions_as_the_host(
        example: Path, registry: Registry, tmp_path: Path) -> None:
    if shutil.which("buildah") is None:
        pytest.fail("buildah is not installed: run scripts/test", pytrace=False)
    env = {"MLCI_IMAGE_NAME": f"docker://{registry.host}/ml/credit-model", "MLCI_IMAGE_PLAIN_HTTP": registry.host,
           "MLCI_IMAGE_BASE": f"oci:{base_layout()}:{BASE_TAG}",
           "MLCI_IMAGE_PIP_ARGS": f"--no-index,--find-links,{wheelhouse()}", "SOURCE_DATE_EPOCH": "1700000000"}
    built = repos.run_mlci(example, "build", "--tag", "t1", env=env)
    assert built.returncode == 0, built.stderr
    image = built.stdout.strip()

    storage = tmp_path / "storage.conf"
    storage.write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{tmp_path}/graph"\nrunroot = "{tmp_path}/run"\n')
    buildah_env = {"CONTAINERS_STORAGE_CONF": str(storage), "BUILDAH_ISOLATION": "chroot"}
    container = subprocess.run(["buildah", "from", "--tls-verify=false", image.removeprefix("docker://")],
                               env={**os.environ, **buildah_env}, capture_output=True, text=True,
                               check=True).stdout.strip()
    image_port, host_port = _free_port(), _free_port()
    in_image = _serve(["buildah", "run", "--isolation", "chroot", "-e", "HOST=127.0.0.1", "-e", f"PORT={image_port}",
                       container, "--", "python3", "src/serve.py"], tmp_path, buildah_env)
    on_host = _serve(["python", "src/serve.py"], example, {"HOST": "127.0.0.1", "PORT": str(host_port)})
    try:
        _wait(f"http://127.0.0.1:{image_port}")
        _wait(f"http://127.0.0.1:{host_port}")
        assert _predict(f"http://127.0.0.1:{image_port}") == _predict(f"http://127.0.0.1:{host_port}")
    finally:
        _stop(in_image)
        _stop(on_host)


def test_the_example_dockerfile_builds_with_buildah_and_serves_the_same_predictions(
        example: Path, registry: Registry, tmp_path: Path) -> None:
    import http.server
    import threading

    if shutil.which("buildah") is None:
        pytest.fail("buildah is not installed: run scripts/test", pytrace=False)
    storage = tmp_path / "storage.conf"
    storage.write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{tmp_path}/graph"\nrunroot = "{tmp_path}/run"\n')
    buildah_env = {"CONTAINERS_STORAGE_CONF": str(storage), "BUILDAH_ISOLATION": "chroot"}
    base = tmp_path / "baselayout"  # buildah names an image after its path: no dots in it
    shutil.copytree(base_layout(), base, copy_function=os.link)
    pulled = subprocess.run(["buildah", "pull", "-q", f"oci:{base}:{BASE_TAG}"], env={**os.environ, **buildah_env},
                            capture_output=True, text=True, check=True).stdout.split()[-1]
    subprocess.run(["buildah", "tag", pulled, "localhost/debian-python:bookworm"], env={**os.environ, **buildah_env},
                   check=True)
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(wheelhouse()))  # noqa: E731
    wheels = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=wheels.serve_forever, daemon=True).start()
    config = example / "mlci.yaml"
    config.write_text(config.read_text().replace("image:\n", "image:\n  builder: buildah\n  build_args: " + json.dumps({
        "BASE_IMAGE": "localhost/debian-python:bookworm", "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": f"http://127.0.0.1:{wheels.server_address[1]}/"}) + "\n", 1))
    try:
        built = repos.run_mlci(example, "build", "--tag", "bh1", env={
            **buildah_env, "MLCI_IMAGE_NAME": f"docker://{registry.host}/ml/credit-buildah",
            "MLCI_IMAGE_PLAIN_HTTP": registry.host, "SOURCE_DATE_EPOCH": "1700000000"})
    finally:
        wheels.shutdown()
    assert built.returncode == 0, built.stderr[-3000:]
    container = subprocess.run(["buildah", "from", "--tls-verify=false", built.stdout.strip().removeprefix("docker://")],
                               env={**os.environ, **buildah_env}, capture_output=True, text=True,
                               check=True).stdout.strip()
    image_port, host_port = _free_port(), _free_port()
    in_image = _serve(["buildah", "run", "--isolation", "chroot", "-e", "HOST=127.0.0.1", "-e", f"PORT={image_port}",
                       container, "--", "python", "src/serve.py"], tmp_path, buildah_env)
    on_host = _serve(["python", "src/serve.py"], example, {"HOST": "127.0.0.1", "PORT": str(host_port)})
    try:
        _wait(f"http://127.0.0.1:{image_port}")
        _wait(f"http://127.0.0.1:{host_port}")
        assert _predict(f"http://127.0.0.1:{image_port}") == _predict(f"http://127.0.0.1:{host_port}")
    finally:
        _stop(in_image)
        _stop(on_host)
