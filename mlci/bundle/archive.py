"""The bundle on disk: written by a Sink (a directory, or one tar, optionally zstd-compressed, optionally split
into parts), read by a BundleReader that refuses unsafe members as it meets them.

Names: a directory bundle is DIR (built as DIR.partial/, renamed at commit); a tar bundle is FILE (`.tar` or
`.tar.zst`), or, split, FILE.000, FILE.001, ... (each part `part_size` bytes but the last; the parts are one byte
stream, cut anywhere). The tar is POSIX pax (ustar + pax headers for long names), regular-file members only, in
the order they were added, bundle.json and bundle.dsse.json first; mtime 0, uid/gid 0, mode 0644: the same
content gives the same bytes."""
from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, Protocol

from mlci.bundle.errors import BundleInvalid
from mlci.bundle.settings import MIN_PART
from mlci.core.errors import EnvironmentProblem, UsageError

Format = Literal["dir", "tar", "tar.zst"]
CHUNK = 1 << 20


class Sink(Protocol):
    """Where export writes a bundle."""

    def add(self, name: str, size: int, sha256: str, chunks: Iterable[bytes]) -> None:
        """One file, its bytes hashed as they are written: a size or sha256 other than announced raises
        EnvironmentProblem naming `name` (the source changed or lied) and nothing is committed."""

    def commit(self) -> list[Path]:
        """Make the bundle visible (atomically: rename; split parts renamed together); the paths written."""

    def abort(self) -> None:
        """Remove everything written (also safe after a partial add)."""


def open_sink(path: Path, fmt: Format, head: tuple[bytes, bytes], *, part_size: int | None = None,
              zstd_level: int = 3) -> Sink:
    """A sink at `path`. `head` = (bundle.json, bundle.dsse.json): first members of a tar; a directory gets
    them last, at commit (a directory without them is never taken for a bundle). `part_size` (tar formats only,
    at least 1 MiB) splits the output into FILE.000, FILE.001, ...; refuses (UsageError) a path that exists."""
    from mlci.bundle import _parts, _sinks

    if part_size is not None and (fmt == "dir" or part_size < MIN_PART):
        raise UsageError(f"{path}: parts of {part_size} bytes: only a tar bundle is split, into parts of at least "
                         f"{MIN_PART} bytes (1 MiB)")
    if not 1 <= zstd_level <= 22:
        raise UsageError(f"{path}: zstd level {zstd_level}: must be 1..22")
    try:
        path.absolute().parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EnvironmentProblem(f"{path}: cannot create its directory: {exc.strerror or exc}") from None
    _parts.check_free(path, part_size is not None)
    if fmt == "dir":
        return _sinks.DirSink(path, head)
    return _sinks.TarSink(path, head, part_size, zstd_level if fmt == "tar.zst" else None)


@dataclass(frozen=True)
class Member:
    """A regular file of a bundle as the reader met it."""

    name: str
    size: int


class BundleReader(Protocol):
    """A bundle being read; unsafe members raise BundleInvalid (mlci.bundle.errors) naming the member."""

    where: str  # the bundle's path, for messages
    random_access: bool  # True: open() works (a directory, an uncompressed tar or its parts, after scan())

    def head(self) -> tuple[bytes, bytes]:
        """bundle.json and bundle.dsse.json (bounded by MAX_MANIFEST / MAX_ENVELOPE): in a tar they must be the
        first two members, in that order; BundleInvalid if absent (no signature: says so)."""

    def members(self) -> Iterator[tuple[Member, BinaryIO]]:
        """Every other member in order (a directory: sorted walk), each with a stream of exactly its bytes (read
        it before the next member). Refused as met: `..`, absolute or non-normal names, names check_member_name
        rejects, links (hard or symbolic), devices, FIFOs, duplicate names, a truncated archive or part, bytes
        after the end, a missing part. Directory entries (a tar made by hand) with safe names are skipped."""

    def open(self, name: str) -> BinaryIO:
        """A member's bytes by name (random_access only; a tar: by the offset members() recorded)."""

    def close(self) -> None:
        """Release files."""


def open_bundle(path: Path) -> BundleReader:
    """The bundle at `path`: a directory, FILE(.tar|.tar.zst) or FILE.000 (its parts found beside it), told apart
    by what it is and its first bytes (zstd's magic), never by trust in the name; UsageError if none."""
    from mlci.bundle import _parts, _readers, _zstd

    try:
        info = os.stat(path)
    except FileNotFoundError:
        first = _parts.part_path(path, 0)
        if not os.path.isfile(first):
            raise UsageError(f"{path}: no bundle there (no directory, file or {first.name})") from None
        path, info = first, os.stat(first)
    except OSError as exc:
        raise EnvironmentProblem(f"{path}: cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        return _readers.DirReader(str(path))
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"{path}: not a bundle (neither a directory nor a regular file)")
    split = path.name.endswith(".000")
    if not split and (start := _parts.first_part(path)) is not None:
        raise UsageError(f"{path}: a part of a split bundle: open its first part, {start}")
    try:
        parts = _parts.find_parts(path) if split else _parts.single(path)
        with path.open("rb") as file:
            magic = file.read(4)
    except OSError as exc:
        raise EnvironmentProblem(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not magic:
        raise BundleInvalid(f"{path}: an empty file, not a bundle (truncated)")
    if magic[:2] == b"\x1f\x8b":
        raise BundleInvalid(f"{path}: gzip-compressed: a bundle is a tar or a zstd-compressed tar")
    return _readers.TarReader(str(path), parts, magic == _zstd.MAGIC, split)
