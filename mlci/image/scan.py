"""Refuse, never rewrite: a registered secret (a token or password mlci knows from the environment or
an auth file, mlci.core.log.registered_secrets()) found in anything going into an image stops the
build, naming the file. Files are scanned on the stream that tars and hashes them, so a 6 GB weights
file is read once; the last bytes of each chunk are kept so a secret spanning two chunks is found, and held
back until the next chunk is scanned, so no byte of a secret is passed on (or uploaded) before it is found.

Values shorter than MIN_LENGTH are not looked for: in gigabytes of binary weights a 4-byte value turns
up by chance (about once per 4 GB), and a refusal must mean a leak."""
from __future__ import annotations

import io
import os
from collections import deque
from collections.abc import Iterable
from typing import Any, BinaryIO, cast

from mlci.core.errors import UsageError

MIN_LENGTH = 8
READ_AHEAD = 1 << 20


class SecretInImage(UsageError):
    """A registered secret was found in content bound for an image."""


class Scanner:
    """The secrets to look for, as bytes."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.needles = sorted({s.encode() for s in secrets if len(s) >= MIN_LENGTH}, key=len, reverse=True)
        self.overlap = max((len(n) for n in self.needles), default=1) - 1

    def find(self, data: bytes) -> bytes | None:
        """The first secret `data` holds, if any."""
        return next((needle for needle in self.needles if needle in data), None)

    def check(self, data: bytes | str, shown: str) -> None:
        """Refuse `data` (a whole small blob, a name, a label) if it holds a secret."""
        found = self.find(data.encode() if isinstance(data, str) else data)
        if found is not None:
            raise _refusal(shown, found)

    def reader(self, stream: BinaryIO, shown: str) -> BinaryIO:
        """`stream`, scanned as it is read."""
        if not self.needles:
            return stream
        return cast(BinaryIO, _ScanningReader(stream, self, shown))


class _ScanningReader(io.RawIOBase):
    """Scans ahead of what it gives: a read returns bytes only once everything up to `overlap` bytes past
    them has been scanned, so no byte of a secret that spans two reads has left before it is found (a
    layer is streamed to a registry as it is built). Each chunk read is scanned where it lies and, for a
    secret across the seam, with the `overlap` bytes before it; reads of the chunks' size are handed on as
    the very chunks read (no copy: a weights file's gigabytes pass through here)."""

    def __init__(self, inner: BinaryIO, scanner: Scanner, shown: str) -> None:
        super().__init__()
        self.inner, self.scanner, self.shown = inner, scanner, shown
        self.chunks: deque[bytes] = deque()  # scanned, not yet handed on
        self.buffered, self.tail, self.eof = 0, b"", False  # tail: the last `overlap` bytes scanned

    def readable(self) -> bool:
        return True

    def _fill(self, wanted: int) -> None:
        """Read and scan until `wanted` bytes plus `overlap` are buffered (or the end; all of it for -1)."""
        overlap = self.scanner.overlap
        while not self.eof and (wanted < 0 or self.buffered < wanted + overlap):
            data = bytes(self.inner.read(max(wanted, READ_AHEAD)))
            if not data:
                self.eof = True
                break
            found = self.scanner.find(data) or (self.scanner.find(self.tail + data[:overlap]) if self.tail else None)
            if found is not None:
                raise _refusal(self.shown, found)
            self.tail = (self.tail + data)[-overlap:] if len(data) < overlap else data[len(data) - overlap:]
            self.chunks.append(data)
            self.buffered += len(data)

    def read(self, size: int = -1) -> bytes:
        self._fill(size)
        need = self.buffered if size < 0 else min(size, self.buffered)
        self.buffered -= need
        parts = []
        while need:
            chunk = self.chunks[0]
            if len(chunk) <= need:
                parts.append(self.chunks.popleft())
                need -= len(chunk)
            else:
                parts.append(chunk[:need])
                self.chunks[0] = chunk[need:]
                need = 0
        return b"".join(parts)  # one part (the usual case) is handed on as it is

    def readinto(self, target: Any) -> int:
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)


def _refusal(shown: str, secret: bytes) -> SecretInImage:
    names = sorted(name for name, value in os.environ.items() if value.encode() == secret)
    origin = f"${', $'.join(names)}" if names else "a registry password or token mlci was given"
    return SecretInImage(f"{shown}: holds the value of a secret ({origin}); it must not go into an image: "
                         "remove it from the file (mlci never rewrites layer content)")
