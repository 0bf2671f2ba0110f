"""The one way mlci runs a subprocess: argv only (never a shell), redacted errors, optional streaming."""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mlci.core.errors import EnvironmentProblem, MlciError
from mlci.core.log import redact


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
) -> Result:
    """Run `argv`; with `stream`, echo merged output line by line to stderr (redacted) while keeping it."""
    full_argv = (which(argv[0]), *argv[1:])
    merged_env = {**os.environ, **env} if env is not None else None
    try:
        if stream:
            returncode, output = _run_streaming(full_argv, cwd, merged_env, timeout)
            result = Result(tuple(argv), returncode, output, "")
        else:
            done = subprocess.run(
                full_argv, cwd=cwd, env=merged_env, capture_output=True, text=True,
                errors="replace", timeout=timeout, check=False,
            )
            result = Result(tuple(argv), done.returncode, done.stdout, done.stderr)
    except subprocess.TimeoutExpired as exc:
        raise EnvironmentProblem(f"`{redact(shlex.join(argv))}` timed out after {exc.timeout:.0f} s") from None
    if check and result.returncode != 0:
        raise CommandFailed(result)
    return result


def _run_streaming(
    argv: Sequence[str], cwd: Path | None, env: Mapping[str, str] | None, timeout: float | None
) -> tuple[int, str]:
    lines: list[str] = []
    with subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, errors="replace", bufsize=1,
    ) as child:
        assert child.stdout is not None
        for line in child.stdout:
            lines.append(line)
            sys.stderr.write(redact(line))
            sys.stderr.flush()
        returncode = child.wait(timeout=timeout)
    return returncode, "".join(lines)
