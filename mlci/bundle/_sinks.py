"""The sinks export writes a bundle into: a directory (DIR.partial/, the head written last, renamed to DIR) or a
POSIX pax tar (optionally through zstd, optionally cut into parts), every member hashed and counted as written."""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mlci.bundle import _names, _zstd
from mlci.bundle._parts import PARTIAL, Output, fsync_directory
from mlci.bundle.manifest import ENVELOPE, MANIFEST
from mlci.core.errors import EnvironmentProblem, UsageError

BLOCK = tarfile.BLOCKSIZE
END = bytes(2 * BLOCK)  # the end-of-archive blocks; no padding to a 10 KiB record after them


def header(name: str, size: int) -> bytes:
    """A regular file's pax header: fixed metadata (mtime 0, uid/gid 0, no owner names, 0644), so the same
    member gives the same bytes; a pax extended header only for what ustar cannot hold (a long name, a size
    of 8 GiB or more)."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = size, 0, 0o644, 0, 0, "", ""
    info.type = tarfile.REGTYPE
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


def padding(size: int) -> bytes:
    """The zeros that fill a member's data up to a whole block."""
    return bytes(-size % BLOCK)


class _Member:
    """One add(): checks the announced name, then counts and hashes each chunk before it is written."""

    def __init__(self, where: Path, names: set[str], name: str, size: int, sha256: str) -> None:
        problem = _names.file_problem(name) if not _names.is_head(name) else "the head is written by the sink"
        if problem is None and name in names:
            problem = "added twice"
        if problem is None and (size < 0 or len(sha256) != 64 or sha256.strip("0123456789abcdef")):
            problem = f"an announced size {size} or sha256 {sha256!r} that cannot be"
        if problem:
            raise UsageError(f"{where}: cannot add {_names.show(name)}: {problem}")
        names.add(name)
        self.where, self.name, self.size, self.sha256 = where, name, size, sha256
        self.count, self.hasher = 0, hashlib.sha256()

    def stream(self, chunks: Iterable[bytes], write: Callable[[bytes], Any]) -> None:
        for chunk in chunks:
            self.count += len(chunk)
            if self.count > self.size:
                self._mismatch(f"more than the {self.size} bytes announced")
            self.hasher.update(chunk)
            write(chunk)
        if self.count != self.size:
            self._mismatch(f"{self.count} bytes, not the {self.size} announced")
        got = self.hasher.hexdigest()
        if got != self.sha256:
            self._mismatch(f"sha256 {got}, not the {self.sha256} announced")

    def _mismatch(self, what: str) -> None:
        raise EnvironmentProblem(f"{self.where}: {_names.show(self.name)}: {what} (the source changed while it was "
                                 "read, or gave other bytes than it said); the bundle is not written")


class _Base:
    """What both sinks share: one add() at a time, and a sink whose add() failed is never committed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.names: set[str] = set()
        self.failed: str | None = None
        self.done = False

    def add(self, name: str, size: int, sha256: str, chunks: Iterable[bytes]) -> None:
        if self.done:
            raise UsageError(f"{self.path}: the bundle is already {'committed' if self.failed is None else 'aborted'}")
        if self.failed is not None:
            raise UsageError(f"{self.path}: not written: {self.failed} failed")
        member = _Member(self.path, self.names, name, size, sha256)
        try:
            self._add(member, chunks)
        except BaseException:
            self.failed = _names.show(name)
            raise

    def _add(self, member: _Member, chunks: Iterable[bytes]) -> None:
        raise NotImplementedError

    def _check_commit(self) -> None:
        if self.failed is not None:
            raise EnvironmentProblem(f"{self.path}: not written: adding {self.failed} failed")
        if self.done:
            raise UsageError(f"{self.path}: already committed")


class TarSink(_Base):
    """A pax tar: bundle.json and bundle.dsse.json first, then each member as added, the end blocks at commit;
    into the parts of `Output`, through zstd when `zstd_level` is given (streaming: memory stays flat)."""

    def __init__(self, path: Path, head: tuple[bytes, bytes], part_size: int | None, zstd_level: int | None) -> None:
        super().__init__(path)
        self.out = Output(path, part_size)
        self.compressor: Any = None if zstd_level is None else _zstd.compressor(zstd_level)
        try:
            for name, data in zip((MANIFEST, ENVELOPE), head, strict=True):
                self._write(header(name, len(data)) + data + padding(len(data)))
        except BaseException:
            self.abort()
            raise

    def _write(self, data: bytes) -> None:
        if self.compressor is not None:
            data = self.compressor.compress(data)
        if data:
            self.out.write(data)

    def _add(self, member: _Member, chunks: Iterable[bytes]) -> None:
        self._write(header(member.name, member.size))
        member.stream(chunks, self._write)
        self._write(padding(member.size))

    def commit(self) -> list[Path]:
        self._check_commit()
        self._write(END)
        if self.compressor is not None:
            self.out.write(self.compressor.flush())
        paths = self.out.finish()
        self.done = True
        return paths

    def abort(self) -> None:
        self.out.abort()
        if not self.done:
            self.failed, self.done = self.failed or "abort", True


def _writes(data: bytes) -> Callable[[Callable[[bytes], Any]], None]:
    """A fill for _write_file of bytes at hand."""
    def fill(write: Callable[[bytes], Any]) -> None:
        write(data)
    return fill


class DirSink(_Base):
    """A directory: DIR.partial/ filled as members come, bundle.json and its signature written last, everything
    fsynced, renamed to DIR at commit (a directory without its head is never taken for a bundle)."""

    def __init__(self, path: Path, head: tuple[bytes, bytes]) -> None:
        super().__init__(path)
        self.head = head
        self.root = path.with_name(path.name + PARTIAL)
        try:
            self.root.mkdir()
        except OSError as exc:
            raise EnvironmentProblem(f"{self.root}: cannot create: {exc.strerror or exc}") from None
        self.directories: set[Path] = {self.root}

    def _add(self, member: _Member, chunks: Iterable[bytes]) -> None:
        target = self.root / member.name
        for parent in reversed(target.relative_to(self.root).parents[:-1]):
            directory = self.root / parent
            if directory not in self.directories:
                self._call(directory.mkdir, member.name)
                self.directories.add(directory)
        self._write_file(target, member.name, lambda write: member.stream(chunks, write))

    def _write_file(self, target: Path, name: str, fill: Callable[[Callable[[bytes], Any]], None]) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = self._call(lambda: os.open(target, flags, 0o666), name)
        with open(fd, "wb", buffering=1 << 20) as file:
            fill(lambda data: self._call(lambda: file.write(data), name))
            self._call(file.flush, name)
            self._call(lambda: os.fsync(fd), name)

    def _call(self, action: Callable[[], Any], name: str) -> Any:
        try:
            return action()
        except OSError as exc:
            raise EnvironmentProblem(f"{self.root}: writing {_names.show(name)}: {exc.strerror or exc}") from None

    def commit(self) -> list[Path]:
        self._check_commit()
        for name, data in zip((MANIFEST, ENVELOPE), self.head, strict=True):
            self._write_file(self.root / name, name, _writes(data))
        if os.path.lexists(self.path):
            raise UsageError(f"{self.path}: appeared while the bundle was written; not replaced")
        try:
            for directory in sorted(self.directories, key=lambda d: len(d.parts), reverse=True):
                fsync_directory(directory)
            os.rename(self.root, self.path)
            fsync_directory(self.path.absolute().parent)
        except OSError as exc:
            raise EnvironmentProblem(f"{self.path}: cannot finish the bundle: {exc.strerror or exc}") from None
        self.done = True
        return [self.path]

    def abort(self) -> None:
        if not (self.done and self.failed is None):
            shutil.rmtree(self.root, ignore_errors=True)
            self.failed, self.done = self.failed or "abort", True
