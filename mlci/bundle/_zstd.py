"""zstd for a tar.zst bundle: Python 3.14's compression.zstd API (backports.zstd before 3.14), streamed both ways;
the reader refuses a truncated stream and bytes after its last frame (ZstdFile would ignore them)."""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol

MAGIC = b"\x28\xb5\x2f\xfd"
READ = 1 << 20


class Raw(Protocol):
    """What the decompressor reads from."""

    def read(self, n: int) -> bytes: ...


def module() -> Any:
    """compression.zstd (Python 3.14 on), else backports.zstd (a dependency of mlci before 3.14)."""
    try:
        return importlib.import_module("compression.zstd")
    except ImportError:
        return importlib.import_module("backports.zstd")


def compressor(level: int) -> Any:
    """A streaming compressor: one frame, single-threaded (the same input gives the same bytes), with zstd's
    content checksum."""
    zstd = module()
    return zstd.ZstdCompressor(options={zstd.CompressionParameter.compression_level: level,
                                        zstd.CompressionParameter.checksum_flag: 1})


class Decompressing:
    """The decompressed bytes of `raw`, at most `n` at a time (a small input never becomes a large buffer);
    frames one after another are read on, anything else after a frame, or a stream that ends inside one, is
    `refuse`d."""

    def __init__(self, raw: Raw, refuse: Callable[[str], Exception]) -> None:
        self.zstd = module()
        self.raw, self.refuse = raw, refuse
        self.decompressor = self.zstd.ZstdDecompressor()
        self.pending = b""  # input after a frame's end, for the next frame
        self.ended = False

    def read(self, n: int) -> bytes:
        """Up to `n` bytes; b"" at the end of the last frame."""
        while not self.ended:
            if self.decompressor.eof:
                self._next_frame()
                continue
            data = b""
            if self.decompressor.needs_input:
                data, self.pending = (self.pending, b"") if self.pending else (self.raw.read(READ), b"")
                if not data:
                    raise self.refuse("truncated: the zstd stream ends inside a frame")
            try:
                out: bytes = self.decompressor.decompress(data, n)
            except self.zstd.ZstdError as exc:
                raise self.refuse(f"not a valid zstd stream ({exc})") from None
            if out:
                return out
        return b""

    def skip(self, n: int) -> int:
        """Decompress and drop up to `n` bytes; the bytes dropped."""
        return len(self.read(n))

    def _next_frame(self) -> None:
        rest = self.decompressor.unused_data or self.pending or self.raw.read(READ)
        if not rest:
            self.ended = True
            return
        self.pending = rest
        if len(rest) < 4 and (more := self.raw.read(READ)):
            self.pending = rest = rest + more
        if rest[:4] != MAGIC and not (0x50 <= rest[0] <= 0x5F and rest[1:4] == b"\x2a\x4d\x18"):
            raise self.refuse("bytes after the end of the zstd stream")
        self.decompressor = self.zstd.ZstdDecompressor()
