"""A strict, streaming reader of a bundle's tar: ustar headers, with pax extended headers (path and size only) or
GNU long names, for regular files and directories; every other member type, a link path, a sparse map, a bad
checksum, a non-normal or duplicate name, a member past the end of the data, and anything but zeros after the
end-of-archive blocks refused as met, in one line naming the bundle and the member. Memory stays flat: headers are
read block by block, member data is streamed or skipped."""
from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from mlci.bundle import _names
from mlci.bundle.errors import BundleInvalid

BLOCK = 512
ZERO = bytes(BLOCK)
MAX_EXTENDED = 1 << 20  # a pax header's records (a path of 4096 bytes needs 4 KiB)
SKIP = 1 << 20
_REFUSED = {
    b"1": "a hard link", b"2": "a symbolic link", b"3": "a character device", b"4": "a block device",
    b"6": "a FIFO", b"7": "a contiguous file", b"S": "a sparse file (GNU)", b"V": "a volume label (GNU)",
    b"M": "a multi-volume continuation (GNU)", b"D": "a directory dump (GNU)", b"N": "an old GNU long name",
    b"K": "a long link name (GNU): links are refused", b"g": "a pax global header (it would apply to every member)",
}
_POSIX, _GNU = b"ustar\x0000", b"ustar  \x00"


class Source(Protocol):
    """The tar's bytes, in order."""

    def read(self, n: int) -> bytes: ...

    def skip(self, n: int) -> int: ...


@dataclass(frozen=True)
class Entry:
    """A member as its headers describe it (names checked normal, unique)."""

    name: str
    size: int
    offset: int  # its data's first byte in the tar
    directory: bool


@dataclass
class _Extended:
    """What pax and GNU long-name headers say of the member after them."""

    path: str | None = None
    size: int | None = None
    kinds: str = ""  # the extension headers met: x (pax), L (GNU long name)
    refused: str | None = None  # what a pax header asks that is refused, once the member's name is known


class TarStream:
    """The entries of one pass over a tar; read() gives the current member's bytes, the next entry skips the
    rest. `total` (an uncompressed tar) lets a member larger than the data left be refused at its header."""

    def __init__(self, source: Source, where: str, total: int | None, truncation_hint: str = "") -> None:
        self.source, self.where, self.total, self.hint = source, where, total, truncation_hint
        self.position = 0
        self.names: set[str] = set()
        self.directories: set[str] = set()  # every parent of a name met: the names must form a tree
        self.current: str | None = None  # the member whose data is being read
        self._left = 0
        self._pad = 0

    def refusal(self, what: str, name: str | None = None) -> BundleInvalid:
        """A one-line BundleInvalid naming the bundle and the member (or where in the tar)."""
        name = name if name is not None else self.current
        member = _names.show(name) if name is not None else f"at byte {self.position} of the tar"
        return BundleInvalid(f"{self.where}: {member}: {what}")

    def entries(self) -> Iterator[Entry]:
        while True:
            self._end_member()
            entry = self._next()
            if entry is None:
                return
            yield entry

    def read(self, n: int) -> bytes:
        """Up to `n` bytes of the current member; b"" at its end."""
        n = min(n, self._left)
        if n <= 0:
            return b""
        data = self.source.read(n)
        if not data:
            raise self.refusal(f"truncated: the archive ends {self._left} bytes before this member's end{self.hint}")
        self._left -= len(data)
        self.position += len(data)
        return data

    def _end_member(self) -> None:
        while self._left:
            skipped = self.source.skip(min(self._left, SKIP))
            if not skipped:
                raise self.refusal(f"truncated: the archive ends {self._left} bytes before this member's end"
                                   f"{self.hint}")
            self._left -= skipped
            self.position += skipped
        if self._pad:
            pad = self._exact(self._pad)
            if len(pad) < self._pad:
                raise self.refusal(f"truncated: the archive ends inside this member's padding{self.hint}")
            if pad.count(0) != len(pad):
                raise self.refusal("bytes other than zeros in this member's padding")
            self._pad = 0
        self.current = None

    def _exact(self, n: int) -> bytes:
        """`n` bytes, fewer only at the end."""
        data = self.source.read(n)
        while data and len(data) < n and (more := self.source.read(n - len(data))):
            data += more
        self.position += len(data)
        return data

    def _next(self) -> Entry | None:
        """The next member's entry (its extension headers applied), None after the end-of-archive blocks."""
        extended = _Extended()
        while True:
            block = self._exact(BLOCK)
            if block == ZERO:
                if extended.kinds:
                    raise self.refusal("an extended header with no member after it", extended.path)
                self._end()
                return None
            if len(block) < BLOCK:
                what = "without its end-of-archive blocks" if not block else "inside a header"
                raise self.refusal(f"truncated: the archive ends {what}{self.hint}", extended.path)
            kind, name, raw, size = self._header(block, extended)
            if kind in (b"x", b"L"):
                self._extension(kind, size, extended)
                continue
            if name is None:
                raise self.refusal("a name that is not UTF-8", repr(raw)[2:-1])
            return self._entry(kind, block, name, size, extended)

    def _header(self, block: bytes, extended: _Extended) -> tuple[bytes, str | None, bytes, int]:
        """A header block's type, name (None: not UTF-8), raw name and size, its checksum and magic checked."""
        stored = _number(block[148:156])
        unsigned = sum(block[:148]) + sum(block[156:]) + 8 * 32
        signed = sum(struct.unpack("148b", block[:148])) + sum(struct.unpack("356b", block[156:])) + 8 * 32
        if stored is None or stored not in (unsigned, signed):
            raise self.refusal("not a tar header (bad checksum): a damaged archive or bytes after its end",
                               extended.path)
        magic = block[257:265]
        if magic not in (_POSIX, _GNU):
            raise self.refusal("not a ustar header (a v7 tar or not a tar)", extended.path)
        raw = _field(block[0:100])
        if magic == _POSIX and (prefix := _field(block[345:500])):
            raw = prefix + b"/" + raw
        name = extended.path if extended.path is not None else _text(raw)
        size = _number(block[124:136])
        if size is None:
            raise self.refusal("an invalid size field", name)
        return block[156:157], name, raw, size

    def _extension(self, kind: bytes, size: int, extended: _Extended) -> None:
        """A pax extended header (x) or a GNU long name (L): read, parsed, kept for the next member."""
        label = "a pax header" if kind == b"x" else "a GNU long name"
        if kind.decode() in extended.kinds:
            raise self.refusal(f"two of {label} for one member", extended.path)
        if size > MAX_EXTENDED:
            raise self.refusal(f"{label} of {size} bytes (at most {MAX_EXTENDED})", extended.path)
        data = self._exact(size + (-size % BLOCK))
        if len(data) < size + (-size % BLOCK):
            raise self.refusal(f"truncated: the archive ends inside {label}{self.hint}", extended.path)
        extended.kinds += kind.decode()
        if kind == b"L":
            path = _text(data[:size].split(b"\0", 1)[0])
            if extended.path is not None or path is None:
                raise self.refusal("a GNU long name that is not UTF-8 or comes with a pax path", extended.path)
            extended.path = path
            return
        for key, value in _pax_records(data[:size], lambda what: self.refusal(what, extended.path)):
            if key == "path":
                path = _text(value)
                if path is None or extended.path is not None:
                    raise self.refusal("a pax path that is not UTF-8 or comes with a GNU long name", extended.path)
                extended.path = path
            elif key == "size":
                if not value.isdigit():
                    raise self.refusal(f"a pax size {value[:40]!r} that is not a number", extended.path)
                extended.size = int(value)
            elif key == "linkpath":
                extended.refused = extended.refused or "a pax header that sets a link path: links are refused"
            elif key.startswith("GNU.sparse."):
                extended.refused = extended.refused or "a sparse file (GNU pax sparse map)"
            elif key == "hdrcharset" and value != b"ISO-IR 10646 2000 UTF-8":
                extended.refused = extended.refused or "a pax header whose names are not UTF-8 (hdrcharset)"

    def _entry(self, kind: bytes, block: bytes, name: str, size: int, extended: _Extended) -> Entry:
        """The member after its extension headers, refused unless a safe regular file or directory."""
        if extended.size is not None:
            size = extended.size
        if kind in _REFUSED or extended.refused:
            raise self.refusal(_REFUSED.get(kind) or str(extended.refused), name)
        if kind not in (b"0", b"\0", b"5"):
            raise self.refusal(f"an unknown member type {kind.decode('latin-1')!r}", name)
        directory = kind == b"5"
        if directory and name.endswith("/"):
            name = name[:-1]
        problem = _names.normal_problem(name)
        if problem is None and _field(block[157:257]):
            problem = "a regular file with a link name"
        if problem is None and directory and size:
            problem = f"a directory with {size} bytes of data"
        if problem is None and name in self.names:
            problem = "a duplicate name (a second member of this name)"
        parents = [name[:i] for i, c in enumerate(name) if c == "/"]
        if problem is None and ((not directory and name in self.directories) or
                                any(p in self.names and p not in self.directories for p in parents)):
            problem = "a file and a directory of the same name (the names do not form a tree)"
        if problem is None and self.total is not None and self.position + size > self.total:
            problem = (f"truncated: the member has {size} bytes, the archive {self.total - self.position} left"
                       f"{self.hint}")
        if problem is not None:
            raise self.refusal(problem, name)
        self.names.add(name)
        self.directories.update(parents)
        if directory:
            self.directories.add(name)
        self.current, self._left, self._pad = name, size, -size % BLOCK
        return Entry(name, size, self.position, directory)

    def _end(self) -> None:
        """After the first zero block: a second one, then nothing but zeros to the end."""
        second = self._exact(BLOCK)
        if len(second) < BLOCK:
            raise self.refusal(f"truncated: the archive ends inside its end-of-archive blocks{self.hint}")
        if second != ZERO:
            raise self.refusal("a lone zero block followed by more data (a damaged archive)")
        while data := self.source.read(SKIP):
            if data.count(0) != len(data):
                at = self.position + len(data) - len(data.lstrip(b"\0"))
                raise BundleInvalid(f"{self.where}: bytes after the end of the archive (at byte {at} of the tar)")
            self.position += len(data)


def _pax_records(data: bytes, refuse: Callable[[str], BundleInvalid]) -> Iterator[tuple[str, bytes]]:
    """`LENGTH KEY=VALUE\\n` records, strictly: lengths that add up, UTF-8 keys, each key once."""
    seen: set[str] = set()
    position = 0
    while position < len(data):
        space = data.find(b" ", position, position + 20)
        digits = data[position:space] if space > position else b""
        length = int(digits) if digits.isdigit() else 0
        end = position + length
        if length <= len(digits) + 1 or end > len(data) or data[end - 1:end] != b"\n":
            raise refuse("a malformed pax header record")
        key, equals, value = data[space + 1: end - 1].partition(b"=")
        text = _text(key)
        if not equals or not text:
            raise refuse("a malformed pax header record")
        if text in seen:
            raise refuse(f"a pax header that sets {_names.show(text)} twice")
        seen.add(text)
        yield text, value
        position = end


def _field(raw: bytes) -> bytes:
    """A NUL-terminated header field's bytes."""
    return raw.split(b"\0", 1)[0]


def _text(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _number(raw: bytes) -> int | None:
    """A numeric header field: octal (NUL- or space-terminated), or GNU's base-256 (positive only)."""
    if raw[:1] == b"\x80":
        return int.from_bytes(raw[1:], "big")
    text = _field(raw).strip(b" ")
    if not text:
        return 0
    if text.strip(b"01234567"):
        return None
    return int(text, 8)
