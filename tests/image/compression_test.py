"""Every layer compression mlci writes is read by a real runtime's image library: buildah (containers/image,
as podman and CRI-O use it) pulls an image whose code layer is zstd and whose weights layer is uncompressed,
and its mounted root file system holds the files."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.image.support import build, model_repo


def _buildah(env: dict[str, str], *args: str) -> str:
    return subprocess.run(["buildah", *args], env={**os.environ, **env}, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_buildah_reads_zstd_and_uncompressed_layers(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    buildah_env: dict[str, str]) -> None:
    weights = os.urandom(1 << 20)
    repo = model_repo(tmp_path / "repo", {"name": f"oci:{tmp_path / 'out'}", "code": ["src"], "artifacts": ["model"],
                                          "code_compression": "zstd"}, {"model/weights.bin": weights})
    run = build(repo, capsys, "--tag", "v1", "--json")
    assert run.code == 0, run.err
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    manifest = json.loads((tmp_path / "out" / "blobs" / "sha256" / index["manifests"][0]["digest"][7:]).read_text())
    assert [layer["mediaType"] for layer in manifest["layers"]] == [
        "application/vnd.oci.image.layer.v1.tar+zstd", "application/vnd.oci.image.layer.v1.tar"]
    env = buildah_env
    container = _buildah(env, "from", "--quiet", f"oci:{tmp_path / 'out'}:v1")
    try:
        root = Path(_buildah(env, "mount", container))
        assert (root / "app" / "src" / "serve.py").read_text() == "print('serve')\n"
        assert (root / "app" / "model" / "weights.bin").read_bytes() == weights
    finally:
        _buildah(env, "rm", container)
