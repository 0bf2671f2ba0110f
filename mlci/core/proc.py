"""The one way mlci runs a subprocess: argv only (never a shell), redacted errors, optional streaming,
and a child (with everything it started) stopped when mlci is interrupted, terminated or times out."""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlci.core import log
from mlci.core.errors import EnvironmentProblem, MlciError
from mlci.core.log import redact
from mlci.core.scratch import scratch_dir
from mlci.core.signals import Terminated, deferred

# After asking a child to stop, how long it may clean up (DVC releasing its lock) before SIGKILL.
STOP_GRACE = 5.0


@dataclass(frozen=True)
class Result:
    """What a finished command returned; with `stream=True`, stderr is folded into stdout."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def tail(self, lines: int) -> str:
        """The last `lines` lines of the command's output."""
        text = (self.stdout + ("\n" + self.stderr if self.stderr else "")).rstrip("\n")
        return "\n".join(text.splitlines()[-lines:])


class CommandFailed(MlciError):
    """A command exited non-zero where success was required."""

    def __init__(self, result: Result, tail_lines: int = 20) -> None:
        self.result = result
        cmd = redact(shlex.join(result.argv))
        super().__init__(f"`{cmd}` exited with {result.returncode}:\n{redact(result.tail(tail_lines))}")


def which(tool: str) -> str:
    """The full path of `tool`, preferring the interpreter's own bin dir (a venv's dvc beside its python)."""
    here = Path(sys.executable).parent / tool
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    found = shutil.which(tool)
    if not found:
        raise EnvironmentProblem(f"`{tool}` not found on PATH; install it (see README: set-up)")
    return found


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    stream: bool = False,
    timeout: float | None = None,
    private_tmp: bool = True,
) -> Result:
    """Run `argv`; with `stream`, echo merged output line by line to stderr (redacted) while keeping it. With
    `private_tmp`, unless `env` names its TMPDIR, the child gets a private one, removed once it has exited or
    been stopped: a tool stopped on cancel (pip on SIGTERM) leaves its temp files there, not in the runner's
    /tmp."""
    full_argv = (which(argv[0]), *argv[1:])
    with ExitStack() as stack:
        merged_env = {**os.environ, **(env or {})}
        if private_tmp and "TMPDIR" not in (env or {}):
            merged_env["TMPDIR"] = str(stack.enter_context(scratch_dir("mlci-tmp-")))
        if stream:
            returncode, output = _run_streaming(full_argv, cwd, merged_env, timeout)
            result = Result(tuple(argv), returncode, output, "")
        else:
            returncode, out, err = _run_captured(full_argv, cwd, merged_env, timeout)
            result = Result(tuple(argv), returncode, out, err)
    if check and result.returncode != 0:
        raise CommandFailed(result)
    return result


class TimedOut(EnvironmentProblem):
    """A command did not finish within its timeout (it was stopped, with everything it started)."""


def _timed_out(argv: Sequence[str], timeout: float | None) -> TimedOut:
    return TimedOut(f"`{redact(shlex.join(argv))}` timed out after {timeout or 0:.0f} s")


def _run_captured(argv: Sequence[str], cwd: Path | None, env: Mapping[str, str] | None,
                  timeout: float | None) -> tuple[int, str, str]:
    with _watched(argv, timeout, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as child:
        out, err = child.communicate(timeout=timeout)
    return child.returncode, out, err


def _run_streaming(argv: Sequence[str], cwd: Path | None, env: Mapping[str, str] | None,
                   timeout: float | None) -> tuple[int, str]:
    lines: list[str] = []
    with _watched(argv, timeout, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                  bufsize=1) as child:
        assert child.stdout is not None
        for line in child.stdout:
            lines.append(line)
            log.stream(line)
        returncode = child.wait(timeout=timeout)
    return returncode, "".join(lines)


@contextmanager
def _watched(argv: Sequence[str], timeout: float | None, **popen: Any) -> Iterator[subprocess.Popen[str]]:
    """The started child, stopped with its tree whatever ends the block; a signal that arrives while it starts
    waits until it is watched, so no child outlives mlci."""
    with ExitStack() as stack:
        with deferred():
            child = stack.enter_context(subprocess.Popen(argv, text=True, errors="replace", **popen))
            stack.enter_context(_stopped_on_exit(child, argv, timeout))
        yield child


@contextmanager
def _stopped_on_exit(child: subprocess.Popen[str], argv: Sequence[str], timeout: float | None) -> Iterator[None]:
    """A timeout stops the child's tree and is exit 3; Ctrl-C or SIGTERM stop it too, then propagate."""
    try:
        yield
    except subprocess.TimeoutExpired:
        stop(child, signal.SIGTERM)
        raise _timed_out(argv, timeout) from None
    except BaseException as exc:
        stop(child, _signal_for(exc))
        raise


def _signal_for(exc: BaseException) -> int:
    return signal.SIGINT if isinstance(exc, KeyboardInterrupt) else signal.SIGTERM


def stop(child: subprocess.Popen[str], sig: int) -> None:
    """Stop `child` and every process it started (DVC's stage commands, pip's builds): `sig` to all,
    then SIGKILL to what is left after STOP_GRACE seconds."""
    if child.poll() is not None:
        return
    tree = [child.pid, *_descendants(child.pid)]
    _send(tree, sig)
    try:
        child.wait(timeout=STOP_GRACE)
    except (subprocess.TimeoutExpired, Terminated, KeyboardInterrupt):
        pass
    _send([*tree, *_descendants(child.pid)], signal.SIGKILL)
    child.wait()


def _send(pids: Sequence[int], sig: int) -> None:
    for pid in dict.fromkeys(pids):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _descendants(pid: int) -> list[int]:
    """Every live descendant of `pid`, from /proc (empty where there is no /proc)."""
    children: dict[int, list[int]] = {}
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return []
    for entry in entries:
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                stat = handle.read()
        except OSError:
            continue  # exited meanwhile
        fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) ": state, ppid, ...
        if len(fields) > 1 and fields[1].isdigit():
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found
