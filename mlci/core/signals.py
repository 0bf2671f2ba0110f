"""SIGTERM, which CI sends on cancel, handled like Ctrl-C: an exception unwinds the stack, so every
`finally` cleans up (scratch copies, temp files) and running tools are stopped (core/proc.py); the CLI
prints one line and exits 143. A SIGTERM that lands in a finalizer (where Python drops exceptions) is
delivered again once it is done; one that something swallowed still makes the exit 143."""
from __future__ import annotations

import signal
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

_received = threading.Event()
_depth = 0  # sigterm_raises() entered and not left (main thread only)
REDELIVER_S = 0.005


class Terminated(BaseException):
    """SIGTERM arrived. A BaseException like KeyboardInterrupt, so no `except Exception` swallows it."""


def _raise(signum: int, frame: FrameType | None) -> None:
    if _finalizing(frame):  # Python prints and drops what a finalizer raises: the command would go on
        threading.Thread(target=_again, name="mlci-sigterm", daemon=True).start()
        return
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt the clean-up
    _received.set()
    raise Terminated


def _again() -> None:
    """The SIGTERM delivered once more, shortly: raised once the finalizer it landed in is done."""
    time.sleep(REDELIVER_S)
    main = threading.main_thread().ident
    if main is not None:  # a real signal, to the main thread: it also ends a blocking call there (EINTR)
        signal.pthread_kill(main, signal.SIGTERM)


def _finalizing(frame: FrameType | None) -> bool:
    """Whether the signal landed in a finalizer (a __del__, a weakref.finalize or weakref callback): run by
    the garbage collector inside whatever code allocated, where an exception cannot unwind the stack."""
    while frame is not None:
        if frame.f_code.co_name == "__del__" or frame.f_code.co_filename == weakref.__file__:
            return True
        frame = frame.f_back
    return False


def terminated() -> bool:
    """Whether SIGTERM arrived since the outermost sigterm_raises() was entered (even if something swallowed its
    Terminated: the exit is 143 all the same)."""
    return _received.is_set()


def _unraisable(hook: Any) -> Any:
    """sys.unraisablehook, quiet about a Terminated that a finalizer swallowed (no traceback on stderr)."""
    def quiet(unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, Terminated):
            hook(unraisable)
    return quiet


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """While inside, SIGTERM raises Terminated in the main thread (elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    global _depth
    if not _depth:  # the outermost: a new command, nothing received yet
        _received.clear()
    previous, hook = signal.signal(signal.SIGTERM, _raise), sys.unraisablehook
    sys.unraisablehook = _unraisable(hook)
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        signal.signal(signal.SIGTERM, previous)
        sys.unraisablehook = hook


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
