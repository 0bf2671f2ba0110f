"""`mlci build`'s dependency layer on a base with Python: its key names the base (or image.python), a reused
layer never reads the base's layers again, and a base without Python is refused before pip runs."""
from __future__ import annotations

import gzip
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.image.bases import DEBIAN_311, GLIBC_236, image
from tests.image.support import build, model_repo, wheel


def _repo(tmp_path: Path, base: str) -> Path:
    digest = wheel(tmp_path / "repo" / "wheelhouse")
    return model_repo(tmp_path / "repo", {
        "name": f"oci:{tmp_path / 'out'}", "code": ["src"], "base": base, "lock": "requirements.lock",
        "pip_args": ["--no-index", "--find-links", "wheelhouse"]},
        {"requirements.lock": f"tinydep==1.0 --hash=sha256:{digest}\n"})


def _names(layout: Path, tag: str, number: int) -> list[str]:
    """The member names of the image's layer `number` (a gzip layer mlci built)."""
    index = json.loads((layout / "index.json").read_text())
    digest = next(m["digest"] for m in index["manifests"]
                  if m["annotations"]["org.opencontainers.image.ref.name"] == tag)
    manifest = json.loads((layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes())
    blob = layout / "blobs" / "sha256" / manifest["layers"][number]["digest"].split(":")[1]
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob.read_bytes()))) as tar:
        return tar.getnames()


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLCI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")


def test_a_reused_dependency_layer_never_reads_the_bases_layers(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint, manifest, _ = image(tmp_path, [DEBIAN_311])
    repo = _repo(tmp_path, f"oci:{tmp_path / 'base'}:t")
    run = build(repo, capsys, "--tag", "v1")
    assert run.code == 0, run.err
    assert "opt/mlci/site-packages/tinydep/__init__.py" in _names(tmp_path / "out", "v1", 1)
    monkeypatch.setenv("MLCI_IMAGE_PYTHON", "3.12")  # another Python: another key, pip runs again
    run = build(repo, capsys, "--tag", "v2")
    assert run.code == 0 and "dependencies layer: building" in run.err, run.err
    monkeypatch.delenv("MLCI_IMAGE_PYTHON")
    shutil.rmtree(tmp_path / "cache" / "base-platforms")  # no detection hint, and no base layers to read
    for layer in json.loads(manifest.data)["layers"]:
        endpoint.layout.blob_path(layer["digest"]).unlink()
    (repo / "src" / "serve.py").write_text("print('changed')\n")
    subprocess.run(["git", "commit", "-qam", "code only"], cwd=repo, check=True)
    run = build(repo, capsys, "--tag", "v3")
    assert run.code == 0, run.err
    assert "dependencies layer: unchanged" in run.err and "code layer: building" in run.err


def test_a_base_without_python_is_refused_before_pip_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image(tmp_path, [[("usr/lib/x86_64-linux-gnu/libc.so.6", "file", GLIBC_236)]])
    run = build(_repo(tmp_path, f"oci:{tmp_path / 'base'}:t"), capsys, "--tag", "v1")
    assert run.code == 2, run.err
    assert run.err.strip().splitlines()[-1] == (
        f"image.lock: the base oci:{tmp_path / 'base'}:t has no python3 on its PATH (and no single "
        "python3.X): use a base with Python, or set image.python")
    assert not (tmp_path / "out").exists()


def test_a_scratch_base_with_a_lock_needs_the_platform_named(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    digest = wheel(tmp_path / "repo" / "wheelhouse")
    repo = model_repo(tmp_path / "repo", {"name": f"oci:{tmp_path / 'out'}", "lock": "requirements.lock"},
                      {"requirements.lock": f"tinydep==1.0 --hash=sha256:{digest}\n"})
    run = build(repo, capsys, "--tag", "v1")
    assert run.code == 2 and "image.lock: the base is empty (scratch)" in run.err, run.err
    assert "set image.python and image.libc" in run.err and "Traceback" not in run.err


def test_an_override_that_does_not_parse_is_exit_2_before_anything_is_built(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    image(tmp_path, [DEBIAN_311])
    monkeypatch.setenv("MLCI_IMAGE_LIBC", "glibc2.36")
    run = build(_repo(tmp_path, f"oci:{tmp_path / 'base'}:t"), capsys, "--tag", "v1")
    assert run.code == 2 and "image.libc: 'glibc2.36' is not like 'glibc 2.36' or 'musl 1.2'" in run.err, run.err
    assert "layer: building" not in run.err and not (tmp_path / "out").exists()
