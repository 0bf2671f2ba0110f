"""Console output for mlci: stderr logging with secret redaction, and stdout for results."""
from __future__ import annotations

import logging
import os
import re
import sys

_SECRET_NAME = re.compile(r"TOKEN|PASSWORD|PASSWD|SECRET|CREDENTIAL|API_KEY|PRIVATE_KEY|AUTH", re.I)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]+):(?P<pw>[^@/\s]+)@", re.I)
MASK = "[MASKED]"
_MIN_SECRET_LEN = 4

_secrets: set[str] = set()
logger = logging.getLogger("mlci")


def add_secret(value: str | None) -> None:
    """Register a value that must never be printed."""
    if value and len(value) >= _MIN_SECRET_LEN:
        _secrets.add(value)


def add_secret_env(name: str) -> None:
    """Register the value of environment variable `name` as a secret."""
    add_secret(os.environ.get(name))


def registered_secrets() -> frozenset[str]:
    """Every value registered so far (for checks that must refuse content holding one, e.g. image layers)."""
    return frozenset(_secrets)


def register_env_secrets(environ: dict[str, str] | None = None) -> None:
    """Treat every environment variable whose name looks secret (TOKEN, PASSWORD, ...) as a secret."""
    env = os.environ if environ is None else environ
    for name, value in env.items():
        if _SECRET_NAME.search(name):
            add_secret(value)


def redact(text: str) -> str:
    """Mask registered secrets and the password part of URLs in `text`."""
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return _URL_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup(verbosity: int) -> None:
    """Send mlci's log to stderr: -q shows warnings and errors, default adds info, -v adds debug."""
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter("%(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


def out(text: str) -> None:
    """Print a command's result on stdout (redacted)."""
    sys.stdout.write(redact(text) + ("" if text.endswith("\n") else "\n"))
    sys.stdout.flush()
