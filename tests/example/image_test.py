"""The example's model image, built both ways — natively on a Debian base, and with buildah from the
repo's own Dockerfile — pushed to the real registry, pulled and run with `buildah run --isolation
chroot`: its /predict answers exactly as the host's server does."""
from __future__ import annotations

import http.server
import json
import os
import shutil
import threading
from pathlib import Path

import requests

from tests.testing import repos, serving
from tests.testing.images import BASE_TAG, base_layout, wheelhouse
from tests.testing.registry import Registry, plain_http


def test_the_native_image_serves_the_same_predictions_as_the_host(
        example: Path, registry: Registry, tmp_path: Path, buildah_env: dict[str, str]) -> None:
    built = repos.run_mlci(example, "build", "--tag", "t1", env={
        "MLCI_IMAGE_NAME": f"docker://{registry.host}/ml/credit-model", **plain_http(registry.host),
        "MLCI_IMAGE_BASE": f"oci:{base_layout()}:{BASE_TAG}",
        "MLCI_IMAGE_PIP_ARGS": f"--no-index,--find-links,{wheelhouse()}", "SOURCE_DATE_EPOCH": "1700000000"})
    assert built.returncode == 0, built.stderr
    manifest = requests.get(f"{registry.url}/v2/ml/credit-model/manifests/t1", timeout=10,
                            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).json()
    assert [layer["mediaType"].rsplit(".", 1)[1] for layer in manifest["layers"][-3:]] == [
        "tar+gzip", "tar+gzip", "tar"]  # dependencies, code, and the weights uncompressed (the default)
    serving.assert_image_serves_like_the_host(built.stdout.strip(), example, tmp_path, buildah_env, "python3")


def test_the_example_dockerfile_builds_with_buildah_and_serves_the_same_predictions(
        example: Path, registry: Registry, tmp_path: Path, buildah_env: dict[str, str]) -> None:
    base = tmp_path / "baselayout"  # buildah names an image after its path: no dots in it
    shutil.copytree(base_layout(), base, copy_function=os.link)
    pulled = serving.buildah(buildah_env, "pull", "-q", f"oci:{base}:{BASE_TAG}").split()[-1]
    serving.buildah(buildah_env, "tag", pulled, "localhost/debian-python:bookworm")
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
            **plain_http(registry.host), "SOURCE_DATE_EPOCH": "1700000000"})
    finally:
        wheels.shutdown()
    assert built.returncode == 0, built.stderr[-3000:]
    serving.assert_image_serves_like_the_host(built.stdout.strip(), example, tmp_path, buildah_env, "python")
