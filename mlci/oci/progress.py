"""Copy progress: on a terminal, one `rich` bar per image (bytes of every blob being copied, from all
threads); in CI (not a terminal), one log line per blob. Everything goes through mlci.core.log (redacted)."""
from __future__ import annotations

import io
import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO, cast

from mlci.core import log
from mlci.core.log import logger
from mlci.oci.manifest import Descriptor

if TYPE_CHECKING:
    import rich.progress

READ_SIZE = 1 << 20


class _Redacted(io.TextIOBase):
    """A text stream for rich's console that writes through log.stream (stderr, secrets masked); rich does
    not redirect sys.stderr meanwhile (below), so this never loops back into the console."""

    def write(self, text: str) -> int:
        log.stream(text)
        return len(text)

    def isatty(self) -> bool:
        return True

    def flush(self) -> None:
        """log.stream flushes every write."""


class Cancelled(Exception):
    """The copy was stopped (another blob failed, or Ctrl-C/SIGTERM): a blob stream refuses further reads."""


class Progress:
    """Progress of one image's copy; `track` wraps each blob stream (thread-safe). After cancel(), every
    tracked stream raises Cancelled on its next read, so running uploads stop within one chunk."""

    def __init__(self, image: str, sizes: list[int]) -> None:
        self.image, self.total = image, sum(sizes)
        self._bar: rich.progress.Progress | None = None
        self._task: Any = None
        self._lock = threading.Lock()
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        """Stop every tracked stream at its next read."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def __enter__(self) -> Progress:
        if log.interactive() and self.total:
            import rich.console
            import rich.progress

            console = rich.console.Console(file=cast(TextIO, _Redacted()), force_terminal=True)
            self._bar = rich.progress.Progress(
                rich.progress.TextColumn("{task.description}"), rich.progress.BarColumn(),
                rich.progress.DownloadColumn(), rich.progress.TransferSpeedColumn(),
                rich.progress.TimeRemainingColumn(), console=console, transient=False,
                redirect_stdout=False, redirect_stderr=False)  # mlci's log and results keep their own streams
            self._bar.start()
            self._task = self._bar.add_task(self.image[7:19], total=self.total)
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()

    def track(self, stream: BinaryIO, blob: Descriptor) -> BinaryIO:
        """The stream, reporting what passes (a restarted upload counts its bytes again)."""
        if self._bar is None:
            logger.info("mlci: copying blob %s (%.1f MB)", blob.digest[7:19], blob.size / 1e6)
        return cast(BinaryIO, io.BufferedReader(_Counted(stream, self), READ_SIZE))

    def advance(self, n: int) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.advance(self._task, n)

    def skipped(self, blob: Descriptor) -> None:
        """A blob the destination already had: counted as done."""
        self.advance(blob.size)

    def finished(self, blob: Descriptor) -> None:
        """A blob copied (the CI line was written when it started)."""


class _Counted(io.RawIOBase):
    def __init__(self, inner: BinaryIO, progress: Progress) -> None:
        super().__init__()
        self.inner, self.progress = inner, progress

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:  # a file source can be re-read from an offset (an upload resumed by seeking)
        return bool(getattr(self.inner, "seekable", lambda: False)())

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self.inner.seek(offset, whence)

    def tell(self) -> int:
        return self.inner.tell()

    def readinto(self, target: Any) -> int:
        if self.progress.cancelled:
            raise Cancelled("copy cancelled")
        readinto = getattr(self.inner, "readinto", None)
        if readinto is not None:  # straight into the caller's buffer: no second copy of a chunk in memory
            n = int(readinto(target) or 0)
        else:
            data = self.inner.read(len(target))
            n = len(data)
            target[:n] = data
        self.progress.advance(n)
        return n

    def close(self) -> None:
        self.inner.close()
        super().close()
