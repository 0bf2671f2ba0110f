"""`image.lock` checked before pip sees it: every requirement pinned to one exact version (or a direct
URL) and carrying a `--hash`, in one self-contained file, which is what `pip install --require-hashes`
needs and what makes the dependency layer's input hash mean something."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

from mlci.core.errors import ConfigError

HOW = ("make one with `pip-compile --generate-hashes -o requirements.lock requirements.in` "
       "or `uv pip compile --generate-hashes requirements.in -o requirements.lock`")
_REQUIREMENT = re.compile(r"^(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:\[[^\]]*\])?\s*"
                          r"(?P<spec>[^;]*?)\s*(?:;.*)?$")
_PIN = re.compile(r"^(?:===?\s*[^\s,*]+|@\s*\S+)$")
_HASH = re.compile(r"^(?:sha256|sha384|sha512):[0-9a-f]+$")
# Options pip accepts in a requirements file that do not bring in other files or unhashable installs.
_GLOBAL_OPTIONS = ("--index-url", "-i", "--extra-index-url", "--no-index", "--find-links", "-f",
                   "--trusted-host", "--prefer-binary", "--only-binary", "--no-binary", "--pre",
                   "--require-hashes", "--use-feature")
_NESTED = ("-r", "--requirement", "-c", "--constraint", "-e", "--editable")


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) of each requirement line: continuations joined, comments removed."""
    lines: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw)
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        if pending.strip():
            lines.append((start, pending.strip()))
        pending = ""
    if pending.strip():
        lines.append((start, pending.strip()))
    return lines


def _split_hashes(words: list[str]) -> tuple[list[str], list[str]]:
    """The requirement's own words, and the values of its `--hash=X` / `--hash X` options."""
    spec: list[str] = []
    hashes: list[str] = []
    rest = iter(words)
    for word in rest:
        if word == "--hash":
            hashes.append(next(rest, ""))
        elif word.startswith("--hash="):
            hashes.append(word.removeprefix("--hash="))
        else:
            spec.append(word)
    return spec, hashes


def check(path: Path, shown: str) -> None:
    """ConfigError (exit 2) with one line per requirement that is not pinned and hashed."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"image.lock: {shown}: cannot read ({exc.__class__.__name__})"]) from None
    problems: list[str] = []
    requirements = 0
    for number, line in logical_lines(text):
        where = f"{shown}:{number}"
        try:
            words = shlex.split(line, posix=True)
        except ValueError:
            problems.append(f"{where}: cannot parse {line[:60]!r}")
            continue
        if words[0].startswith("-"):
            option = words[0].split("=", 1)[0]
            if option in _NESTED:
                problems.append(f"{where}: {option} is not allowed in image.lock: the lock must be one "
                                "self-contained file of pinned, hashed requirements")
            elif option not in _GLOBAL_OPTIONS:
                problems.append(f"{where}: {option}: not an option mlci accepts in image.lock")
            continue
        requirements += 1
        spec, hashes = _split_hashes(words)
        match = _REQUIREMENT.match(" ".join(spec))
        if match is None or not _PIN.match(match["spec"]):
            problems.append(f"{where}: {words[0]!r} is not pinned to one version (`name==1.2.3`)")
        elif not any(_HASH.match(h) for h in hashes):
            problems.append(f"{where}: {match['name']} has no --hash=ALGORITHM:DIGEST")
    if problems:
        raise ConfigError([*problems, f"image.lock: {shown}: every requirement must be pinned and hashed; {HOW}"])
    if requirements == 0:
        raise ConfigError([f"image.lock: {shown}: lists no requirements; {HOW}"])
