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
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mlci.image.entries import Entry
from mlci.image.scan import Scanner

GZIP_LEVEL = 6
COPY_BUFFER = 1 << 20
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass(frozen=True)
class Layer:
    """A built layer: its compressed digest and size, and the uncompressed digest (the config's diff_id)."""

    digest: str
    size: int
    diff_id: str
    path: Path | None  # None: known from the cache, not built in this run


def _info(entry: Entry, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = mtime, 0, 0, "", ""
    if entry.kind == "symlink":
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, entry.linkname, 0o777
    elif entry.kind == "dir":
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        assert entry.source is not None
        info.size, info.mode = entry.source.stat().st_size, 0o755 if entry.executable else 0o644
    return info


def write_tar(entries: Iterable[Entry], out: BinaryIO, mtime: int, scanner: Scanner) -> None:
    """A reproducible tar of the entries (sorted, with their parents: entries.Collector), each file
    scanned for secrets on the one stream that reads it."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # a stream: no seeking
        tar.copybufsize = COPY_BUFFER  # type: ignore[attr-defined]  # scan 1 MiB reads, not 16 KiB
        for entry in entries:
            scanner.check(f"{entry.name}\0{entry.linkname}", entry.shown)
            info = _info(entry, mtime)
            if entry.kind == "file":
                assert entry.source is not None
                with entry.source.open("rb") as handle:
                    tar.addfile(info, scanner.reader(handle, entry.shown))
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


def build_layer(entries: Iterable[Entry], out_dir: Path, mtime: int, scanner: Scanner) -> Layer:
    """Write a gzip layer into out_dir (named by its digest) and return its digests."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / ".layer.tmp"
    with tmp.open("wb") as raw:
        compressed = _Hashing(raw)
        with gzip.GzipFile(filename="", mode="wb", compresslevel=GZIP_LEVEL, fileobj=compressed, mtime=0) as gz:
            uncompressed = _Hashing(gz)  # type: ignore[arg-type]
            write_tar(entries, uncompressed, mtime, scanner)  # type: ignore[arg-type]
    digest = "sha256:" + compressed.sha.hexdigest()
    final = out_dir / digest.replace(":", "-")
    os.replace(tmp, final)
    return Layer(digest, compressed.size, "sha256:" + uncompressed.sha.hexdigest(), final)
