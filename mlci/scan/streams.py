"""Byte streams for the model scan: buffered reads that keep the offset and skip payloads without holding
them (the pickle walker's), a file's head joined back to its rest, zlib inflation in bounded steps,
spooling for archives read from a stream, a decompressor per format, and what reading them can raise."""
from __future__ import annotations

import functools
import io
import lzma
import tarfile
import tempfile
import zipfile
import zlib
from typing import IO, Any, BinaryIO, cast

from mlci.scan.picklevalues import NotPickle, Truncated, why

CHUNK = 1 << 20
LINE = 64 * 1024  # a protocol 0 argument line longer than this is not a pickle


@functools.cache
def read_errors() -> tuple[type[Exception], ...]:
    """What reading a damaged, possibly compressed stream raises: I/O errors and every decoder's own."""
    errors: list[type[Exception]] = [OSError, EOFError, ValueError, zlib.error, lzma.LZMAError, zipfile.BadZipFile,
                                     tarfile.TarError]
    try:
        from backports import zstd

        errors.append(zstd.ZstdError)
    except ImportError:  # Python 3.14's compression.zstd.ZstdError
        try:
            errors.append(__import__("compression.zstd", fromlist=["ZstdError"]).ZstdError)
        except ImportError:
            pass
    return tuple(errors)


class Reader:
    """Buffered reads with the offset kept; payloads are skipped in chunks, never held; peek() for
    speculation."""

    def __init__(self, stream: BinaryIO, limit: int | None) -> None:
        self.stream, self.limit = stream, limit
        self.buffer, self.at, self.base = b"", 0, 0  # base: offset of buffer[0]

    @property
    def pos(self) -> int:
        return self.base + self.at

    def _fill(self, n: int) -> bool:
        """At least n unread bytes in the buffer (False at the end of the stream)."""
        while len(self.buffer) - self.at < n:
            try:
                chunk = self.stream.read(max(CHUNK, n - (len(self.buffer) - self.at)))
            except read_errors() as exc:
                raise NotPickle(f"cannot be read past byte {self.base + len(self.buffer)}: {why(exc)}") from None
            if not chunk:
                return False
            self.base += self.at
            self.buffer = self.buffer[self.at:] + chunk
            self.at = 0
            if self.limit is not None and self.base + len(self.buffer) > self.limit:
                raise NotPickle(f"more than {self.limit} bytes (scan.model_max_mb)")
        return True

    def read(self, n: int) -> bytes:
        self._fill(n)
        data = self.buffer[self.at:self.at + n]
        self.at += len(data)
        return data

    def readline(self) -> bytes:
        searched = 0  # unread bytes already searched for the newline
        while True:
            end = self.buffer.find(b"\n", self.at + searched)
            if end >= 0:
                data = self.buffer[self.at:end + 1]
                self.at = end + 1
                return data
            searched = len(self.buffer) - self.at
            if searched > LINE:
                raise NotPickle(f"byte {self.pos}: a text argument longer than {LINE} bytes")
            if not self._fill(searched + 1):
                return self.read(searched)

    def peek(self, n: int) -> bytes:
        self._fill(n)
        return self.buffer[self.at:self.at + n]

    def skip(self, n: int) -> None:
        """Step over n bytes, reading at most a chunk at a time."""
        while n > 0:
            if not self._fill(1):
                raise Truncated(f"truncated at byte {self.pos} (inside a {n}-byte payload)")
            step = min(n, len(self.buffer) - self.at)
            self.at += step
            n -= step
            if self.at == len(self.buffer):
                self.base += self.at
                self.buffer, self.at = b"", 0

    def at_eof(self) -> bool:
        return not self._fill(1)


class TooLarge(Exception):
    """A stream longer than the limit it is spooled under."""


def joined(head: bytes, rest: IO[bytes]) -> BinaryIO:
    return cast(BinaryIO, io.BufferedReader(_Joined(head, rest), 1 << 20))


class _Joined(io.RawIOBase):
    """A stream's bytes from its start again, once its head was read: the head, then the rest."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self.head, self.rest = memoryview(head), rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self.head:
            n = min(len(view), len(self.head))
            view[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        data = self.rest.read(len(view))
        view[:len(data)] = data
        return len(data)


class Seekable:
    """The stream itself when it can seek (a file), else spooled to a temp file (a tar member, a zip in a
    zip); _TooLarge past `limit`."""

    def __init__(self, file: BinaryIO | None, head: bytes, stream: BinaryIO, size: int | None, limit: int) -> None:
        self.file, self.head, self.stream, self.size, self.limit = file, head, stream, size, limit
        self.spool: IO[bytes] | None = None

    def __enter__(self) -> IO[bytes]:
        if self.file is not None:
            self.file.seek(0)
            return self.file
        if self.size is not None and self.size > self.limit:
            raise TooLarge
        self.spool = tempfile.TemporaryFile()
        self.spool.write(self.head)
        copied = len(self.head)
        while chunk := self.stream.read(1 << 20):
            copied += len(chunk)
            if copied > self.limit:
                raise TooLarge
            self.spool.write(chunk)
        self.spool.seek(0)
        return self.spool

    def __exit__(self, *_: object) -> None:
        if self.spool is not None:
            self.spool.close()


class _Inflate(io.RawIOBase):
    """A zlib stream (joblib's default compression), decompressed as it is read."""

    def __init__(self, stream: IO[bytes]) -> None:
        import zlib

        self.stream, self.inflater, self.pending = stream, zlib.decompressobj(), b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while not self.pending:
            data = self.inflater.unconsumed_tail or (b"" if self.inflater.eof else self.stream.read(1 << 16))
            if not data:
                return 0  # the end (or a truncated stream: the pickle walk says so)
            self.pending = self.inflater.decompress(data, 1 << 20)  # at most 1 MiB out per step: no bomb
        n = min(len(view), len(self.pending))
        view[:n], self.pending = self.pending[:n], self.pending[n:]
        return n


def decompressor(kind: str, stream: BinaryIO) -> BinaryIO:
    """A reader of what `kind` (gzip, bz2, xz, lzma, zstd, zlib) decompresses to."""
    import bz2
    import gzip
    import lzma

    if kind == "gzip":
        return cast(BinaryIO, gzip.GzipFile(fileobj=stream, mode="rb"))
    if kind == "bz2":
        return cast(BinaryIO, bz2.BZ2File(stream))
    if kind in ("xz", "lzma"):
        return cast(BinaryIO, lzma.LZMAFile(stream))
    if kind == "zstd":
        from mlci.image.layers import zstd_module

        return cast(BinaryIO, zstd_module().ZstdFile(stream))
    return cast(BinaryIO, io.BufferedReader(_Inflate(stream)))
