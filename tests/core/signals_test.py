"""SIGTERM in the places Python cannot raise from: a finalizer that the garbage collector runs inside other code."""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
import weakref

import pytest

from mlci.core import signals


class _Holder:
    pass


def test_a_sigterm_that_lands_in_a_finalizer_is_raised_once_it_is_done() -> None:
    """A urllib3 pool's weakref.finalize caught the SIGTERM: Python printed "Exception ignored in <finalize
    object>" and dropped it, and a cancelled `mlci promote` went on and exited 0."""
    ran: list[str] = []

    def finalizer() -> None:
        signal.raise_signal(signal.SIGTERM)  # delivered while the finalizer runs
        ran.append("finished")

    with signals.sigterm_raises():
        holder = _Holder()
        weakref.finalize(holder, finalizer)
        started = time.monotonic()
        with pytest.raises(signals.Terminated):
            del holder
            time.sleep(10)  # interrupted: raised once the finalizer is done
            ran.append("went on")
    assert ran == ["finished"] and time.monotonic() - started < 5
    assert signals.terminated()


def test_a_swallowed_sigterm_still_exits_143_without_a_traceback(tmp_path: object) -> None:
    """Whatever swallows the Terminated (a library's `except BaseException`), the command exits 143."""
    script = textwrap.dedent("""
        import signal, sys
        from mlci import cli
        def swallowing(args):
            try:
                signal.raise_signal(signal.SIGTERM)
            except BaseException:
                pass
            return 0
        parser = cli.build_parser
        args = type("A", (), {"handler": staticmethod(swallowing)})()
        with cli.sigterm_raises():
            sys.exit(cli._dispatch(args))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 143, done.stderr
    assert "terminated (SIGTERM)" in done.stderr and "Traceback" not in done.stderr


def test_a_sigterm_belongs_to_the_command_it_ended() -> None:
    """In one process (the tests' in-process CLI), a command after one that SIGTERM ended starts afresh: the
    flag is cleared on entering the outermost handler, never by a nested one."""
    with signals.sigterm_raises(), pytest.raises(signals.Terminated):
        signal.raise_signal(signal.SIGTERM)
    assert signals.terminated()
    with signals.sigterm_raises():
        assert not signals.terminated()
        try:
            signal.raise_signal(signal.SIGTERM)
        except signals.Terminated:
            pass
        with signals.sigterm_raises():  # nested: what the outer one received stays received
            assert signals.terminated()
