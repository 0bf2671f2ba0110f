"""Deterministic image layers: the same files give the same bytes, whatever the checkout's mtimes,
umask or owner. Entries are sorted; mtime is fixed (SOURCE_DATE_EPOCH or the commit time);
uid/gid 0 with empty names; modes normalised to 0755 (directories and executables) or 0644; no
device, socket or extended attributes. Compression is gzip level 6 with no name and mtime 0 in its
header (documented so the digest can be reproduced elsewhere)."""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mlci.core.errors import UsageError

GZIP_LEVEL = 6
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass(frozen=True)
class Layer:
    """A built layer: its compressed digest and size, and the uncompressed digest (the config's diff_id)."""

    digest: str
    size: int
    diff_id: str
    path: Path | None  # None: known from the cache, not built in this run


def _entries(root: Path, target: str) -> Iterable[tuple[str, Path]]:
    """(path in the image, path on disk) for every file, directory and symlink under root, sorted."""
    found = [("", root)]
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted([*dirnames, *filenames]):
            path = Path(dirpath) / name
            found.append((path.relative_to(root).as_posix(), path))
    prefix = target.strip("/")
    for rel, path in sorted(found):
        name = "/".join(p for p in (prefix, rel) if p)
        if name:
            yield name, path


def _info(name: str, path: Path, mtime: int) -> tarfile.TarInfo:
    st = path.lstat()
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = mtime, 0, 0, "", ""
    if stat.S_ISLNK(st.st_mode):
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, os.readlink(path), 0o777
    elif stat.S_ISDIR(st.st_mode):
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    elif stat.S_ISREG(st.st_mode):
        info.size, info.mode = st.st_size, 0o755 if st.st_mode & 0o111 else 0o644
    else:
        raise UsageError(f"{path}: only files, directories and symlinks can go into an image layer")
    return info


def write_tar(sources: Iterable[tuple[Path, str]], out: BinaryIO, mtime: int) -> None:
    """A reproducible tar of each (directory on disk, directory in the image), parents included."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # a stream: no seeking
        seen: set[str] = set()
        for root, target in sources:
            parts = target.strip("/").split("/")[:-1]
            for depth in range(1, len(parts) + 1):  # parent directories of the target
                parent = "/".join(parts[:depth])
                if parent and parent not in seen:
                    seen.add(parent)
                    info = tarfile.TarInfo(parent)
                    info.type, info.mode, info.mtime, info.uname, info.gname = tarfile.DIRTYPE, 0o755, mtime, "", ""
                    tar.addfile(info)
            for name, path in _entries(root, target):
                if name in seen:
                    continue
                seen.add(name)
                info = _info(name, path, mtime)
                if info.isreg():
                    with path.open("rb") as handle:
                        tar.addfile(info, handle)
                else:
                    tar.addfile(info)


class _Hashing(io.RawIOBase):
    """A writable stream that hashes and counts what passes through to `inner`."""

    def __init__(self, inner: BinaryIO) -> None:
        super().__init__()
        self.inner, self.sha, self.size = inner, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.sha.update(data)
        self.size += len(data)
        return self.inner.write(data)


def build_layer(sources: Iterable[tuple[Path, str]], out_dir: Path, mtime: int) -> Layer:
    """Write a gzip layer into out_dir (named by its digest) and return its digests."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / ".layer.tmp"
    with tmp.open("wb") as raw:
        compressed = _Hashing(raw)
        with gzip.GzipFile(filename="", mode="wb", compresslevel=GZIP_LEVEL, fileobj=compressed, mtime=0) as gz:
            uncompressed = _Hashing(gz)  # type: ignore[arg-type]
            write_tar(sources, uncompressed, mtime)  # type: ignore[arg-type]
    digest = "sha256:" + compressed.sha.hexdigest()
    final = out_dir / digest.replace(":", "-")
    os.replace(tmp, final)
    return Layer(digest, compressed.size, "sha256:" + uncompressed.sha.hexdigest(), final)
