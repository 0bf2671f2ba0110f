"""The two sides of a copy, shaped like containers/image's types: an ImageSource is read (manifests, blobs),
an ImageDestination is written (blobs, then manifests, the tag last, then commit). Transport-free: layouts,
archives and registries implement them; copy.py moves images between any two."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Protocol

from mlci.core.errors import EnvironmentProblem, UsageError
from mlci.oci.manifest import Descriptor, Manifest

Opener = Callable[[], BinaryIO]


class ImageSource(Protocol):
    """Where an image is read from."""

    def get_manifest(self, reference: str | None) -> Manifest:
        """A manifest by tag/digest (None: the source's own tag)."""

    def open_blob(self, digest: str) -> BinaryIO:
        """A verifying stream of the blob."""


class BlobWriter(Protocol):
    """A blob written as it is produced, its digest and size unknown until the end: hashed while streamed."""

    def write(self, data: bytes) -> int:
        """Append bytes (memory stays bounded: a registry holds at most one chunk)."""

    def finish(self) -> Descriptor:
        """Complete the blob; its descriptor (digest and size of what was written)."""

    def abort(self) -> None:
        """Give the blob up: nothing of it stays (an upload session is cancelled, a temp file removed)."""


class StreamLost(EnvironmentProblem):
    """A streamed blob could not be completed and its bytes cannot be sent again (a registry cancelled the
    upload session): the producer may start the blob over, from its inputs, once."""


class BlobSink(Protocol):
    """Where blobs of unknown digest are streamed (a destination, or a build's staging area)."""

    def blob_writer(self, media_type: str) -> BlobWriter:
        """A blob of unknown digest, streamed in (a layer as it is built); finish() makes it present."""


class ImageDestination(BlobSink, Protocol):
    """Where an image is written: blobs, then manifests (children before the index), the tag last, commit."""

    def check_writable(self) -> None:
        """Before any work: the destination is reachable, accepts the credentials and may be written."""

    def try_reuse_blob(self, blob: Descriptor) -> bool:
        """True when the destination already has the blob, or got it without an upload (a mount)."""

    def put_blob(self, blob: Descriptor, source: Opener) -> int:
        """Store a blob read from `source()` (called again if the upload must restart); returns bytes sent."""

    def put_manifest(self, manifest: Manifest, tag: str | None, *, child: bool = False) -> None:
        """Store a manifest. `child`: one an index points at (stored by digest, no entry of its own); else the
        manifest asked for, under `tag` (or untagged)."""

    def parallel_puts(self) -> int:
        """How many put_blob calls may run at once."""

    def commit(self) -> None:
        """Make what was written visible where that takes a final step (an archive is written once)."""

    def discard(self) -> None:
        """After a failed write, instead of commit: remove what only this write made (a layout directory it
        created, a temp archive). Blobs in a registry or an existing layout stay: unreferenced and harmless."""


class Endpoint(ImageSource, ImageDestination, Protocol):
    """A transport that is read and written (a registry repository, a layout, an archive)."""

    def has_blob(self, digest: str) -> bool:
        """Whether the blob is there (no mount tried)."""



@contextmanager
def discarding(destination: ImageDestination) -> Iterator[None]:
    """Writes to `destination` that, when they fail (an error, Ctrl-C, SIGTERM), discard it before the error goes
    on: a command that fails leaves no layout of its own making behind."""
    try:
        yield
    except BaseException:
        destination.discard()
        raise


def check_writable_path(path: Path, *, directory: bool) -> None:
    """`path` is (or can be created as) a directory or a file, in a place this process may write."""
    if path.exists() and path.is_dir() != directory:
        raise UsageError(f"{path}: is {'not ' if directory else ''}a directory")
    start = path.absolute() if directory else path.absolute().parent  # a file is replaced by a rename
    existing = next(p for p in (start, *start.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise EnvironmentProblem(f"{path}: cannot write there ({existing} is not a writable directory)")
