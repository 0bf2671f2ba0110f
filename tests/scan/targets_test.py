"""mlci.scan.targets: every transport becomes a one-image OCI layout trivy scans alike (docker:// from the real
registry with basic auth, over TLS too), an index resolves to one platform, a layout's blobs are hard-linked
and verified, and the scratch directory goes on every way out."""
from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from mlci.core.errors import EnvironmentProblem, ExitCode
from mlci.core.signals import Terminated, sigterm_raises
from mlci.oci.archive import ArchiveEndpoint
from mlci.oci.copy import LayoutEndpoint, copy, open_endpoint
from mlci.oci.layout import Layout
from mlci.oci.reference import parse
from mlci.oci.settings import RegistrySettings
from mlci.scan import trivy
from mlci.scan.settings import ScanSettings
from mlci.scan.targets import PreparedImage, prepare_image
from tests.testing.registry import Registry
from tests.testing.scanimage import TAG, TINYDEP_METADATA, BuiltImage, tiny_image, tiny_index
from tests.testing.trivydb import TrivyDb


def _scan(db: TrivyDb, image: PreparedImage, sbom: Path | None = None) -> set[tuple[object, ...]]:
    scanner = trivy.find_trivy(ScanSettings(cache_dir=str(db.cache_dir), scanners=("vuln",)))
    output = trivy.scan_image(scanner, image, sbom=sbom)
    assert output.digest == image.digest
    return {(f.id, f.package, f.version, f.path, f.severity) for f in output.findings}


def _only_entry(image: PreparedImage) -> str:
    """The digest of the prepared layout's only index.json entry."""
    entries = json.loads((image.layout / "index.json").read_text())["manifests"]
    assert len(entries) == 1, entries
    return str(entries[0]["digest"])


def _basic(registry: Registry, monkeypatch: pytest.MonkeyPatch, *, password: str | None = None,
           ca_bundle: Path | None = None) -> dict[str, RegistrySettings]:
    """mlci's `registries` entry for the test registry: credentials by env name, plain HTTP unless a CA."""
    monkeypatch.setenv("SCAN_REG_USER", str(registry.username))
    monkeypatch.setenv("SCAN_REG_PASSWORD", password or str(registry.password))
    return {registry.host: RegistrySettings(username_env="SCAN_REG_USER", password_env="SCAN_REG_PASSWORD",
                                            plain_http=ca_bundle is None,
                                            ca_bundle=str(ca_bundle) if ca_bundle else None)}


def _push(layout: Path, tag: str, target: str, registries: dict[str, RegistrySettings]) -> None:
    destination, _ = open_endpoint(parse(target), registries=registries)
    copy(LayoutEndpoint(Layout(layout)), tag, destination, tag)
    destination.commit()


def test_the_three_transports_give_the_same_image_and_findings(
        trivy_db: TrivyDb, vulnerable_image: BuiltImage, registry_basic: Registry, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    archive = ArchiveEndpoint(tmp_path / "image.tar")
    copy(LayoutEndpoint(Layout(vulnerable_image.layout)), TAG, archive, TAG)
    archive.commit()
    registries = _basic(registry_basic, monkeypatch)
    pushed = f"docker://{registry_basic.host}/ml/scanned:{TAG}"
    _push(vulnerable_image.layout, TAG, pushed, registries)
    found = {}
    for reference in (vulnerable_image.reference, f"oci-archive:{tmp_path / 'image.tar'}:{TAG}", pushed):
        with prepare_image(reference, registries=registries) as image:
            assert (image.digest, image.manifest_digest, _only_entry(image)) == (vulnerable_image.digest,) * 3
            assert image.reference == reference and image.platform is None
            assert [blob.digest for blob in image.layers()] == [
                layer["digest"] for layer in json.loads(image.manifest.data)["layers"]]
            found[reference] = _scan(trivy_db, image, tmp_path / "sbom.json")
            scratch = image.layout.parent
        assert not scratch.exists()
    assert len({frozenset(keys) for keys in found.values()}) == 1
    assert {key[0] for key in found[pushed]} == {"CVE-2099-0001", "CVE-2099-0003", "GHSA-test-tiny-dep1",
                                                 "GHSA-test-tiny-unfx"}
    component = json.loads((tmp_path / "sbom.json").read_text())["metadata"]["component"]  # the docker:// one
    assert component["name"] == f"{registry_basic.host}/ml/scanned:{TAG}"
    assert component["purl"] == (f"pkg:oci/scanned@{vulnerable_image.digest}?arch=amd64"
                                 f"&repository_url={registry_basic.host}%2Fml%2Fscanned")
    with prepare_image(pushed, registries=registries) as image:
        assert image.registry is not None
        assert (image.registry.registry, image.registry.repository, image.registry.tag) == (
            registry_basic.host, "ml/scanned", TAG)
        assert trivy.display_name(image) == f"{registry_basic.host}/ml/scanned:{TAG}"


def test_a_registry_over_tls_with_its_ca_and_the_errors_without(
        trivy_db: TrivyDb, registry_tls: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = tiny_image(tmp_path / "tiny", TINYDEP_METADATA)
    assert registry_tls.ca_bundle is not None
    registries = _basic(registry_tls, monkeypatch, ca_bundle=registry_tls.ca_bundle)
    reference = f"docker://{registry_tls.host}/ml/tiny:{TAG}"
    _push(tmp_path / "tiny", TAG, reference, registries)
    with prepare_image(f"docker://{registry_tls.host}/ml/tiny@{manifest.digest}", registries=registries) as image:
        assert image.digest == manifest.digest and image.registry is not None and image.registry.tag is None
        assert _scan(trivy_db, image) == {
            ("GHSA-test-tiny-dep1", "tinydep", "1.0", "app/site-packages/tinydep-1.0.dist-info/METADATA", "HIGH"),
            ("GHSA-test-tiny-unfx", "tinydep", "1.0", "app/site-packages/tinydep-1.0.dist-info/METADATA", "MEDIUM")}
    for wrong, expected in ((_basic(registry_tls, monkeypatch, password="wrong-password-123",
                                    ca_bundle=registry_tls.ca_bundle), "401"),
                            ({registry_tls.host: RegistrySettings()},
                             f"tls: certificate verify failed: unable to get local issuer certificate; trust its ca "
                             f"with registries.{registry_tls.host}.ca_bundle")):
        with pytest.raises(EnvironmentProblem) as error, prepare_image(reference, registries=wrong):
            raise AssertionError("prepared without credentials or CA")  # pragma: no cover
        message = str(error.value)
        assert error.value.exit_code == ExitCode.ENVIRONMENT and "\n" not in message
        assert expected in message.lower() or expected in message, message
        assert "wrong-password-123" not in message and str(registry_tls.password) not in message


def test_an_index_resolves_to_one_platform(trivy_db: TrivyDb, tmp_path: Path) -> None:
    index = tiny_index(tmp_path / "multi", {"arm64": {"etc/arm": b"arm\n"}, "amd64": TINYDEP_METADATA})
    children = {c.platform.architecture: c.digest for c in index.children() if c.platform}
    with prepare_image(f"oci:{tmp_path / 'multi'}:{TAG}") as image:
        assert (image.digest, image.manifest_digest, image.platform) == (index.digest, children["amd64"],
                                                                         "linux/amd64")
        assert _only_entry(image) == children["amd64"]
        assert {key[0] for key in _scan(trivy_db, image)} == {"GHSA-test-tiny-dep1", "GHSA-test-tiny-unfx"}
    with prepare_image(f"oci:{tmp_path / 'multi'}:{TAG}", platform="linux/arm64") as image:
        assert (image.manifest_digest, _only_entry(image)) == (children["arm64"], children["arm64"])
        assert _scan(trivy_db, image) == set()
    with pytest.raises(EnvironmentProblem, match=rf"^oci:{tmp_path}/multi:{TAG}: the index {index.digest} has no "
                                                 r"linux/s390x image \(it has linux/amd64, linux/arm64\)$"), \
            prepare_image(f"oci:{tmp_path / 'multi'}:{TAG}", platform="linux/s390x"):
        pass  # pragma: no cover


def test_a_layouts_blobs_are_linked_when_they_can_be_and_copied_when_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = tiny_image(tmp_path / "images" / "layout", TINYDEP_METADATA)
    source = Layout(tmp_path / "images" / "layout")
    elsewhere = Path(tempfile.mkdtemp(prefix="mlci-test-", dir="/dev/shm"))  # another filesystem than /tmp
    try:
        monkeypatch.setattr(tempfile, "tempdir", str(elsewhere))  # TMPDIR elsewhere: the scratch goes beside
        with prepare_image(f"oci:{source.root}:{TAG}") as image:
            assert image.layout.parent.parent == tmp_path / "images"
            for blob in manifest.blobs():
                assert os.stat(Layout(image.layout).blob_path(blob.digest)).st_ino == \
                    os.stat(source.blob_path(blob.digest)).st_ino
        monkeypatch.undo()
        shutil.copytree(source.root, elsewhere / "layout")
        with prepare_image(f"oci:{elsewhere / 'layout'}:{TAG}", workdir=tmp_path / "work") as image:  # copies
            for blob in manifest.blobs():
                copied = Layout(image.layout).blob_path(blob.digest)
                assert os.stat(copied).st_dev != os.stat(elsewhere / "layout").st_dev
                assert copied.read_bytes() == source.blob_path(blob.digest).read_bytes()
        assert sorted(p.name for p in elsewhere.iterdir()) == ["layout"]
        assert [p.name for p in (tmp_path / "images").iterdir()] == ["layout"]
        assert list((tmp_path / "work").iterdir()) == []
    finally:
        shutil.rmtree(elsewhere)


def test_a_damaged_or_missing_image_is_exit_3_and_leaves_no_scratch(tmp_path: Path) -> None:
    manifest = tiny_image(tmp_path / "layout", TINYDEP_METADATA)
    layer = Layout(tmp_path / "layout").blob_path(manifest.blobs()[1].digest)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    original = layer.read_bytes()
    layer.write_bytes(original.replace(b"tinydep", b"evildep"))  # same size, other content
    cases = [(f"oci:{tmp_path / 'layout'}:{TAG}", "blob .*: digest did not match \\(the layout is damaged\\)"),
             (f"oci:{tmp_path / 'layout'}:nope", "tag 'nope' not found"),
             (f"oci:{tmp_path / 'none'}", "no OCI image layout there \\(the directory does not exist\\)"),
             (f"oci:{scratch}", "not an OCI image layout \\(no index.json\\)"),
             (f"oci-archive:{tmp_path / 'none.tar'}:{TAG}", "none.tar")]
    for reference, problem in cases:
        with pytest.raises(EnvironmentProblem, match=problem), prepare_image(reference, workdir=scratch):
            pass  # pragma: no cover
        assert list(scratch.iterdir()) == []
    layer.unlink()
    layer.symlink_to("/dev/zero")  # never read: it would never end
    with pytest.raises(EnvironmentProblem, match="is not a regular file"), \
            prepare_image(f"oci:{tmp_path / 'layout'}:{TAG}", workdir=scratch):
        pass  # pragma: no cover
    assert list(scratch.iterdir()) == []


def test_the_scratch_goes_on_an_error_and_on_sigterm(tmp_path: Path) -> None:
    tiny_image(tmp_path / "layout", TINYDEP_METADATA)
    reference = f"oci:{tmp_path / 'layout'}:{TAG}"
    with pytest.raises(RuntimeError), prepare_image(reference, workdir=tmp_path / "w") as image:
        assert image.layout.is_dir()
        raise RuntimeError("a scan failed")
    with pytest.raises(Terminated), sigterm_raises(), prepare_image(reference, workdir=tmp_path / "w") as image:
        os.kill(os.getpid(), signal.SIGTERM)
    assert list((tmp_path / "w").iterdir()) == []
