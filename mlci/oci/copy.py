"""Copy an image between any two transports (registry, OCI layout): blobs the destination has are
reused (HEAD, then a cross-repository mount), the rest stream from source to destination with their
digests verified on the way; the manifest — and so the tag — is written last."""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from mlci.core.errors import EnvironmentProblem, UsageError
from mlci.oci.auth import credentials_for
from mlci.oci.layout import Layout
from mlci.oci.progress import track
from mlci.oci.reference import DockerRef, ImageRef
from mlci.oci.registry import DOCKER_LIST, OCI_INDEX, Manifest, NotFound, Registry


class Endpoint(Protocol):
    """One side of a copy."""

    def get_manifest(self, reference: str | None) -> Manifest:
        """A manifest by tag/digest (None: the endpoint's own tag)."""

    def has_blob(self, digest: str) -> bool:
        """Whether the blob is already there."""

    def open_blob(self, digest: str) -> BinaryIO:
        """A verifying stream of the blob."""

    def put_blob(self, digest: str, data: BinaryIO, size: int) -> None:
        """Store a blob."""

    def put_manifest(self, manifest: Manifest, tag: str | None) -> None:
        """Store a manifest; with a tag, point the tag at it."""

    def commit(self) -> None:
        """Make what was written visible where that takes a final step (an archive is packed once)."""

    def check_writable(self) -> None:
        """Before any work: the destination is reachable, accepts the credentials and may be written."""


@dataclass
class CopyResult:
    """What a copy did."""

    digest: str
    copied: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    bytes_copied: int = 0


@dataclass
class RegistryEndpoint:
    """A repository in a registry; `mount_from` names repositories to try a cross-repo mount from."""

    registry: Registry
    repository: str
    mount_from: tuple[str, ...] = ()

    def get_manifest(self, reference: str | None) -> Manifest:
        return self.registry.get_manifest(self.repository, reference or "latest")

    def has_blob(self, digest: str) -> bool:
        if self.registry.blob_exists(self.repository, digest):
            return True
        return any(self.registry.mount_blob(self.repository, digest, source) for source in self.mount_from)

    def open_blob(self, digest: str) -> BinaryIO:
        return self.registry.open_blob(self.repository, digest)

    def put_blob(self, digest: str, data: BinaryIO, size: int) -> None:
        self.registry.upload_blob(self.repository, digest, data, size)

    def put_manifest(self, manifest: Manifest, tag: str | None) -> None:
        self.registry.put_manifest(self.repository, tag or manifest.digest, manifest)

    def commit(self) -> None:
        """Nothing to do: a registry shows each manifest as it is put."""

    def check_writable(self) -> None:
        """GET /v2/ (reachable, credentials accepted), then open and cancel an upload (may push)."""
        self.registry.ping()
        self.registry.check_push(self.repository)


@dataclass
class LayoutEndpoint:
    """An OCI image layout directory."""

    layout: Layout

    def get_manifest(self, reference: str | None) -> Manifest:
        if reference and reference.startswith("sha256:"):
            path = self.layout.blob_path(reference)
            if not path.is_file():
                raise NotFound(f"{self.layout.root}: manifest {reference} not found")
            data = path.read_bytes()
            try:
                media_type = json.loads(data).get("mediaType", "")
            except (ValueError, AttributeError):
                raise EnvironmentProblem(f"{self.layout.root}: blob {reference} is not a manifest") from None
            return Manifest(data, str(media_type), reference)
        if reference and not self.layout.has_tag(reference):
            raise NotFound(f"{self.layout.root}: tag {reference!r} not found in index.json")
        return self.layout.get_manifest(reference)

    def has_blob(self, digest: str) -> bool:
        return self.layout.has_blob(digest)

    def open_blob(self, digest: str) -> BinaryIO:
        return self.layout.open_blob(digest)

    def put_blob(self, digest: str, data: BinaryIO, size: int) -> None:
        self.layout.init()
        self.layout.put_blob(digest, data)

    def put_manifest(self, manifest: Manifest, tag: str | None) -> None:
        self.layout.put_manifest(manifest, tag)

    def commit(self) -> None:
        """Nothing to do: index.json is rewritten atomically on every put."""

    def check_writable(self) -> None:
        """The directory is a layout, or empty, or can be made; and it may be written."""
        check_writable_path(self.layout.root, directory=True)
        if (self.layout.root / "index.json").exists():
            self.layout.check()
        elif self.layout.root.is_dir() and any(self.layout.root.iterdir()):
            raise UsageError(f"{self.layout.root}: not an OCI image layout (no index.json) and not empty; "
                             "name a new or empty directory")


def check_writable_path(path: Path, *, directory: bool) -> None:
    """`path` is (or can be created as) a directory or a file, in a place this process may write."""
    if path.exists() and path.is_dir() != directory:
        raise UsageError(f"{path}: is {'not ' if directory else ''}a directory")
    start = path.absolute() if directory else path.absolute().parent  # a file is replaced by a rename
    existing = next(p for p in (start, *start.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise EnvironmentProblem(f"{path}: cannot write there ({existing} is not a writable directory)")


def open_endpoint(ref: ImageRef, plain_http: tuple[str, ...] = (), ca_bundle: str | None = None
                  ) -> tuple[Endpoint, str | None]:
    """The endpoint for a reference (registry credentials from the auth file) and the tag/digest it names."""
    if isinstance(ref, DockerRef):
        registry = Registry(ref.registry, plain_http=ref.registry in plain_http, ca_bundle=ca_bundle,
                            credentials=credentials_for(ref.registry))
        return RegistryEndpoint(registry, ref.repository), ref.digest or ref.tag
    if ref.transport == "oci-archive":
        from mlci.oci.archive import ArchiveEndpoint

        return ArchiveEndpoint(Path(ref.path)), ref.tag
    return LayoutEndpoint(Layout(Path(ref.path))), ref.tag


def copy(src: Endpoint, src_ref: str | None, dst: Endpoint, dst_tag: str | None) -> CopyResult:
    """Copy one image (or an index and its images); the destination's tag moves last. The caller
    commits `dst` when it has written everything it means to (an archive is packed then)."""
    manifest = src.get_manifest(src_ref)
    result = CopyResult(manifest.digest)
    _copy_manifest(src, dst, manifest, dst_tag, result)
    return result


def _copy_manifest(src: Endpoint, dst: Endpoint, manifest: Manifest, tag: str | None, result: CopyResult) -> None:
    body = json.loads(manifest.data)
    if manifest.media_type in (OCI_INDEX, DOCKER_LIST):
        for child in body.get("manifests", []):
            _copy_manifest(src, dst, src.get_manifest(child["digest"]), None, result)
    else:
        for descriptor in [body["config"], *body.get("layers", [])]:
            digest, size = descriptor["digest"], int(descriptor["size"])
            if dst.has_blob(digest):
                result.reused.append(digest)
                continue
            with _closing(track(src.open_blob(digest), digest, size)) as stream:
                dst.put_blob(digest, stream, size)
            result.copied.append(digest)
            result.bytes_copied += size
    dst.put_manifest(manifest, tag)


@contextmanager
def _closing(stream: BinaryIO) -> Iterator[BinaryIO]:
    try:
        yield stream
    finally:
        stream.close()
