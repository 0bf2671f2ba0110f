"""Layers are reproducible: different mtimes, umask and owners give the same digest, in every compression;
every mtime is the documented constant."""
from __future__ import annotations

import datetime
import gzip
import hashlib
import io
import os
import subprocess
import tarfile
import zlib
from pathlib import Path

import pytest

from mlci.image import layers
from mlci.image.entries import Collector
from mlci.image.layers import LAYER_MTIME, MEDIA_TYPES, Compression, Layer, zstd_module
from mlci.image.layers import build_layer as _build_layer
from mlci.image.scan import Scanner


def build_layer(sources: list[tuple[Path, str]], out: Path, compression: Compression = "gzip") -> Layer:
    """A layer of whole directories (root on disk, directory in the image), no secrets to look for."""
    entries = [e for root, target in sources
               for e in Collector(root.parent, dvc_cache=lambda: None).entries([(root.name, target)])]
    return _build_layer(entries, out, Scanner([]), compression)


def _tree(root: Path, mtime: int, umask: int, owner: int) -> Path:
    old = os.umask(umask)
    try:
        (root / "src" / "pkg").mkdir(parents=True)
        (root / "src" / "pkg" / "serve.py").write_text("print('serve')\n")
        (root / "src" / "run.sh").write_text("#!/bin/sh\n")
        (root / "src" / "run.sh").chmod(0o777 & ~umask)
        (root / "src" / "link").symlink_to("run.sh")
    finally:
        os.umask(old)
    for path in [root / "src", *(root / "src").rglob("*")]:
        os.lchown(path, owner, owner)
        if not path.is_symlink():
            os.utime(path, (mtime, mtime))
    return root / "src"


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_same_files_give_the_same_digest(tmp_path: Path, compression: Compression) -> None:
    a = build_layer([(_tree(tmp_path / "a", 1_000_000, 0o022, 0), "/app")], tmp_path / "out-a", compression)
    b = build_layer([(_tree(tmp_path / "b", 2_000_000, 0o077, 1234), "/app")], tmp_path / "out-b", compression)
    assert (a.digest, a.diff_id, a.size) == (b.digest, b.diff_id, b.size)
    assert a.path is not None and b.path is not None and a.path.read_bytes() == b.path.read_bytes()
    assert a.media_type == MEDIA_TYPES[compression]
    assert (a.digest == a.diff_id) == (compression == "none")


def _members(layer: Layer) -> list[tarfile.TarInfo]:
    assert layer.path is not None
    data = layer.path.read_bytes()
    if layer.media_type.endswith("+gzip"):
        data = gzip.decompress(data)
    elif layer.media_type.endswith("+zstd"):
        data = zstd_module().decompress(data)
    assert "sha256:" + hashlib.sha256(data).hexdigest() == layer.diff_id
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getmembers()


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_entries_are_sorted_normalised_owned_by_root_and_stamped_with_the_constant(
        tmp_path: Path, compression: Compression) -> None:
    layer = build_layer([(_tree(tmp_path / "t", 5, 0o077, 4321), "/opt/app")], tmp_path / "out", compression)
    members = _members(layer)
    assert [m.name for m in members] == ["opt", "opt/app", "opt/app/link", "opt/app/pkg", "opt/app/pkg/serve.py",
                                         "opt/app/run.sh"]
    assert {(m.uid, m.gid, m.uname, m.mtime) for m in members} == {(0, 0, "", LAYER_MTIME)}
    assert LAYER_MTIME == int(datetime.datetime(1980, 1, 1, 0, 0, 1, tzinfo=datetime.UTC).timestamp())
    modes = {m.name: m.mode for m in members}
    assert modes["opt/app/pkg/serve.py"] == 0o644 and modes["opt/app/run.sh"] == 0o755
    assert modes["opt/app/pkg"] == 0o755 and members[2].issym() and members[2].linkname == "run.sh"


def _block_gzip(data: bytes, writes: int = 7) -> bytes:
    out = io.BytesIO()
    with layers._BlockGzip(out) as gz:
        step = max(1, len(data) // writes)
        for at in range(0, len(data), step):
            gz.write(data[at:at + step])
        gz.finish()
    return out.getvalue()


MIXED = b"".join(os.urandom(300) + b"import numpy as np\n" * 40 for _ in range(3000))  # ~3.2 MB, 4 blocks


@pytest.mark.parametrize("data", [b"", b"x", os.urandom(layers.GZIP_BLOCK), MIXED],
                         ids=["empty", "1", "block", "mixed"])
def test_block_gzip_is_one_gzip_member_every_reader_takes(data: bytes, tmp_path: Path) -> None:
    packed = _block_gzip(data)
    assert gzip.decompress(packed) == data
    whole = zlib.decompressobj(31)
    assert whole.decompress(packed) == data and whole.eof and not whole.unused_data  # one member, nothing after
    (tmp_path / "l.gz").write_bytes(packed)
    assert subprocess.run(["gzip", "-t", str(tmp_path / "l.gz")], check=False).returncode == 0  # GNU gzip agrees


def test_block_gzip_bytes_do_not_depend_on_the_threads_or_the_write_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    reference = _block_gzip(MIXED)
    for threads, writes in ((1, 1), (3, 50), (8, 1000)):
        monkeypatch.setattr(layers, "GZIP_THREADS", threads)
        assert _block_gzip(MIXED, writes) == reference
    single = gzip.compress(MIXED, compresslevel=layers.GZIP_LEVEL, mtime=0)
    assert len(reference) <= len(single) * 1.01  # primed blocks: the ratio of one stream
