"""SIGTERM, which CI sends on cancel, handled like Ctrl-C: an exception unwinds the stack, so every
`finally` cleans up (scratch copies, temp files) and running tools are stopped (core/proc.py); the CLI
prints one line and exits 143."""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Terminated(BaseException):
    """SIGTERM arrived. A BaseException like KeyboardInterrupt, so no `except Exception` swallows it."""


def _raise(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt the clean-up
    raise Terminated


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """While inside, SIGTERM raises Terminated in the main thread (elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def deferred() -> Iterator[None]:
    """While inside, SIGINT and SIGTERM wait and are delivered, to the handlers they had, on leaving: a section
    that must not be cut in two (a child started but not yet watched) finishes first (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def _hold(signum: int, frame: FrameType | None) -> None:
        pending.append(signum)

    # an ignored signal stays ignored (a child inherits SIG_IGN, not a handler); one Python cannot restore is left
    current = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous = {sig: signal.signal(sig, _hold) for sig, handler in current.items()
                if handler is not None and handler != signal.SIG_IGN}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in dict.fromkeys(pending):
            signal.raise_signal(signum)
