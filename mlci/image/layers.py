"""Deterministic image layers: the same files give the same bytes, whatever the checkout's mtimes,
umask or owner, and whatever the commit. Entries are sorted; every mtime is LAYER_MTIME (a constant: the
commit time goes only into the image config and labels, so an unchanged layer keeps its digest across
commits); uid/gid 0 with empty names; modes normalised to 0755 (directories and executables) or 0644; no
device, socket or extended attributes. Compression per layer (documented so the digest can be reproduced
elsewhere): gzip level 6 with no name and mtime 0 in its header, in 1 MiB blocks compressed in parallel and
joined by sync flushes (pigz's format: the bytes do not depend on the thread count); zstd level 3, one frame,
single-threaded,
no checksum and no content size; or none (the plain tar, whose digest is its diff_id)."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import struct
import tarfile
import zlib
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal, cast

from mlci.core.errors import EnvironmentProblem, UsageError
from mlci.image.entries import Entry
from mlci.image.scan import Scanner
from mlci.oci.layout import BlobFile
from mlci.oci.transport import BlobWriter

Compression = Literal["gzip", "zstd", "none"]
GZIP_LEVEL = 6
GZIP_BLOCK = 1 << 20  # part of the format: a gzip layer's bytes depend on it
GZIP_THREADS = max(1, min(8, os.cpu_count() or 1))
ZSTD_LEVEL = 3
COPY_BUFFER = 1 << 20
# 1980-01-01T00:00:01Z, as Cloud Native Buildpacks stamp layers: the first second zip (and so Python's
# zipimport and wheel tools) can represent, where 0 (1970) is refused or shown as "unknown" by some tools.
LAYER_MTIME = 315532801
MEDIA_TYPES: dict[str, str] = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "none": "application/vnd.oci.image.layer.v1.tar",
}
LAYER_MEDIA_TYPE = MEDIA_TYPES["gzip"]


@dataclass(frozen=True)
class Layer:
    """A built layer: its compressed digest and size, and the uncompressed digest (the config's diff_id)."""

    digest: str
    size: int
    diff_id: str
    path: Path | None  # a file build_layer wrote; None: streamed into a destination, or known from a cache
    media_type: str = LAYER_MEDIA_TYPE

    def descriptor(self) -> dict[str, Any]:
        """The layer's OCI descriptor in a manifest."""
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


def _info(entry: Entry) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = LAYER_MTIME, 0, 0, "", ""
    if entry.kind == "symlink":
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, entry.linkname, 0o777
    elif entry.kind == "dir":
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        assert entry.source is not None
        info.size, info.mode = entry.source.stat().st_size, 0o755 if entry.executable else 0o644
    return info


def write_tar(entries: Iterable[Entry], out: BinaryIO, scanner: Scanner) -> None:
    """A reproducible tar of the entries (sorted, with their parents: entries.Collector), each file
    scanned for secrets on the one stream that reads it."""
    # a stream (no seeking), written on in 1 MiB blocks (the default 10 KiB record makes tarfile re-copy its
    # buffer per record); the padding at the end is the same RECORDSIZE either way, so are the bytes
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, bufsize=COPY_BUFFER) as tar:
        tar.copybufsize = COPY_BUFFER  # type: ignore[attr-defined]  # scan 1 MiB reads, not 16 KiB
        for entry in entries:
            scanner.check(f"{entry.name}\0{entry.linkname}", entry.shown)
            info = _info(entry)
            if entry.kind == "file":
                assert entry.source is not None
                with entry.source.open("rb") as handle:
                    checked = _Md5Reader(handle) if entry.expected is not None else None
                    tar.addfile(info, scanner.reader(cast(BinaryIO, checked or handle), entry.shown))
                if checked is not None and entry.expected is not None:  # (the one implies the other)
                    if checked.md5.hexdigest() != entry.expected.md5:
                        raise UsageError(entry.expected.refusal)  # before the layer is finished: no blob
                    entry.expected.confirm()
            else:
                tar.addfile(info)


class _Md5Reader(io.RawIOBase):
    """A file read through, its md5 taken on the way (DVC's hash of it, checked on the read that layers it)."""

    def __init__(self, inner: BinaryIO) -> None:
        super().__init__()
        self.inner, self.md5 = inner, hashlib.md5(usedforsecurity=False)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.inner.read(size)
        self.md5.update(data)
        return data


class _Hashing(io.RawIOBase):
    """A writable stream that hashes what passes through to `inner` (the uncompressed tar: the diff_id)."""

    def __init__(self, inner: BinaryIO) -> None:
        super().__init__()
        self.inner, self.sha = inner, hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.sha.update(data)
        return self.inner.write(data)


class _Zstd(io.RawIOBase):
    """A writable stream that zstd-compresses into `inner` (one frame; closed by finish())."""

    def __init__(self, inner: BinaryIO) -> None:
        super().__init__()
        zstd = zstd_module()
        params = {zstd.CompressionParameter.compression_level: ZSTD_LEVEL,
                  zstd.CompressionParameter.checksum_flag: 0, zstd.CompressionParameter.content_size_flag: 0}
        self.inner, self.compressor = inner, zstd.ZstdCompressor(options=params)

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.inner.write(self.compressor.compress(data))
        return len(data)

    def finish(self) -> None:
        self.inner.write(self.compressor.flush())


class _BlockGzip(io.RawIOBase):
    """A writable stream that gzips into `inner` on several cores, as pigz does: one gzip member whose deflate
    data is GZIP_BLOCK blocks, each compressed on its own (primed with the 32 KiB before it) and ended with a
    sync flush, then an empty final block. The bytes depend on the block size, never on the thread count."""

    def __init__(self, inner: BinaryIO) -> None:
        super().__init__()
        self.inner, self.crc, self.size = inner, 0, 0
        self.pending, self.window = bytearray(), b""
        self.pool = ThreadPoolExecutor(GZIP_THREADS, thread_name_prefix="mlci-gzip")
        self.queue: deque[Future[bytes]] = deque()
        # the header of gzip.GzipFile(filename="", mtime=0) at level 6: no name, no mtime, OS unknown
        self.inner.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.crc, self.size = zlib.crc32(data, self.crc), self.size + len(data)
        self.pending += data
        while len(self.pending) >= GZIP_BLOCK:
            self._submit(bytes(self.pending[:GZIP_BLOCK]))
            del self.pending[:GZIP_BLOCK]
        return len(data)

    def _submit(self, block: bytes) -> None:
        self.queue.append(self.pool.submit(_deflate, block, self.window))
        self.window = block[-(1 << 15):]
        while len(self.queue) > 2 * GZIP_THREADS:  # bounded: at most that many blocks in memory
            self.inner.write(self.queue.popleft().result())

    def finish(self) -> None:
        if self.pending:
            self._submit(bytes(self.pending))
            self.pending.clear()
        while self.queue:
            self.inner.write(self.queue.popleft().result())
        self.inner.write(b"\x03\x00" + struct.pack("<II", self.crc, self.size & 0xFFFFFFFF))

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        super().close()


def _deflate(block: bytes, window: bytes) -> bytes:
    """One block's raw deflate data, primed with the window before it, ended on a byte boundary (sync flush)."""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS, zdict=window) if window else \
        zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(block) + compressor.flush(zlib.Z_SYNC_FLUSH)


def zstd_module() -> Any:
    """Python 3.14's compression.zstd, else its backport (a dependency of mlci before 3.14)."""
    import importlib

    try:
        return importlib.import_module("compression.zstd")  # the stdlib from Python 3.14 on
    except ImportError:
        pass
    try:
        from backports import zstd
    except ImportError:
        raise EnvironmentProblem("a zstd layer needs backports-zstd (a dependency of mlci before Python 3.14): "
                                 "pip install 'backports-zstd>=1.8'") from None
    return zstd


def write_layer(entries: Iterable[Entry], sink: BlobWriter, scanner: Scanner, compression: Compression = "gzip"
                ) -> Layer:
    """Stream a layer into `sink` (a destination's blob writer): tar, then compression, then the sink, which
    hashes the compressed bytes (the digest); the uncompressed tar is hashed on the way (the diff_id). The
    sink is aborted if anything fails; finished, it holds the layer."""
    out = cast(BinaryIO, sink)  # the writes are all any of these make
    try:
        if compression == "gzip":
            with _BlockGzip(out) as gz:
                uncompressed = _Hashing(gz)  # type: ignore[arg-type]
                write_tar(entries, uncompressed, scanner)  # type: ignore[arg-type]
                gz.finish()
        elif compression == "zstd":
            zst = _Zstd(out)
            uncompressed = _Hashing(zst)  # type: ignore[arg-type]
            write_tar(entries, uncompressed, scanner)  # type: ignore[arg-type]
            zst.finish()
        else:
            write_tar(entries, out, scanner)
        blob = sink.finish()
    except BaseException:
        sink.abort()
        raise
    diff_id = blob.digest if compression == "none" else "sha256:" + uncompressed.sha.hexdigest()
    return Layer(blob.digest, blob.size, diff_id, None, MEDIA_TYPES[compression])


def build_layer(entries: Iterable[Entry], out_dir: Path, scanner: Scanner, compression: Compression = "gzip") -> Layer:
    """Write a layer into out_dir (named by the hex of its digest) and return its digests and path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    layer = write_layer(entries, BlobFile(out_dir, MEDIA_TYPES[compression]), scanner, compression)
    return dataclasses.replace(layer, path=out_dir / layer.digest[7:])
