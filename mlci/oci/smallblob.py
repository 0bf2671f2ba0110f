"""A small blob read whole from any image source (an image config, a signature payload, a scan record): at
most `limit` bytes, refused beyond it before anything is read, and checked against its descriptor (size and
digest), whatever the source verifies on its own (a layout's files are checked here too)."""
from __future__ import annotations

from typing import BinaryIO, Protocol

from mlci.core.errors import EnvironmentProblem
from mlci.oci.manifest import Descriptor, sha256_digest

MAX_CONFIG = 16 << 20  # an image config: its history and labels are KBs; a larger one is refused, not read


class BlobInvalid(EnvironmentProblem):
    """A small blob larger than its limit, or not what its descriptor says; the message names `where`."""


class BlobSource(Protocol):
    def open_blob(self, digest: str) -> BinaryIO:
        """The blob's bytes as a stream."""


def read_small(source: BlobSource, blob: Descriptor, limit: int, where: str) -> bytes:
    """The blob's bytes, when its descriptor's size is at most `limit` and they match its size and digest."""
    if blob.size > limit:
        raise BlobInvalid(f"{where}: {blob.size} bytes, more than the {limit} mlci reads")
    with source.open_blob(blob.digest) as stream:
        data = stream.read(blob.size + 1)
    if len(data) != blob.size:
        raise BlobInvalid(f"{where}: {'more' if len(data) > blob.size else len(data)} bytes where its descriptor "
                          f"says {blob.size}")
    if sha256_digest(data) != blob.digest:
        raise BlobInvalid(f"{where}: blob {blob.digest}: digest did not match")
    return data
