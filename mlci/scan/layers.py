"""An image's files as the model scan reads them: each layer blob of an OCI layout streamed once (gzip, zstd
or a plain tar), its digest checked on the way, tar members iterated in order without extracting anything
to disk; whiteouts are passed on, so a file that a later layer removes can be reported as such."""
from __future__ import annotations

import hashlib
import posixpath
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, cast

from mlci.core.errors import EnvironmentProblem
from mlci.oci.layout import Layout
from mlci.oci.manifest import Descriptor, Manifest, check_digest, media_type_of, sha256_digest
from mlci.scan.streams import read_errors

MAX_MANIFEST = 4 * 1024 * 1024  # what registries accept
_CHUNK = 1 << 20


class NotALayer(Exception):
    """A blob whose media type is not a tar layer (an artifact's payload, an encrypted layer)."""


@dataclass(frozen=True)
class Member:
    """One tar entry of a layer: a regular file's content (`stream`, valid until the next member), or an
    entry that only takes a path (a directory, link, device), or a whiteout."""

    path: str  # in the image: "/" + the normalised name
    size: int = 0
    stream: BinaryIO | None = None
    removes: str | None = None  # a whiteout: the path it removes from the layers below
    opaque: bool = False  # an opaque whiteout: `path`'s content in the layers below is hidden


def image_layers(layout: Path, digest: str) -> list[Descriptor]:
    """The layers of the image manifest `digest` in an OCI layout, bottom first (the manifest's digest
    checked)."""
    check_digest(digest, f"{layout}: manifest")
    path = Layout(layout).blob_path(digest)
    try:
        if path.stat().st_size > MAX_MANIFEST:
            raise EnvironmentProblem(f"{layout}: manifest {digest} is larger than {MAX_MANIFEST} bytes")
        data = path.read_bytes()
    except OSError as exc:
        raise EnvironmentProblem(f"{layout}: manifest {digest} cannot be read "
                                 f"({exc.strerror or type(exc).__name__})") from None
    if sha256_digest(data) != digest:
        raise EnvironmentProblem(f"{layout}: manifest {digest}: digest did not match")
    manifest = Manifest(data, media_type_of(data), digest)
    if manifest.is_index:
        raise EnvironmentProblem(f"{layout}: {digest} is an index, not an image manifest: scan one platform's")
    return manifest.blobs()[1:]


def members(layout: Path, layer: Descriptor) -> Iterator[Member]:
    """Every entry of one layer blob, in order. The blob's digest is checked once it was read to its end;
    a blob that is missing, damaged or not a tar is an EnvironmentProblem naming it (NotALayer for a media
    type that is no tar layer)."""
    opener = _decompressor(layer.media_type)
    where = f"{layout}: layer {layer.digest}"
    try:
        raw = Layout(layout).blob_path(layer.digest).open("rb")
    except OSError as exc:
        raise EnvironmentProblem(f"{where} cannot be read ({exc.strerror or type(exc).__name__})") from None
    with raw:
        hashed = _Hashing(raw)
        try:
            with tarfile.open(fileobj=opener(hashed), mode="r|") as tar:
                for info in tar:
                    yield _member(tar, info)
                    tar.members.clear()  # type: ignore[attr-defined]  # tarfile keeps every member read
        except read_errors() as exc:
            raise damaged(where, layer, hashed, exc) from None
        hashed.drain()
        if hashed.digest() != layer.digest:
            raise EnvironmentProblem(f"{where}: digest did not match (got {hashed.digest()}): the layout is damaged")


def damaged(where: str, layer: Descriptor, hashed: _Hashing, exc: BaseException) -> EnvironmentProblem:
    """A layer that failed to decompress or untar: a damaged layout when its digest does not match."""
    try:
        hashed.drain()
        problem = "its digest does not match" if hashed.digest() != layer.digest else f"{type(exc).__name__}: {exc}"
    except read_errors() as again:
        problem = f"{type(again).__name__}: {again}"
    return EnvironmentProblem(f"{where} cannot be read as a tar layer ({problem})")


def _member(tar: tarfile.TarFile, info: tarfile.TarInfo) -> Member:
    path = "/" + posixpath.normpath("/" + info.name).lstrip("/")
    parent, base = posixpath.split(path)
    if base == ".wh..wh..opq":
        return Member(parent, opaque=True)
    if base.startswith(".wh."):
        return Member(path, removes=posixpath.join(parent, base[4:]))
    if info.isreg():
        return Member(path, info.size, cast(BinaryIO, tar.extractfile(info)))
    return Member(path)


def _decompressor(media_type: str) -> Callable[[_Hashing], IO[bytes]]:
    """How a layer of this media type is decompressed (OCI and Docker types; non-distributable too)."""
    if media_type.endswith(("+gzip", ".tar.gzip")):
        import gzip

        return lambda raw: cast(IO[bytes], gzip.GzipFile(fileobj=cast(IO[bytes], raw), mode="rb"))
    if media_type.endswith("+zstd"):
        from mlci.image.layers import zstd_module

        return lambda raw: cast(IO[bytes], zstd_module().ZstdFile(raw))
    if media_type.endswith((".tar", "layer.v1.tar")):
        return lambda raw: cast(IO[bytes], raw)
    raise NotALayer(f"media type {media_type}: not a tar layer, not read")


class _Hashing:
    """Reads through, hashing what passes; drain() reads the rest (the tar's end may leave padding)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw, self.sha = raw, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha.update(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass

    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()
