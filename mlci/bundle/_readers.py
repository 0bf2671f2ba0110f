"""The two BundleReaders: a tar (plain or zstd, one file or its parts) read as a stream and, uncompressed, in
place by the offsets a pass recorded; a directory walked through directory descriptors, never following a
symlink."""
from __future__ import annotations

import errno
import io
import os
import stat
import threading
from collections.abc import Iterator
from typing import Any, BinaryIO, cast

from mlci.bundle import _names
from mlci.bundle._parts import Chain, Part, Range
from mlci.bundle._tarread import TarStream
from mlci.bundle._zstd import Decompressing
from mlci.bundle.archive import CHUNK, Member
from mlci.bundle.dsse import MAX_ENVELOPE
from mlci.bundle.errors import BundleInvalid
from mlci.bundle.manifest import ENVELOPE, MANIFEST, MAX_MANIFEST
from mlci.core.errors import EnvironmentProblem, UsageError

_HEAD = ((MANIFEST, MAX_MANIFEST), (ENVELOPE, MAX_ENVELOPE))


class _MemberData(io.RawIOBase):
    """The current member's bytes from a tar pass; unreadable once the pass has moved to the next member."""

    def __init__(self, tar: TarStream, name: str) -> None:
        super().__init__()
        self.tar, self.name = tar, name

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if self.tar.current != self.name or self.closed:
            raise ValueError(f"{self.name}: read after the bundle's next member was reached")
        if size is None or size < 0:
            return b"".join(iter(lambda: self.tar.read(CHUNK), b""))
        return self.tar.read(size)

    def readinto(self, target: Any) -> int:
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)


class TarReader:
    """A tar bundle over `parts` (one file, or FILE.000, ...), zstd-compressed or not."""

    def __init__(self, where: str, parts: list[Part], compressed: bool, split: bool) -> None:
        self.where, self.parts, self.compressed = where, parts, compressed
        self.random_access = not compressed
        self.hint = (f" (the last part, {parts[-1].path.name}, is cut short, or a part after it is missing)"
                     if split else "")
        self._head: tuple[bytes, bytes] | None = None
        self._index: dict[str, tuple[int, int]] | None = None
        self._lock = threading.Lock()

    def _pass(self) -> tuple[TarStream, Chain]:
        """A new pass from the first byte."""
        chain = Chain(self.parts)
        if not self.compressed:
            return TarStream(chain, self.where, chain.total, self.hint), chain
        holder: list[TarStream] = []
        source = Decompressing(chain, lambda what: holder[0].refusal(what + (self.hint if "truncated" in what
                                                                            else "")))
        holder.append(TarStream(source, self.where, None, self.hint))
        return holder[0], chain

    def head(self) -> tuple[bytes, bytes]:
        if self._head is None:
            tar, chain = self._pass()
            try:
                self._read_head(tar, tar.entries())
            finally:
                chain.close()
        assert self._head is not None
        return self._head

    def _read_head(self, tar: TarStream, entries: Iterator[Any]) -> None:
        """bundle.json and bundle.dsse.json, the first two members in that order, bounded; the same bytes on every
        pass (a bundle that changes between passes is refused)."""
        head = []
        for expected, limit in _HEAD:
            entry = next(entries, None)
            if entry is None or entry.name != expected or entry.directory:
                raise tar.refusal(_head_problem(expected, entry.name if entry else None), expected)
            if entry.size > limit:
                raise tar.refusal(f"{entry.size} bytes, more than the {limit} allowed")
            head.append(b"".join(iter(lambda: tar.read(CHUNK), b"")))
        if self._head is not None and self._head != (head[0], head[1]):
            raise BundleInvalid(f"{self.where}: bundle.json or bundle.dsse.json changed since the bundle was first "
                                "read")
        self._head = (head[0], head[1])

    def members(self) -> Iterator[tuple[Member, BinaryIO]]:
        tar, chain = self._pass()
        try:
            entries = tar.entries()
            self._read_head(tar, entries)
            index: dict[str, tuple[int, int]] = {}
            for entry in entries:
                if entry.directory:
                    continue
                problem = _names.file_problem(entry.name)
                if problem is not None:
                    raise tar.refusal(problem)
                index[entry.name] = (entry.offset, entry.size)
                data = _MemberData(tar, entry.name)
                yield Member(entry.name, entry.size), cast(BinaryIO, data)
                data.close()
            if not self.compressed:
                self._index = index
        finally:
            chain.close()

    def open(self, name: str) -> BinaryIO:
        if self.compressed:
            raise UsageError(f"{self.where}: {_names.show(name)}: a compressed bundle is read as a stream, not in "
                             "place")
        with self._lock:
            if self._index is None:
                for _member in self.members():
                    pass
        assert self._index is not None
        if name not in self._index:
            raise BundleInvalid(f"{self.where}: {_names.show(name)}: not in the bundle")
        offset, size = self._index[name]
        return cast(BinaryIO, io.BufferedReader(Range(self.parts, offset, size), CHUNK))

    def close(self) -> None:
        """Nothing stays open between calls (every pass and open() has its own handles)."""


def _head_problem(expected: str, met: str | None) -> str:
    if expected == ENVELOPE:
        what = "the archive ends after bundle.json" if met is None else f"the second member is {_names.show(met)}"
        return f"no signature: {what}, not bundle.dsse.json"
    what = "an empty archive" if met is None else f"the first member is {_names.show(met)}"
    return f"{what}, not bundle.json (bundle.json and bundle.dsse.json come first)"


class _FileData(io.RawIOBase):
    """A directory bundle's file: exactly the `size` bytes it had when opened."""

    def __init__(self, fd: int, size: int, where: str) -> None:
        super().__init__()
        self.fd, self.left, self.where = fd, size, where

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        if self.left <= 0:
            return 0
        data = os.read(self.fd, min(len(target), self.left))
        if not data:
            raise BundleInvalid(f"{self.where}: shorter than when it was opened (changed while read)")
        target[: len(data)] = data
        self.left -= len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self.fd)
        super().close()


_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
_NOFOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


class DirReader:
    """A directory bundle, read in place: every entry by descriptor, relative to its directory's descriptor (a
    symlink swapped in is never followed)."""

    random_access = True

    def __init__(self, path: str) -> None:
        self.where = path
        try:
            self._root = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise EnvironmentProblem(f"{path}: cannot read: {exc.strerror or exc}") from None

    def _refuse(self, name: str, what: str) -> BundleInvalid:
        return BundleInvalid(f"{self.where}: {_names.show(name)}: {what}")

    def head(self) -> tuple[bytes, bytes]:
        head = []
        for name, limit in _HEAD:
            with self._open_file(self._root, name, name) as stream:
                if stream.left > limit:
                    raise self._refuse(name, f"{stream.left} bytes, more than the {limit} allowed")
                head.append(stream.read())
        return head[0], head[1]

    def _open_file(self, directory: int, entry: str, name: str) -> _FileData:
        """Open `entry` of `directory` (the bundle's `name`): a regular file (judged before it is opened: a device
        is never opened), never through a symlink, the same file that was judged."""
        info = self._lstat(directory, entry, name)
        if not stat.S_ISREG(info.st_mode):
            raise self._refuse(name, _why(info))
        try:
            fd = os.open(entry, _NOFOLLOW | os.O_NONBLOCK, dir_fd=directory)
        except OSError as exc:
            raise self._problem(name, exc) from None
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino) or not stat.S_ISREG(opened.st_mode):
            os.close(fd)
            raise self._refuse(name, "replaced while the bundle was read")
        return _FileData(fd, opened.st_size, f"{self.where}: {_names.show(name)}")

    def _lstat(self, directory: int, entry: str, name: str) -> os.stat_result:
        try:
            return os.stat(entry, dir_fd=directory, follow_symlinks=False)
        except OSError as exc:
            raise self._problem(name, exc) from None

    def _problem(self, name: str, exc: OSError) -> Exception:
        """An entry that is absent or vanished (BundleInvalid), a symlink on the way, or unreadable (exit 3)."""
        if isinstance(exc, FileNotFoundError):
            return self._refuse(name, "no signature: bundle.dsse.json is absent" if name == ENVELOPE else "absent")
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            return self._refuse(name, "a symbolic link or a file on the way (a bundle holds regular files only)")
        return EnvironmentProblem(f"{self.where}: {_names.show(name)}: cannot read: {exc.strerror or exc}")

    def members(self) -> Iterator[tuple[Member, BinaryIO]]:
        yield from self._walk(self._root, "")

    def _walk(self, directory: int, prefix: str) -> Iterator[tuple[Member, BinaryIO]]:
        """The files below `directory`, sorted by their full names (a directory sorts as `name/`)."""
        with os.scandir(directory) as scan:
            entries = [(entry.name, self._lstat(directory, entry.name, prefix + entry.name)) for entry in scan]
        entries.sort(key=lambda item: item[0] + "/" if stat.S_ISDIR(item[1].st_mode) else item[0])
        for entry, info in entries:
            name = prefix + entry
            if stat.S_ISDIR(info.st_mode):
                problem = _names.normal_problem(name)
                if problem is not None:
                    raise self._refuse(name, problem)
                try:
                    fd = os.open(entry, _NOFOLLOW | os.O_DIRECTORY, dir_fd=directory)
                except OSError as exc:
                    raise self._problem(name, exc) from None
                try:
                    yield from self._walk(fd, name + "/")
                finally:
                    os.close(fd)
                continue
            if not stat.S_ISREG(info.st_mode):
                raise self._refuse(name, _why(info))
            if not prefix and _names.is_head(name):
                continue
            problem = _names.file_problem(name)
            if problem is not None:
                raise self._refuse(name, problem)
            with self._open_file(directory, entry, name) as stream:
                yield Member(name, stream.left), cast(BinaryIO, stream)

    def open(self, name: str) -> BinaryIO:
        problem = _names.file_problem(name)
        if problem is not None:
            raise self._refuse(name, problem)
        *parents, last = name.split("/")
        directory = self._root
        try:
            for part in parents:
                fd = os.open(part, _NOFOLLOW | os.O_DIRECTORY, dir_fd=directory)
                if directory != self._root:
                    os.close(directory)
                directory = fd
            stream = self._open_file(directory, last, name)
        except OSError as exc:
            raise self._problem(name, exc) from None
        finally:
            if directory != self._root:
                os.close(directory)
        return cast(BinaryIO, io.BufferedReader(stream, CHUNK))

    def close(self) -> None:
        if self._root >= 0:
            os.close(self._root)
            self._root = -1


def _why(info: os.stat_result) -> str:
    """What a bundle entry is that is neither a regular file nor a directory."""
    for check, what in _KINDS:
        if check(info.st_mode):
            return f"{what} (a bundle holds regular files only)"
    if stat.S_ISDIR(info.st_mode):
        return "a directory where a file is expected"
    return "not a regular file (a bundle holds regular files only)"
