"""What goes into a layer, and from where: repository paths checked to stay inside the repository, and
every directory, file and symlink under them as a layer entry.

Symlinks stay symlinks. A link must resolve inside the repository, both as written (what it means in
the image, where the repository is the working directory) and on disk; otherwise the build is refused
(exit 2) naming it: mlci never copies what a link points at, so a link to /etc/shadow cannot put the
host's file into an image. The one exception is a DVC cache link (`cache.type` symlink): a link that
resolves to a file inside the configured DVC cache (`dvc cache dir`, often a shared directory outside
the repository on CI runners) is dereferenced, because that file is the DVC output's content. A hard
link (`cache.type` hardlink) is an ordinary file of the repository and is read as one; git cannot
create hard links, so a checkout cannot smuggle one in.

`.git` (which holds the remote URL, tokens included) and `__pycache__` never go into a layer."""
from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mlci.core.errors import EnvironmentProblem, UsageError

EXCLUDED = frozenset({".git", "__pycache__"})


@dataclass(frozen=True)
class Expected:
    """The md5 a file's bytes must have (what DVC recorded), checked on the one read that streams them into
    the layer: `refusal` (exit 2) when they differ, else `confirm` (which remembers the file's hash)."""

    md5: str
    refusal: str
    confirm: Callable[[], object]


@dataclass(frozen=True)
class Entry:
    """One member of a layer: its path in the image (no leading slash) and where its bytes come from."""

    name: str
    kind: Literal["dir", "file", "symlink"]
    shown: str  # how messages name it: the path in the repository
    source: Path | None = None  # a file's bytes (for a DVC cache link: the cache file)
    executable: bool = False
    linkname: str = ""
    expected: Expected | None = None


def repo_path(value: str, key: str) -> str:
    """A configured path as a normalised relative path; exit 2 when it is absolute or leaves the repo."""
    if not value or "\0" in value:
        raise UsageError(f"{key}: {value!r}: not a path")
    if posixpath.isabs(value) or os.path.isabs(value):
        raise UsageError(f"{key}: {value}: must be inside the repo (a path relative to it, not absolute)")
    normal = posixpath.normpath(value.replace(os.sep, "/"))
    if normal == ".." or normal.startswith("../"):
        raise UsageError(f"{key}: {value}: must be inside the repo (it leaves it through ..)")
    if EXCLUDED.intersection(normal.split("/")):
        raise UsageError(f"{key}: {value}: {'/'.join(sorted(EXCLUDED))} never go into an image")
    return normal


def dvc_cache_dir(root: Path) -> Path | None:
    """The DVC cache directory as DVC itself resolves it (`dvc cache dir`), or None outside a DVC repo
    (`root` may be a model's directory inside one)."""
    from mlci.dvcstage.dvc import dvc, last_error
    from mlci.dvcstage.files import dvc_root

    repo = dvc_root(root)
    if repo is None:
        return None
    result = dvc(repo, "cache", "dir")
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise EnvironmentProblem(f"`dvc cache dir` failed in {root}: {last_error(result)}")
    return Path(os.path.realpath(lines[-1].strip()))


class Collector:
    """Entries under repository paths, with the symlink rules above. The DVC cache dir is asked for
    only when a link needs it (`dvc_cache` is called at most once)."""

    def __init__(self, root: Path, dvc_cache: Callable[[], Path | None] | None = None) -> None:
        self.root = Path(os.path.realpath(root))
        self._dvc_cache = dvc_cache or (lambda: dvc_cache_dir(self.root))
        self._cache: list[Path | None] = []

    def entries(self, items: Iterable[tuple[str, str]]) -> list[Entry]:
        """Every entry for (path in the repo, path in the image) pairs, parents included, sorted by name.
        The repo paths must have passed repo_path()."""
        found: dict[str, Entry] = {}
        for rel, name in items:
            name = name.strip("/")
            parts = name.split("/")
            for depth in range(1, len(parts)):
                parent = "/".join(parts[:depth])
                found.setdefault(parent, Entry(parent, "dir", parent))
            self._item(rel, name, found)
        return [found[name] for name in sorted(found)]

    def _item(self, rel: str, name: str, found: dict[str, Entry]) -> None:
        path = self.root / rel
        parent = os.path.realpath(path.parent)
        if rel != "." and not self._inside(Path(parent)):
            raise UsageError(f"{rel}: its directory resolves outside the repo ({parent}); "
                             "mlci does not follow links out of the repository")
        if not os.path.lexists(path):
            raise UsageError(f"image: {rel} does not exist in {self.root}")
        self._visit(path, rel, name, found)
        if os.path.isdir(path) and not os.path.islink(path):
            for dirpath, dirnames, filenames in os.walk(path, onerror=self._unreadable):
                dirnames[:] = sorted(d for d in dirnames if d not in EXCLUDED)
                for child in sorted([*dirnames, *filenames]):
                    if child in EXCLUDED:
                        continue
                    full = Path(dirpath) / child
                    sub = full.relative_to(path).as_posix()
                    self._visit(full, posixpath.join(rel, sub) if rel != "." else sub,
                                "/".join(p for p in (name, sub) if p), found)

    def _visit(self, path: Path, shown: str, name: str, found: dict[str, Entry]) -> None:
        if not _plain(shown):
            raise UsageError(f"{_escaped(shown)}: a file name that is not UTF-8 or holds a control character "
                             "(a newline, say) cannot go into an image layer: rename it")
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            entry = self._link(path, shown, name)
        elif stat.S_ISDIR(st.st_mode):
            entry = Entry(name, "dir", shown)
        elif stat.S_ISREG(st.st_mode):
            entry = Entry(name, "file", shown, path, bool(st.st_mode & 0o111))
        else:
            raise UsageError(f"{shown}: only files, directories and symlinks can go into an image layer")
        if name:
            found[name] = entry

    def _link(self, path: Path, shown: str, name: str) -> Entry:
        target = os.readlink(path)
        if not _plain(target):
            raise UsageError(f"{shown} -> {_escaped(target)}: a link target that is not UTF-8 or holds a control "
                             "character cannot go into an image layer")
        resolved = Path(os.path.realpath(path))
        written = posixpath.normpath(posixpath.join(posixpath.dirname(shown), target))
        cache = self._cache_dir() if (os.path.isabs(target) or not self._inside(resolved)
                                      or self._inside(resolved, self.root / ".dvc")) else None
        if cache is not None and self._inside(resolved, cache) and resolved.is_file():
            return Entry(name, "file", shown, resolved, bool(resolved.stat().st_mode & 0o111))
        if os.path.isabs(target) and self._inside(resolved):
            raise UsageError(f"{shown} -> {target}: an absolute link target names another file in the image than "
                             "in the repo; make the link relative (only links into the DVC cache dir are followed)")
        if written == ".." or written.startswith("../") or not self._inside(resolved):
            raise UsageError(f"{shown} -> {target}: the link resolves outside the repo ({resolved}); "
                             "symlinks go into images as links, never as the files they point at "
                             "(only links into the DVC cache dir are followed)")
        return Entry(name, "symlink", shown, linkname=target)

    def _unreadable(self, error: OSError) -> None:
        """os.walk's onerror: a directory it cannot list would silently leave the image short (exit 3)."""
        where = Path(os.path.abspath(error.filename or "."))
        shown = where.relative_to(self.root).as_posix() if self._inside(where) else str(where)
        raise EnvironmentProblem(f"{_escaped(shown)}: cannot list this directory ({error.strerror}); "
                                 "every path under an image path must be readable by the build")

    def _cache_dir(self) -> Path | None:
        if not self._cache:
            self._cache.append(self._dvc_cache())
        return self._cache[0]

    def _inside(self, path: Path, top: Path | None = None) -> bool:
        return path.is_relative_to(top if top is not None else self.root)


def _plain(name: str) -> bool:
    """Whether a name can be a tar member's name as every runtime reads it: UTF-8 (no byte os.fsdecode kept as a
    surrogate), no control character (one would split a log line, a message or a tar listing)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in name)


def _escaped(name: str) -> str:
    """A name for a one-line message: undecodable bytes as \\xNN, control characters escaped."""
    text = os.fsencode(name).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
