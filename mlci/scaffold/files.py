"""The scaffold as a plan of files: what is new, unchanged or would change (a unified diff), then written all at
once, atomically, or not at all."""
from __future__ import annotations

import difflib
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlci.core.errors import EnvironmentProblem, UsageError
from mlci.core.fsutil import atomic_write, outside

MAX_SHOWN = 1 << 20  # a file larger than this is said to differ, not diffed


@dataclass(frozen=True)
class Planned:
    """One file of the scaffold: its path in the repository, its new text, and whether an existing file is kept
    whatever it holds (`.dvcignore`: written only when missing)."""

    path: str
    text: str
    only_if_missing: bool = False


@dataclass(frozen=True)
class Change:
    """A planned file against what the repository holds: `new`, `same`, `kept` (exists, left alone) or `differs`
    (with its unified diff)."""

    planned: Planned
    status: str
    diff: str = ""


def plan(repo: Path, files: Sequence[Planned]) -> list[Change]:
    """Compare each planned file with the repository's; a path that leads out of the repository through a
    symlink, or that is not a regular file, is refused (exit 2) before anything is written."""
    return [_compare(repo, p) for p in files]


def _compare(repo: Path, planned: Planned) -> Change:
    path = repo / planned.path
    target = outside(repo, path)
    if target is not None:
        raise UsageError(f"{planned.path}: leads out of the repository through a symlink (to {target}); "
                         "mlci init writes nothing there")
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return Change(planned, "new")
    except OSError as exc:
        raise EnvironmentProblem(f"{planned.path}: cannot read: {exc.strerror or exc}") from None
    if planned.only_if_missing:
        return Change(planned, "kept")
    if not stat.S_ISREG(info.st_mode if not stat.S_ISLNK(info.st_mode) else _followed(path)):
        raise UsageError(f"{planned.path}: exists and is not a regular file; mlci init does not replace it")
    if info.st_size > MAX_SHOWN:
        return Change(planned, "differs", f"{planned.path}: {info.st_size} bytes, would be replaced (not shown)\n")
    try:
        current = path.read_bytes().decode("utf-8", "replace")
    except OSError as exc:
        raise EnvironmentProblem(f"{planned.path}: cannot read: {exc.strerror or exc}") from None
    if current == planned.text:
        return Change(planned, "same")
    lines = difflib.unified_diff(current.splitlines(keepends=True), planned.text.splitlines(keepends=True),
                                 f"a/{planned.path}", f"b/{planned.path}")
    return Change(planned, "differs", "".join(line if line.endswith("\n") else line + "\n" for line in lines))


def _followed(path: Path) -> int:
    """The mode of what a symlink inside the repository points to (0 when it dangles)."""
    try:
        return os.stat(path).st_mode
    except OSError:
        return 0


def write(repo: Path, changes: Sequence[Change]) -> list[str]:
    """Write every new or differing file atomically (temp file + rename); returns their paths."""
    written = []
    for change in changes:
        if change.status in ("new", "differs"):
            atomic_write(repo / change.planned.path, change.planned.text)
            written.append(change.planned.path)
    return written
