"""`mlci` entry point: argparse, dispatch to one module per command, and the one error handler."""
from __future__ import annotations

import argparse
import datetime
import errno
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlci import __version__
from mlci.commands import build, bundle, config, data_test, init, promote, report, repro, scan, verify
from mlci.core import log
from mlci.core.errors import ConfigError, EnvironmentProblem, ExitCode, MlciError, UsageError
from mlci.core.fsutil import append_text, cache_dir
from mlci.core.signals import Terminated, sigterm_raises, terminated

COMMANDS = {"init": init, "build": build, "config": config, "data-test": data_test, "repro": repro,
            "report": report, "scan": scan, "promote": promote, "verify": verify, "bundle": bundle}
_VALUED = ("--config",)  # the global options that take a value (the next word, or after `=`)


class _Parser(argparse.ArgumentParser):
    """argparse whose help and usage errors go out through mlci's redacting output (an unknown flag
    is echoed back, and it may be a pasted token)."""

    def _print_message(self, message: str, file: Any = None) -> None:  # argparse passes sys.stdout/stderr
        if message:
            log.print_to(file, message) if file is not None else log.out(message)


def _global_options(defaults: bool) -> argparse.ArgumentParser:
    """Options accepted before and after the subcommand (only the top level sets defaults)."""
    parent = _Parser(add_help=False)
    suppress = None if defaults else argparse.SUPPRESS

    def default(value: object) -> object:
        return value if defaults else suppress

    parent.add_argument("--config", metavar="PATH", default=default(None),
                        help="mlci.yaml to use (default: searched from here up to the git root)")
    parent.add_argument("--json", action="store_true", default=default(False),
                        help="print the command's result as JSON on stdout")
    parent.add_argument("-v", "--verbose", action="count", dest="verbose", default=default(0),
                        help="more output (repeatable)")
    parent.add_argument("-q", "--quiet", action="store_true", default=default(False),
                        help="only warnings and errors on stderr")
    return parent


def command_in(argv: Sequence[str]) -> str | None:
    """The command `argv` names (its first word that is not a global option or its value), None when it names
    none of them (no command, a typo, `--help`: the full parser answers)."""
    words = iter(argv)
    for word in words:
        if word in _VALUED:
            next(words, None)
        elif word == "--":
            break
        elif not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; each command module adds its own subparser (only `command`'s, when given: a command's run
    need not build the other nine)."""
    parser = _Parser(
        prog="mlci", parents=[_global_options(True)],
        description="GitOps CI/CD for machine-learning repositories.",
        epilog="Exit codes: 0 ok, 1 gate failed, 2 usage/config error, 3 environment error, "
               "4 pipeline command failed, 70 internal error, 130 interrupted, 141 output pipe closed, "
               "143 terminated (SIGTERM).",
    )
    parser.add_argument("--version", action="version", version=f"mlci {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS.items():
        if command is None or name == command:
            module.add_parser(sub, _global_options(False))
    return parser


def crash_log_path() -> Path:
    """Where an internal error's traceback goes: $MLCI_LOG_FILE, else the user cache dir."""
    if os.environ.get("MLCI_LOG_FILE"):
        return Path(os.environ["MLCI_LOG_FILE"])
    return cache_dir() / "mlci.log"


def _log_crash(exc: BaseException) -> str:
    """Append the traceback to the crash log (redacted, like every file mlci writes); returns where it went."""
    path = crash_log_path()
    stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    text = f"--- {stamp} mlci {__version__} argv={' '.join(sys.argv)}\n" + "".join(traceback.format_exception(exc))
    try:
        append_text(path, text)
        return str(path)
    except MlciError:
        return "nowhere (the log file is not writable)"


def _one_line(exc: BaseException) -> str:
    """An exception's text as one line: its first line, marked when more follow (all of it is in the log)."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return (lines[0].strip() if lines else "") + (" [...]" if len(lines) > 1 else "")


def os_problem(exc: OSError) -> MlciError:
    """An operating-system error no command handled, as one line naming its file: a name too long or a
    symlink loop is the input's problem (exit 2), anything else the environment's (exit 3)."""
    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None) or "a file"
    reason = exc.strerror or str(exc) or exc.__class__.__name__
    if exc.errno in (errno.ENAMETOOLONG, errno.ELOOP):
        return UsageError(f"{where}: {reason}")
    return EnvironmentProblem(f"{where}: {reason}")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, dispatch, and map every failure to one documented exit code."""
    log.register_env_secrets()
    try:
        words = sys.argv[1:] if argv is None else list(argv)
        args = build_parser(command_in(words)).parse_args(words)
    except BrokenPipeError:  # `mlci --help` with stdout closed, or its reader gone
        log.discard_stdout()
        return ExitCode.BROKEN_PIPE
    log.setup(-1 if args.quiet else args.verbose)
    with sigterm_raises():
        return _dispatch(args)


def _dispatch(args: argparse.Namespace) -> int:
    code = _run(args)
    if code != ExitCode.TERMINATED and terminated():  # its Terminated was swallowed (a finalizer, a library)
        log.logger.error("mlci: terminated (SIGTERM)")
        return ExitCode.TERMINATED
    return code


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        for problem in exc.problems:
            log.logger.error("%s", log.one_line(problem))
        return ExitCode.USAGE
    except MlciError as exc:
        log.logger.error("mlci: error: %s", exc)
        return exc.exit_code
    except KeyboardInterrupt:
        log.logger.error("mlci: interrupted")
        return ExitCode.INTERRUPTED
    except Terminated:
        log.logger.error("mlci: terminated (SIGTERM)")
        return ExitCode.TERMINATED
    except BrokenPipeError:  # `mlci data-test | head`: the reader left; nothing more can be shown
        log.discard_stdout()
        return ExitCode.BROKEN_PIPE
    except OSError as exc:  # a path too long, a permission, a full disk, a file gone: the input or the machine
        log.logger.debug("mlci: %s", exc, exc_info=True)
        failure = os_problem(exc)
        log.logger.error("mlci: error: %s", log.one_line(str(failure)))
        return failure.exit_code
    except Exception as exc:  # noqa: BLE001 - the last-resort handler: one line out, traceback to the log
        where = _log_crash(exc)
        log.logger.error("mlci: internal error: %s: %s (traceback in %s; please report it)",
                         exc.__class__.__name__, _one_line(exc), where)
        return ExitCode.INTERNAL
