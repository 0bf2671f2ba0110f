"""Layers are reproducible: different mtimes, umask and owners give the same digest."""
from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

from mlci.image.entries import Collector
from mlci.image.layers import Layer
from mlci.image.layers import build_layer as _build_layer
from mlci.image.scan import Scanner


def build_layer(sources: list[tuple[Path, str]], out: Path, mtime: int) -> Layer:
    """A layer of whole directories (root on disk, directory in the image), no secrets to look for."""
    entries = [e for root, target in sources
               for e in Collector(root.parent, dvc_cache=lambda: None).entries([(root.name, target)])]
    return _build_layer(entries, out, mtime, Scanner([]))


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


def test_same_files_give_the_same_digest(tmp_path: Path) -> None:
    a = build_layer([(_tree(tmp_path / "a", 1_000_000, 0o022, 0), "/app")], tmp_path / "out-a", 1_700_000_000)
    b = build_layer([(_tree(tmp_path / "b", 2_000_000, 0o077, 1234), "/app")], tmp_path / "out-b", 1_700_000_000)
    assert (a.digest, a.diff_id, a.size) == (b.digest, b.diff_id, b.size)
    assert a.path.read_bytes() == b.path.read_bytes()
    c = build_layer([(_tree(tmp_path / "c", 1_000_000, 0o022, 0), "/app")], tmp_path / "out-c", 1_700_000_001)
    assert c.digest != a.digest  # the layer mtime is an input


def test_entries_are_sorted_normalised_and_owned_by_root(tmp_path: Path) -> None:
    layer = build_layer([(_tree(tmp_path / "t", 5, 0o077, 4321), "/opt/app")], tmp_path / "out", 42)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer.path.read_bytes()))) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["opt", "opt/app", "opt/app/link", "opt/app/pkg", "opt/app/pkg/serve.py",
                                         "opt/app/run.sh"]
    assert {(m.uid, m.gid, m.uname, m.mtime) for m in members} == {(0, 0, "", 42)}
    modes = {m.name: m.mode for m in members}
    assert modes["opt/app/pkg/serve.py"] == 0o644 and modes["opt/app/run.sh"] == 0o755
    assert modes["opt/app/pkg"] == 0o755 and members[2].issym() and members[2].linkname == "run.sh"
