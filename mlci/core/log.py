"""Console output for mlci: stderr logging and stdout results, every line through the secret redactor.

Secrets are registered values (`add_secret`: tokens, DSNs, passwords, the values of the environment
variables the config names in `*_env` keys and of those whose names look secret) and the userinfo of
URLs. Masking is linear in the text: one `str.replace` per registered form of a secret, and a URL scan
whose patterns never re-read a character (a 1 MB line without spaces costs milliseconds).
"""
from __future__ import annotations

import base64
import errno
import json
import logging
import math
import os
import re
import sys
from collections.abc import Mapping
from typing import Any, TextIO
from urllib.parse import quote, quote_plus, unquote

from mlci.core import jsonsafe

MASK = "[MASKED]"
_MIN_SECRET_LEN = 4  # a value registered explicitly (a token, the value of a `*_env` variable)
_MIN_GUESSED_LEN = 8  # the value of a variable that only looks secret by its name
# A variable looks secret when one `_`-separated part of its name is, or ends with, one of these words:
# ACCESS_TOKEN, PGPASSWORD, DB_PASS and APIKEY do; GIT_AUTHOR_NAME (AUTHOR) and KEYBOARD_LAYOUT do not.
SECRET_WORDS = ("TOKEN", "PASSWORD", "PASSWD", "PASS", "PASSPHRASE", "SECRET", "KEY", "CREDENTIAL", "AUTH", "DSN",
                "JWT")
# ... or when one part of a name of two parts or more is one of these (GH_PAT, DB_PWD; not PWD, the shell's
# working directory, nor COMPAT or PATH).
SECRET_PARTS = ("PAT", "PWD")
# ... unless its last part says the value names a place or another variable, not a secret:
# MLCI_FORGE_TOKEN_ENV (a variable's name), REGISTRY_AUTH_FILE, SSH_AUTH_SOCK, OAUTH_TOKEN_URL, GIT_ASKPASS
# (the program that asks for a password).
NOT_SECRET_SUFFIXES = ("ENV", "FILE", "PATH", "DIR", "SOCK", "URL", "ASKPASS")
# URL userinfo without a password is kept for SSH, where the user name is a login (`ssh://git@host`) and
# never a credential (SSH authenticates with keys); for every other scheme `TOKEN@host` is a credential.
_SSH_SCHEMES = frozenset({"ssh", "git+ssh", "ssh+git", "sftp"})
# scheme://authority: the lookbehind starts a scheme only where no scheme character precedes, and the
# possessive quantifiers never give characters back, so each character is read a bounded number of times.
_URL = re.compile(r"(?<![A-Za-z0-9+.\-])(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*+)://"
                  r"(?P<authority>[^/?#\s\"'<>\\^`{|}]*+)")
_NAME_PARTS = re.compile(r"[^A-Z0-9]+")
_DSN_PASSWORD = re.compile(r"\bpassword\s*=\s*(?:'(?P<quoted>(?:[^'\\]|\\.)*)'|(?P<plain>[^\s']+))", re.I)

_secrets: set[str] = set()  # the values as registered
_forms: list[str] = []  # every form that is masked (raw, URL-encoded, JSON-escaped), longest first
logger = logging.getLogger("mlci")


def add_secret(value: str | None) -> None:
    """Register a value that must never be printed or written: also its URL-encoded and JSON-escaped
    forms, and the password inside it when it is a URL or DSN (`scheme://user:PASSWORD@host`,
    `password=PASSWORD`), which a program may print on its own."""
    if not value or len(value) < _MIN_SECRET_LEN or value in _secrets:
        return
    _secrets.add(value)
    forms = set(_forms) | {f for f in _encoded_forms(value) if len(f) >= _MIN_SECRET_LEN}
    _forms[:] = sorted(forms, key=lambda f: (-len(f), f))
    for password in _embedded_passwords(value):
        add_secret(password)


def _embedded_passwords(value: str) -> list[str]:
    found = [m["quoted"].replace("\\'", "'").replace("\\\\", "\\") if m["quoted"] is not None else m["plain"]
             for m in _DSN_PASSWORD.finditer(value)]
    return [p for p in [*found, *_url_passwords(value)] if p != value]


def _encoded_forms(value: str) -> set[str]:
    url = quote(value, safe="")
    return {
        value, url, re.sub(r"%[0-9A-F]{2}", lambda m: m[0].lower(), url), quote_plus(value),
        json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1], repr(value)[1:-1],
        *_base64_forms(value),
    }


def _base64_forms(value: str) -> set[str]:
    """The base64 text that `value` becomes inside any base64-encoded string (`Authorization: Basic` of
    `user:TOKEN`, a docker config's `auth`, a JWT), standard and URL-safe: for each of the three offsets the
    value can start at, the 4-character groups made of its bytes alone. Masking them leaves at most the two
    bytes at either end of the value undecodable from what is shown."""
    raw = value.encode("utf-8")
    forms = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode("ascii")
        core = encoded[4 if offset else 0: 4 * ((offset + len(raw)) // 3)]
        if len(core) >= _MIN_GUESSED_LEN:
            forms |= {core, core.replace("+", "-").replace("/", "_")}
    return forms


def add_secret_env(name: str) -> None:
    """Register the value of environment variable `name` as a secret."""
    add_secret(os.environ.get(name))


def registered_secrets() -> frozenset[str]:
    """Every value registered so far (for checks that must refuse content holding one, e.g. image layers)."""
    return frozenset(_secrets)


def looks_secret(name: str) -> bool:
    """Whether an environment variable's name says its value is a secret (see SECRET_WORDS)."""
    parts = [p for p in _NAME_PARTS.split(name.upper()) if p]
    if not parts or parts[-1] in NOT_SECRET_SUFFIXES:
        return False
    return (any(part.endswith(word) for part in parts for word in SECRET_WORDS)
            or (len(parts) > 1 and any(part in SECRET_PARTS for part in parts)))


def register_env_secrets(environ: Mapping[str, str] | None = None) -> None:
    """Treat the value (8+ characters) of every environment variable whose name looks secret as a secret,
    and the passwords (8+ characters) in the URLs any variable holds (DATABASE_URL, CI_REPOSITORY_URL,
    https_proxy): a program may print a password without its URL."""
    env = os.environ if environ is None else environ
    for name, value in env.items():
        if len(value) >= _MIN_GUESSED_LEN and looks_secret(name):
            add_secret(value)
        elif "://" in value:
            for password in _url_passwords(value):
                if len(password) >= _MIN_GUESSED_LEN:
                    add_secret(password)


def _url_passwords(value: str) -> list[str]:
    """The passwords in the userinfo of the URLs in `value`, decoded. A password-less user is not one: it is
    often a login (`__token__`, `deploy-bot`), and a build refuses content that holds a registered value."""
    found = []
    for match in _URL.finditer(value):
        userinfo = match["authority"].rpartition("@")[0]
        if ":" in userinfo:
            found.append(unquote(userinfo.split(":", 1)[1]))
    return found


def redact(text: str) -> str:
    """`text` with every registered secret and the userinfo of every URL masked."""
    for form in _forms:
        if form in text:
            text = text.replace(form, MASK)
    return _URL.sub(_mask_userinfo, text) if "://" in text else text


def _mask_userinfo(match: re.Match[str]) -> str:
    authority = match["authority"]
    at = authority.rfind("@")  # a raw `@` in a password: the host follows the last one
    if at < 0:
        return match[0]
    userinfo = authority[:at]
    if userinfo == MASK or (":" not in userinfo and match["scheme"].lower() in _SSH_SCHEMES):
        return match[0]
    return f"{match['scheme']}://{MASK}{authority[at:]}"


def one_line(text: str) -> str:
    """`text` with control characters escaped (`\\n`, `\\x1b`): a problem line stays one line and cannot
    drive the terminal, whatever a file's keys hold."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def redact_data(value: Any) -> Any:
    """Plain data (dicts, lists, scalars) with secrets masked in every string, key or value, and numbers
    that spell a secret replaced by the mask; the structure is untouched. NaN and infinities become None
    (JSON has no such numbers)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {redact(str(k)) if not isinstance(k, str) else redact(k): redact_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_data(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (int, float)):
        return MASK if redact(str(value)) != str(value) else value
    return redact_data(str(value))


def dumps_json(data: Any, *, indent: int | None = 2, sort_keys: bool = False) -> str:
    """Valid JSON of `data` with secrets masked in its values and keys (never by a key's name)."""
    plain = jsonsafe.loads(json.dumps(data, default=str))  # dataclass fields, paths, dates: as their text
    return json.dumps(redact_data(plain), indent=indent, sort_keys=sort_keys, allow_nan=False)


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return _printable(_controls_escaped(redact(super().format(record))), sys.stderr)


def _controls_escaped(text: str) -> str:
    """mlci's own messages never need a control character: one in a file name or key is shown escaped,
    so it cannot drive the terminal. Line breaks and tabs stay."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch in "\n\t" else ascii(ch)[1:-1] for ch in text)


def setup(verbosity: int) -> None:
    """Send mlci's log to stderr: -q shows warnings and errors, default adds info, -v adds debug. Libraries
    that log in this process (DVC's API, urllib3) and Python warnings go through the redactor too."""
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter("%(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
    others = logging.StreamHandler(sys.stderr)
    others.setFormatter(_RedactingFormatter("%(name)s: %(levelname)s: %(message)s"))
    others.setLevel(logging.WARNING)
    others.set_name("mlci-redacting")
    logging.root.handlers[:] = [h for h in logging.root.handlers if h.get_name() != "mlci-redacting"] + [others]
    logging.captureWarnings(False)  # re-installed on each set-up (a caller may have swapped showwarning)
    logging.captureWarnings(True)
    route_libraries()


def route_libraries() -> None:
    """Libraries that put their own console handlers on their loggers (DVC does when it is imported: INFO to
    stdout, WARNING to stderr) would write past the redactor, and onto stdout where results go: their stream
    handlers are removed, so what they log reaches the redacting root handler. Called at set-up and after a
    library is imported in this process; file handlers stay."""
    for name, item in list(logging.Logger.manager.loggerDict.items()):
        if not isinstance(item, logging.Logger) or name == logger.name or name.startswith(f"{logger.name}."):
            continue
        consoles = [h for h in item.handlers
                    if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
        for handler in consoles:
            item.removeHandler(handler)
        if consoles:
            item.propagate = True


def _printable(text: str, stream: TextIO) -> str:
    """`text` as the stream can encode it (a file name that is not UTF-8 is shown escaped, never an error)."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
        return text
    except UnicodeEncodeError:
        return text.encode(encoding, "backslashreplace").decode(encoding)


def _write(stream: TextIO | None, text: str) -> None:
    if stream is None:  # stderr closed before mlci started (`2>&-`): nowhere to say it
        return
    stream.write(_printable(text, stream))
    stream.flush()


def _stdout() -> TextIO:
    """Where results go. Started with stdout closed (`mlci ... >&-`), Python has none: that is a reader
    that left before the first line (exit 141), never a crash."""
    if sys.stdout is None:
        raise BrokenPipeError(errno.EPIPE, "stdout is closed")
    return sys.stdout


def out(text: str) -> None:
    """Print a command's result on stdout (redacted)."""
    _write(_stdout(), redact(text) + ("" if text.endswith("\n") else "\n"))


def out_json(data: Any, *, indent: int | None = 2, sort_keys: bool = False) -> None:
    """Print a command's result as JSON on stdout: secrets masked in values, always valid JSON."""
    _write(_stdout(), dumps_json(data, indent=indent, sort_keys=sort_keys) + "\n")


def print_to(stream: TextIO, text: str) -> None:
    """Write redacted text to a stream handed over by a library (argparse's help and usage errors)."""
    _write(stream, redact(text))


def discard_stdout() -> None:
    """After the reader of stdout has gone (a broken pipe): send what is left to /dev/null, so the
    interpreter's final flush does not fail again."""
    if sys.stdout is None:
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def interactive() -> bool:
    """stderr is a terminal a person watches (not CI, not a pipe): progress may redraw there."""
    return sys.stderr.isatty() and os.environ.get("CI") != "true"


def stream(text: str) -> None:
    """Echo a tool's output (or a progress bar) to stderr as it comes (redacted), whatever the verbosity."""
    _write(sys.stderr, redact(text))
