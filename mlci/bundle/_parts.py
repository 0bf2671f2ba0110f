"""A tar bundle's bytes on disk: one file FILE or the parts FILE.000, FILE.001, ... (one byte stream cut every
`part_size` bytes), written as `.partial` files and renamed at the end, read back as one stream or by range."""
from __future__ import annotations

import io
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from mlci.bundle.errors import BundleInvalid
from mlci.core.errors import EnvironmentProblem, UsageError

PARTIAL = ".partial"
_PART = re.compile(r"\.(\d{3,})")


def part_path(path: Path, number: int) -> Path:
    """FILE.000, FILE.001, ... (three digits, more past 999)."""
    return path.with_name(f"{path.name}.{number:03d}")


def fsync_directory(path: Path) -> None:
    """Make a rename or a new entry in directory `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_free(path: Path, split: bool) -> None:
    """Refuse (UsageError) a bundle path that is taken: FILE, FILE.partial, or any FILE.NNN[.partial] beside it
    (a reader would take a stale part for one of the new bundle's)."""
    taken = [p for p in (path, path.with_name(path.name + PARTIAL)) if os.path.lexists(p)]
    if split:
        taken += sorted(path.parent / name for name in _listdir(path.parent)
                        if _part_number(path.name, name.removesuffix(PARTIAL)) is not None)
    if taken:
        raise UsageError(f"{taken[0]}: already exists; a bundle is written to a new path (remove it, or choose "
                         "another output)")


class Output:
    """The byte stream of a tar bundle into FILE.partial, or FILE.000.partial, FILE.001.partial, ... every
    `part_size` bytes; finish() fsyncs and renames them (FILE.000 last: once it exists, every part does)."""

    def __init__(self, path: Path, part_size: int | None) -> None:
        self.path, self.part_size = path, part_size
        self.written: list[Path] = []  # the .partial files, in order
        self.renamed: list[Path] = []  # final names already given (a rename that failed half-way: abort removes)
        self._file: BinaryIO | None = None
        self._room = 0  # bytes the current part still takes

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        try:
            while view:
                if self._file is None or (self.part_size is not None and self._room == 0):
                    self._next_part()
                assert self._file is not None
                n = len(view) if self.part_size is None else min(len(view), self._room)
                self._file.write(view[:n])
                self._room -= n
                view = view[n:]
        except OSError as exc:
            raise EnvironmentProblem(f"{self.written[-1] if self.written else self.path}: cannot write: "
                                     f"{exc.strerror or exc}") from None

    def _next_part(self) -> None:
        self._close_part()
        final = self.path if self.part_size is None else part_path(self.path, len(self.written))
        partial = final.with_name(final.name + PARTIAL)
        self._file = open(partial, "xb", buffering=1 << 20)
        self.written.append(partial)
        self._room = self.part_size or 0

    def _close_part(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    def finish(self) -> list[Path]:
        """Close, fsync, rename every part (the last first), fsync the directory: the final paths."""
        try:
            if not self.written:  # nothing was written at all: an empty FILE
                self._next_part()
            self._close_part()
            finals = [p.with_name(p.name[: -len(PARTIAL)]) for p in self.written]
            for partial, final in reversed(list(zip(self.written, finals, strict=True))):
                if os.path.lexists(final):
                    raise UsageError(f"{final}: appeared while the bundle was written; not replaced")
                os.rename(partial, final)
                self.renamed.append(final)
            fsync_directory(self.path.absolute().parent)
        except OSError as exc:
            raise EnvironmentProblem(f"{self.path}: cannot finish the bundle: {exc.strerror or exc}") from None
        self.written, self.renamed = [], []
        return finals

    def abort(self) -> None:
        """Remove every .partial file written so far (closing the open one may fail as its writes did: ENOSPC)."""
        if self._file is not None:
            file, self._file = self._file, None
            try:
                file.close()
            except OSError:
                pass  # the bytes it could not flush are removed with it
        for partial in self.written + self.renamed:
            partial.unlink(missing_ok=True)
        self.written, self.renamed = [], []


@dataclass(frozen=True)
class Part:
    """One file of a tar bundle's byte stream."""

    path: Path
    start: int  # its first byte's offset in the stream
    size: int


def single(path: Path) -> list[Part]:
    """An unsplit tar bundle as its one part."""
    return [Part(path, 0, os.stat(path).st_size)]


def first_part(path: Path) -> Path | None:
    """FILE.000 if `path` is FILE.NNN (N > 0) and FILE.000 is beside it."""
    base, dot, _ = path.name.rpartition(".")
    if not dot or _part_number(base, path.name) is None:
        return None
    first = part_path(path.with_name(base), 0)
    return first if os.path.lexists(first) else None


def find_parts(first: Path) -> list[Part]:
    """FILE.000 and the parts beside it: consecutive numbers, each a regular file, every part but the last of
    FILE.000's size and the last not larger nor empty; BundleInvalid naming the part otherwise."""
    base = first.name[: -len(".000")]
    numbers = sorted(n for name in _listdir(first.parent) if (n := _part_number(base, name)) is not None)
    parts: list[Part] = []
    start = 0
    for expected, number in enumerate(numbers):
        path = part_path(first.with_name(base), expected)
        if number != expected:
            raise BundleInvalid(f"{first}: part {path.name} is missing ({part_path(first.with_name(base), number).name}"
                                " exists): the bundle is incomplete")
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise BundleInvalid(f"{first}: part {path.name} is not a regular file")
        parts.append(Part(path, start, info.st_size))
        start += info.st_size
    _check_sizes(first, parts)
    return parts


def _check_sizes(first: Path, parts: Sequence[Part]) -> None:
    size = parts[0].size
    for i, part in enumerate(parts):
        if part.size == 0:
            raise BundleInvalid(f"{first}: part {part.path.name} is empty (a truncated or missing part)")
        if part.size > size:
            raise BundleInvalid(f"{first}: part {part.path.name} has {part.size} bytes, more than the "
                                f"{size} of {parts[0].path.name}: not a part of this bundle")
        if part.size < size and i < len(parts) - 1:
            raise BundleInvalid(f"{first}: part {part.path.name} has {part.size} bytes, not {size} as every "
                                "part but the last: a truncated part")


def _part_number(base: str, name: str) -> int | None:
    """N of a sibling called `base`.NNN, written in canonical form (FILE.0001 is not part 1)."""
    if not name.startswith(base):
        return None
    match = _PART.fullmatch(name[len(base):])
    if match is None or f"{int(match.group(1)):03d}" != match.group(1):
        return None
    return int(match.group(1))


def _listdir(directory: Path) -> list[str]:
    try:
        return os.listdir(directory if str(directory) else ".")
    except FileNotFoundError:
        return []


class Chain:
    """The parts as one sequential stream (read, skip by seeking), each part opened when reached."""

    def __init__(self, parts: Sequence[Part]) -> None:
        self.parts, self.position = parts, 0
        self.total = sum(p.size for p in parts)
        self._index = -1
        self._file: io.FileIO | None = None

    def read(self, n: int) -> bytes:
        """Up to `n` bytes (fewer only at a part's end or the stream's); b"" at the end."""
        while self.position < self.total:
            file = self._at()
            part = self.parts[self._index]
            try:
                data = file.read(min(n, part.start + part.size - self.position))
            except OSError as exc:
                raise EnvironmentProblem(f"{part.path}: cannot read: {exc.strerror or exc}") from None
            if data:
                self.position += len(data)
                return data
            raise BundleInvalid(f"{self.parts[self._index].path}: shorter than when the bundle was opened")
        return b""

    def skip(self, n: int) -> int:
        """Move `n` bytes on (less at the end); the bytes skipped."""
        n = min(n, self.total - self.position)
        self.position += n
        if self._file is not None and n:
            part = self.parts[self._index]
            if self.position < part.start + part.size:
                self._file.seek(self.position - part.start)
            else:
                self._drop()
        return n

    def _at(self) -> io.FileIO:
        """The part holding the current position, open and at it."""
        part = self.parts[self._index] if self._file is not None else None
        if part is None or not part.start <= self.position < part.start + part.size:
            self._drop()
            self._index = next(i for i, p in enumerate(self.parts) if p.start <= self.position < p.start + p.size)
            part = self.parts[self._index]
            self._file = _open(part.path)
            self._file.seek(self.position - part.start)
        assert self._file is not None
        return self._file

    def _drop(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def close(self) -> None:
        self._drop()


class Range(io.RawIOBase):
    """`size` bytes from `offset` of the parts' stream: own file handles (threads read in parallel), each part
    opened when reached, reads across part boundaries."""

    def __init__(self, parts: Sequence[Part], offset: int, size: int) -> None:
        super().__init__()
        self._chain = Chain(parts)
        self._chain.skip(offset)
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        if self._left <= 0:
            return 0
        data = self._chain.read(min(len(target), self._left))
        if not data:
            raise BundleInvalid(f"{self._chain.parts[-1].path}: ends inside a member (shorter than when the "
                                "bundle was opened)")
        target[: len(data)] = data
        self._left -= len(data)
        return len(data)

    def close(self) -> None:
        self._chain.close()
        super().close()


def _open(path: Path) -> io.FileIO:
    try:
        return io.FileIO(path, "r")
    except OSError as exc:
        raise EnvironmentProblem(f"{path}: cannot read: {exc.strerror or exc}") from None
