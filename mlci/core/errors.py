"""Exit codes and the error classes that carry them; the CLI's error handler maps one to the other."""
from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """The documented exit codes of every mlci command (README: "Exit codes")."""

    OK = 0
    GATE_FAILED = 1
    USAGE = 2
    ENVIRONMENT = 3
    PIPELINE = 4
    INTERNAL = 70
    INTERRUPTED = 130
    BROKEN_PIPE = 141  # stdout closed early (`| head`), like SIGPIPE's 128 + 13
    TERMINATED = 143  # SIGTERM: what CI sends on cancel


class MlciError(Exception):
    """An expected failure: the CLI prints its message as one line and exits with `exit_code`."""

    exit_code: ExitCode = ExitCode.INTERNAL


class GateFailed(MlciError):
    """A gate failed (stale lock, data check, metric gate, scan or promotion policy); reports are written."""

    exit_code = ExitCode.GATE_FAILED


class UsageError(MlciError):
    """Bad command-line usage."""

    exit_code = ExitCode.USAGE


class ConfigError(MlciError):
    """mlci.yaml (or a file it names) is invalid; `problems` holds one line per problem."""

    exit_code = ExitCode.USAGE

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class EnvironmentProblem(MlciError):
    """Something outside mlci is missing or unreachable: a tool, a server, a data source, a remote."""

    exit_code = ExitCode.ENVIRONMENT


class PipelineFailed(MlciError):
    """A pipeline command failed, e.g. a DVC stage's own command exited non-zero."""

    exit_code = ExitCode.PIPELINE
