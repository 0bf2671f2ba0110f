"""Upload progress: a bar that redraws on a terminal, one quiet line per blob in CI logs."""
from __future__ import annotations

import io
import time
from typing import Any, BinaryIO, cast

from mlci.core import log
from mlci.core.log import logger


class Progress(io.RawIOBase):
    """Wraps a blob stream being copied and reports how much of it has passed."""

    def __init__(self, inner: BinaryIO, digest: str, size: int) -> None:
        super().__init__()
        self.inner, self.label, self.size = inner, digest[7:19], size
        self.done, self.started, self.drawn = 0, time.monotonic(), 0.0
        if not log.interactive():
            logger.info("mlci: copying blob %s (%.1f MB)", self.label, size / 1e6)

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        data = self.inner.read(len(target))
        target[: len(data)] = data
        self.done += len(data)
        now = time.monotonic()
        if log.interactive() and (now - self.drawn > 0.2 or not data):
            share = self.done / self.size if self.size else 1.0
            bar = "#" * int(share * 30)
            log.stream(f"\r  {self.label} [{bar:<30}] {share:4.0%} {self.done / 1e6:8.1f} MB"
                       + ("\n" if not data else ""))
            self.drawn = now
        return len(data)

    def close(self) -> None:
        self.inner.close()
        super().close()


def track(stream: BinaryIO, digest: str, size: int) -> BinaryIO:
    """The stream, reporting progress as it is read."""
    return cast(BinaryIO, io.BufferedReader(Progress(stream, digest, size), 1 << 20))
