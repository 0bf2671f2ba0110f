"""Bundles on disk for tests: written through the real sinks, and hostile tars built member by member with
Python's tarfile (links, devices, `..`, pax overrides: what a bundle reader must refuse)."""
from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from mlci.bundle.archive import Format, open_sink

HEAD = (b'{"format":"test"}', b'{"signatures":[]}')


def write_bundle(path: Path, fmt: Format, files: Mapping[str, bytes], head: tuple[bytes, bytes] = HEAD,
                 part_size: int | None = None, chunk: int = 1 << 20) -> list[Path]:
    """A bundle of `files` (in their order) through open_sink; the paths commit() wrote."""
    sink = open_sink(path, fmt, head, part_size=part_size)
    for name, data in files.items():
        sink.add(name, len(data), hashlib.sha256(data).hexdigest(),
                 (data[i: i + chunk] for i in range(0, len(data), chunk)))
    return sink.commit()


def info(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE, **fields: object) -> tarfile.TarInfo:
    """A member header: `kind` a tarfile type (SYMTYPE, CHRTYPE, ...), any TarInfo field (linkname,
    pax_headers, ...) set as given."""
    member = tarfile.TarInfo(name)
    member.size, member.type, member.mtime = size, kind, 0
    for key, value in fields.items():
        setattr(member, key, value)
    return member


def tar_bytes(members: Iterable[tuple[tarfile.TarInfo, bytes | None]], head: tuple[bytes, bytes] | None = HEAD,
              fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """A tar, made by tarfile: the head (unless None) first, then each (header, data) as given."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for name, content in zip(("bundle.json", "bundle.dsse.json"), head or (), strict=False):
            tar.addfile(info(name, len(content)), io.BytesIO(content))
        for member, data in members:
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def zstd_bytes(data: bytes) -> bytes:
    """`data` zstd-compressed (one frame)."""
    from backports import zstd

    return bytes(zstd.compress(data))
