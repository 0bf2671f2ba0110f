"""Small model repos for `mlci build` tests, and a reader of everything an OCI layout holds."""
from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import tarfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mlci import cli
from mlci.image.layers import zstd_module
from tests.testing.gitlab_ci_local import make_git_repo


@dataclass(frozen=True)
class Run:
    """One in-process `mlci build`."""

    code: int
    out: str
    err: str


def model_repo(path: Path, image: Mapping[str, Any], files: Mapping[str, str | bytes] | None = None, *,
               links: Mapping[str, str] | None = None, remote_url: str | None = None) -> Path:
    """A git repo with mlci.yaml's `image` section, the files and symlinks given, one commit."""
    path.mkdir(parents=True, exist_ok=True)
    for name, target in (links or {}).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).symlink_to(target)
    everything: dict[str, str | bytes] = {"src/serve.py": "print('serve')\n", **(files or {})}
    everything["mlci.yaml"] = json.dumps({"version": 1, "image": dict(image)})
    if remote_url is None:
        return make_git_repo(path, everything)
    return make_git_repo(path, everything, remote_url=remote_url)


def build(repo: Path, capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    """`mlci build --repo REPO ARGS` in this process (SOURCE_DATE_EPOCH from the environment)."""
    capsys.readouterr()
    code = cli.main(["build", "--repo", str(repo), *args])
    captured = capsys.readouterr()
    return Run(code, captured.out.strip(), captured.err)


def layout_blobs(layout: Path) -> dict[str, bytes]:
    """Every blob of a layout by digest, gzip layers decompressed, plus index.json and oci-layout (plain-tar
    layers are as they are)."""
    found = {name: (layout / name).read_bytes() for name in ("index.json", "oci-layout")}
    for blob in (layout / "blobs" / "sha256").iterdir():
        data = blob.read_bytes()
        found[f"sha256:{blob.name}"] = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    return found


def image_files(layout: Path, tag: str) -> dict[str, tarfile.TarInfo | bytes]:
    """The members of every layer of the image tagged `tag`: a file's bytes, or the TarInfo of the rest."""
    index = json.loads((layout / "index.json").read_text())
    digest = next(m["digest"] for m in index["manifests"]
                  if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
    manifest = json.loads((layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes())
    members: dict[str, tarfile.TarInfo | bytes] = {}
    for layer in manifest["layers"]:
        data = (layout / "blobs" / "sha256" / layer["digest"].split(":")[1]).read_bytes()
        with tarfile.open(fileobj=io.BytesIO(uncompressed(layer["mediaType"], data))) as tar:
            for member in tar.getmembers():
                handle = tar.extractfile(member) if member.isreg() else None
                members[member.name] = handle.read() if handle is not None else member
    return members


def uncompressed(media_type: str, data: bytes) -> bytes:
    """A layer blob's tar, by its media type (gzip, zstd or a plain tar)."""
    if media_type.endswith("+gzip"):
        return gzip.decompress(data)
    if media_type.endswith("+zstd"):
        return bytes(zstd_module().decompress(data))
    assert media_type == "application/vnd.oci.image.layer.v1.tar", media_type
    return data


def tree(root: Path) -> set[str]:
    """Every path under root (links not followed), for "nothing else was written" checks."""
    return {os.path.relpath(os.path.join(d, n), root) for d, dirs, files in os.walk(root) for n in dirs + files}


def wheel(wheelhouse: Path) -> str:
    """A tiny pure-Python wheel built by hand (no network, no build backend); returns its sha256."""
    wheelhouse.mkdir(parents=True, exist_ok=True)
    path = wheelhouse / "tinydep-1.0-py3-none-any.whl"
    files = {"tinydep/__init__.py": b"VALUE = 42\n",
             "tinydep-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinydep\nVersion: 1.0\n",
             "tinydep-1.0.dist-info/WHEEL":
                 b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record = "".join(f"{n},sha256={b64(d)},{len(d)}\n"
                     for n, d in files.items()) + "tinydep-1.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in [*files.items(), ("tinydep-1.0.dist-info/RECORD", record.encode())]:
            archive.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return hashlib.sha256(path.read_bytes()).hexdigest()
