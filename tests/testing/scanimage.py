"""Images for the scan tests: one built with mlci on the debootstrapped Debian base with tinydep 1.0 in its
dependency layer (session-scoped, about 1.5 s of CPU), and tiny hand-made ones (a few files, any platform,
an index of several) for the transports."""
from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlci import cli
from mlci.oci.layout import Layout
from mlci.oci.manifest import OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, Manifest, sha256_digest
from tests.image.support import model_repo, wheel
from tests.testing.images import BASE_TAG, TOOLS, base_layout

TAG = "t1"
# What trivy reads to find a Python package in an image: a dist-info METADATA anywhere.
TINYDEP_METADATA = {"app/site-packages/tinydep-1.0.dist-info/METADATA":
                    b"Metadata-Version: 2.1\nName: tinydep\nVersion: 1.0\n"}


@dataclass(frozen=True)
class BuiltImage:
    """The image mlci built: `oci:{layout}:{tag}` (the layout also holds its `mlci-key-*` tag)."""

    layout: Path
    tag: str
    digest: str
    os: str  # as trivy names it: "debian 12.N"

    @property
    def reference(self) -> str:
        return f"oci:{self.layout}:{self.tag}"


def debian_os() -> str:
    """The base's Debian release as trivy reports it (from its /etc/debian_version)."""
    return "debian " + (TOOLS / "base" / "rootfs" / "etc" / "debian_version").read_text().strip()


@pytest.fixture(scope="session")
def vulnerable_image(tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    """`mlci build` of a tiny repo on the Debian base (openssl and zlib have seeded advisories) with tinydep 1.0
    (seeded too) in its dependency layer, into an OCI layout."""
    root = tmp_path_factory.mktemp("scan-image")
    digest = wheel(root / "repo" / "wheelhouse")
    repo = model_repo(root / "repo", {
        "name": f"oci:{root / 'out'}", "code": ["src"], "base": f"oci:{base_layout()}:{BASE_TAG}",
        "lock": "requirements.lock", "pip_args": ["--no-index", "--find-links", "wheelhouse"]},
        {"requirements.lock": f"tinydep==1.0 --hash=sha256:{digest}\n"})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLCI_CACHE_DIR", str(root / "cache"))
        patch.setenv("SOURCE_DATE_EPOCH", "1700000000")
        code = cli.main(["build", "--repo", str(repo), "--tag", TAG, "--quiet"])
    assert code == 0, "mlci build of the scan test image failed (see the captured log)"
    manifest = Layout(root / "out").get_manifest(TAG)
    return BuiltImage(root / "out", TAG, manifest.digest, debian_os())


def tiny_image(layout_dir: Path, files: Mapping[str, bytes], *, tag: str | None = TAG, architecture: str = "amd64",
               config: Mapping[str, object] | None = None) -> Manifest:
    """A one-layer image of `files` (uncompressed tar) in the layout `layout_dir`, tagged `tag` (None: stored
    as a blob only, for an index); `config`: the image config's `config` (Env, Labels, ...)."""
    layout = Layout(layout_dir)
    layout.init()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    layer = buffer.getvalue()
    document = json.dumps({"architecture": architecture, "os": "linux", "config": dict(config or {}),
                           "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer)]}}).encode()
    for blob in (layer, document):
        layout.put_blob(sha256_digest(blob), io.BytesIO(blob))
    data = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(document), "size": len(document)},
                       "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                   "digest": sha256_digest(layer), "size": len(layer)}]}).encode()
    manifest = Manifest(data, OCI_MANIFEST, sha256_digest(data))
    layout.put_manifest(manifest, tag, child=tag is None)
    return manifest


def tiny_index(layout_dir: Path, images: Mapping[str, Mapping[str, bytes]], tag: str = TAG) -> Manifest:
    """An OCI index of one tiny image per architecture (`images`: architecture -> files), tagged `tag`."""
    entries = []
    for architecture, files in images.items():
        child = tiny_image(layout_dir, files, tag=None, architecture=architecture)
        entries.append({**child.descriptor().to_json(), "platform": {"os": "linux", "architecture": architecture}})
    data = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    index = Manifest(data, OCI_INDEX, sha256_digest(data))
    Layout(layout_dir).put_manifest(index, tag)
    return index
