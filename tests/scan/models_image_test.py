"""The model-file scan of an image in an OCI layout built by mlci's native builder: a malicious pickle in the
code layer (gzip) and in the artifacts layer (zstd, no extension) is CRITICAL at its in-image path; a file
a later layer removes is still reported, saying so; a damaged layer blob is an environment error."""
from __future__ import annotations

import gzip
import io
import json
import pickle
import tarfile
from pathlib import Path

import pytest

from mlci.core.errors import EnvironmentProblem
from mlci.oci.layout import Layout
from mlci.oci.manifest import OCI_MANIFEST, Manifest, sha256_digest
from mlci.scan.models import scan_layout
from tests.image.bases import DEBIAN_311, image
from tests.image.support import build, model_repo
from tests.testing.modelfiles import malicious, torch_zip

LIMIT = 1 << 30


@pytest.fixture
def built(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """An image built by `mlci build` on a tiny base: model files in its code and artifacts layers."""
    monkeypatch.setenv("MLCI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    image(tmp_path, [DEBIAN_311])
    repo = model_repo(tmp_path / "repo", {
        "name": f"oci:{tmp_path / 'out'}", "code": ["src"], "artifacts": ["model"], "workdir": "/srv/model",
        "base": f"oci:{tmp_path / 'base'}:t", "artifacts_compression": "zstd"}, {
        "model/model.pkl": pickle.dumps({"w": [1.0, 2.0]}, protocol=5),
        "model/3fa0c1d2e3f4a5b6c7d8e9f0a1b2c3d4": malicious(5),
        "model/weights.pt": torch_zip(malicious(2)),
        "src/cache/entry": malicious(0),
        "src/data.csv": b"id,score\n1,0.5\n2,0.7\n"})
    run = build(repo, capsys, "--tag", "v1")
    assert run.code == 0, run.err
    return tmp_path / "out", Layout(tmp_path / "out").get_manifest("v1").digest


def test_malicious_model_files_in_gzip_and_zstd_layers_are_critical_at_their_in_image_paths(
        built: tuple[Path, str]) -> None:
    layout, digest = built
    manifest = json.loads(Layout(layout).blob_path(digest).read_bytes())
    assert {layer["mediaType"].rsplit("+", 1)[-1] for layer in manifest["layers"][1:]} == {"gzip", "zstd"}
    scan = scan_layout(layout, digest, max_bytes=LIMIT)
    found = {f.target: f for f in scan.findings}
    assert set(found) == {"/srv/model/src/cache/entry", "/srv/model/model/3fa0c1d2e3f4a5b6c7d8e9f0a1b2c3d4",
                          "/srv/model/model/weights.pt:archive/data.pkl"}
    assert all(f.severity == "CRITICAL" and f.id == "pickle:posix.system" and not f.informational
               for f in found.values())
    assert found["/srv/model/model/weights.pt:archive/data.pkl"].path == "/srv/model/model/weights.pt"
    assert "In layer 3 of 3 (sha256:" in found["/srv/model/model/3fa0c1d2e3f4a5b6c7d8e9f0a1b2c3d4"].detail
    assert scan.unscanned == ()
    assert scan.scanned == 4  # the three pickles, and model.pkl (plain data)


def _layer(files: dict[str, bytes | None]) -> bytes:
    """A gzip tar layer; None: a whiteout entry."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data or b"")
            tar.addfile(info, io.BytesIO(data or b""))
    return gzip.compress(buffer.getvalue(), mtime=0)


def _image(root: Path, layers: list[bytes]) -> str:
    layout = Layout(root)
    layout.init()
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    for blob in [config, *layers]:
        layout.put_blob(sha256_digest(blob), io.BytesIO(blob))
    data = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256_digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256_digest(b),
                    "size": len(b)} for b in layers]}).encode()
    return layout.put_manifest(Manifest(data, OCI_MANIFEST, sha256_digest(data)), "t")


def test_a_file_a_later_layer_removes_is_reported_as_still_shipped(tmp_path: Path) -> None:
    digest = _image(tmp_path, [
        _layer({"opt/m/evil.pkl": malicious(), "opt/m/kept": malicious(), "etc/../../x/odd\nname": malicious()}),
        _layer({"opt/m/.wh.evil.pkl": None, "opt/readme.txt": b"hello"})])
    scan = scan_layout(tmp_path, digest, max_bytes=LIMIT)
    details = {f.target: f.detail for f in scan.findings}
    assert set(details) == {"/opt/m/evil.pkl", "/opt/m/kept", "/x/odd\\nname"}
    assert "removed or replaced by layer 2 of 2" in details["/opt/m/evil.pkl"]
    assert "removed" not in details["/opt/m/kept"] and "In layer 1 of 2" in details["/opt/m/kept"]


def test_a_damaged_layer_blob_is_an_environment_problem_naming_it(tmp_path: Path) -> None:
    good = _layer({"opt/m/a.pkl": malicious()})
    digest = _image(tmp_path, [good])
    blob = Layout(tmp_path).blob_path(sha256_digest(good))
    blob.write_bytes(good[:-20] + bytes(20))
    with pytest.raises(EnvironmentProblem, match=rf"layer {sha256_digest(good)}.*(digest|cannot be read)"):
        scan_layout(tmp_path, digest, max_bytes=LIMIT)
    blob.unlink()
    with pytest.raises(EnvironmentProblem, match="cannot be read"):
        scan_layout(tmp_path, digest, max_bytes=LIMIT)
    with pytest.raises(EnvironmentProblem, match="cannot be read"):
        scan_layout(tmp_path, "sha256:" + "0" * 64, max_bytes=LIMIT)


def test_a_real_debian_base_has_no_model_files(tmp_path: Path) -> None:
    # 9,000 real files (ELF binaries, gzipped changelogs, dpkg templates, locale data): none is taken for a
    # model file, none is listed as not scanned.
    from tests.testing.images import BASE_TAG, base_layout

    layout = base_layout()
    scan = scan_layout(layout, Layout(layout).get_manifest(BASE_TAG).digest, max_bytes=LIMIT)
    assert scan.files > 5000
    assert scan.findings == () and scan.unscanned == () and scan.scanned == 0
