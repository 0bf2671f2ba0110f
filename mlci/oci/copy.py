"""Copy an image (or an index and every image in it) between any two transports, shaped like
containers/image: an ImageSource is read (manifests, blobs), an ImageDestination is written (blobs, then
manifests, the tag last, then commit). Blobs the destination has are reused (`try_reuse_blob`: HEAD, then a
cross-repository mount); the rest stream from source to destination, several at once (bounded by the
destination's `parallel_puts`), their digests verified on the way. Children of an index are written before
the index; only the manifest that was asked for gets a top-level entry (a tag)."""
from __future__ import annotations

import os
import shutil
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from mlci.core.errors import EnvironmentProblem, UsageError
from mlci.core.log import logger
from mlci.oci.layout import Layout
from mlci.oci.manifest import Descriptor, Manifest, NotFound, media_type_of, sha256_digest
from mlci.oci.progress import Progress
from mlci.oci.reference import DockerRef, ImageRef
from mlci.oci.registry import Registry
from mlci.oci.settings import DEFAULT_CONCURRENCY, RegistryOptions, RegistrySettings, options_for
from mlci.oci.transport import BlobWriter, ImageDestination, Opener, check_writable_path
from mlci.oci.transport import Endpoint as Endpoint  # re-exported with ImageSource: the build's types
from mlci.oci.transport import ImageSource as ImageSource


@dataclass
class CopyResult:
    """What a copy did."""

    digest: str
    copied: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    bytes_copied: int = 0
    bytes_sent: int = 0  # what went over the wire, re-sent chunks included


@dataclass
class RegistryEndpoint:
    """A repository in a registry; `mount_from` names repositories to try a cross-repo mount from."""

    registry: Registry
    repository: str
    mount_from: tuple[str, ...] = ()
    concurrency: int = DEFAULT_CONCURRENCY

    def get_manifest(self, reference: str | None) -> Manifest:
        return self.registry.get_manifest(self.repository, reference or "latest")

    def has_blob(self, digest: str) -> bool:
        return self.registry.blob_exists(self.repository, digest)

    def try_reuse_blob(self, blob: Descriptor) -> bool:
        """HEAD the blob, then try a mount from each of `mount_from`."""
        if self.registry.blob_exists(self.repository, blob.digest):
            return True
        return any(self.registry.mount_blob(self.repository, blob.digest, source) for source in self.mount_from)

    def open_blob(self, digest: str) -> BinaryIO:
        return self.registry.open_blob(self.repository, digest)

    def put_blob(self, blob: Descriptor, source: Opener) -> int:
        return self.registry.upload_blob(self.repository, blob.digest, blob.size, source)

    def blob_writer(self, media_type: str) -> BlobWriter:
        return self.registry.blob_writer(self.repository, media_type)

    def put_manifest(self, manifest: Manifest, tag: str | None, *, child: bool = False) -> None:
        self.registry.put_manifest(self.repository, (None if child else tag) or manifest.digest, manifest)

    def parallel_puts(self) -> int:
        return self.concurrency

    def commit(self) -> None:
        """Nothing to do: a registry shows each manifest as it is put."""

    def discard(self) -> None:
        """Nothing to remove: blobs already pushed are content-addressed, and the registry's GC collects them."""

    def check_writable(self) -> None:
        """GET /v2/ (reachable, credentials accepted), then open and cancel an upload (may push)."""
        self.registry.ping()
        self.registry.check_push(self.repository)


@dataclass
class MirroredSource:
    """Pulls from the first of `endpoints` (mirrors in order, then the host) that has the manifest; its blobs
    then come from the same place (a mirror that has the manifest but not a blob falls through)."""

    endpoints: list[RegistryEndpoint]

    def get_manifest(self, reference: str | None) -> Manifest:
        last: Exception | None = None
        for endpoint in self.endpoints:
            try:
                manifest = endpoint.get_manifest(reference)
            except EnvironmentProblem as exc:  # not found there, or that mirror is down: the next one
                if endpoint is not self.endpoints[-1]:
                    logger.info("mlci: mirror %s: %s; trying the next", endpoint.registry.host, exc)
                last = exc
                continue
            self.endpoints.remove(endpoint)
            self.endpoints.insert(0, endpoint)
            return manifest
        assert last is not None
        raise last

    def open_blob(self, digest: str) -> BinaryIO:
        for endpoint in self.endpoints[:-1]:
            if endpoint.has_blob(digest):
                return endpoint.open_blob(digest)
        return self.endpoints[-1].open_blob(digest)


@dataclass
class LayoutEndpoint:
    """An OCI image layout directory."""

    layout: Layout
    fresh: bool = field(init=False)  # the directory did not exist when opened: discard() may remove it
    _put: set[str] = field(init=False, default_factory=set)  # the manifests this endpoint put

    def __post_init__(self) -> None:
        self.fresh = not os.path.lexists(self.layout.root)

    def get_manifest(self, reference: str | None) -> Manifest:
        if reference and reference.startswith("sha256:"):
            if not os.path.lexists(self.layout.blob_path(reference)):
                raise NotFound(f"{self.layout.root}: manifest {reference} not found")
            data = self.layout.read_manifest(reference)
            if sha256_digest(data) != reference:
                raise EnvironmentProblem(f"{self.layout.root}: manifest {reference}: digest did not match")
            return Manifest(data, media_type_of(data), reference)
        if not os.path.lexists(self.layout.root):
            raise NotFound(f"{self.layout.root}: no OCI image layout there (the directory does not exist)")
        if reference and not self.layout.has_tag(reference):
            raise NotFound(f"{self.layout.root}: tag {reference!r} not found in index.json")
        return self.layout.get_manifest(reference)

    def has_blob(self, digest: str) -> bool:
        return self.layout.has_blob(digest)

    def try_reuse_blob(self, blob: Descriptor) -> bool:
        return self.layout.has_blob(blob.digest)

    def open_blob(self, digest: str) -> BinaryIO:
        return self.layout.open_blob(digest)

    def put_blob(self, blob: Descriptor, source: Opener) -> int:
        self.layout.init()
        with source() as stream:
            return self.layout.put_blob(blob.digest, stream)

    def blob_writer(self, media_type: str) -> BlobWriter:
        self.layout.init()
        return self.layout.blob_writer(media_type)

    def put_manifest(self, manifest: Manifest, tag: str | None, *, child: bool = False) -> None:
        self._put.add(manifest.digest)
        self.layout.put_manifest(manifest, tag, child=child)

    def put_referrer(self, manifest: Manifest, entry: Descriptor) -> None:
        """A referrer (index.json lists it untagged, with its artifactType)."""
        self._put.add(manifest.digest)
        self.layout.put_referrer(manifest, entry)

    def parallel_puts(self) -> int:
        return DEFAULT_CONCURRENCY

    def commit(self) -> None:
        """Nothing to do: index.json is rewritten atomically on every put."""

    def discard(self) -> None:
        """Remove the directory this endpoint created, unless index.json names a manifest it did not put (another
        writer's, which keeps it)."""
        root = self.layout.root
        if not self.fresh or not root.is_dir():
            return
        named = {str(e.get("digest")) for e in self.layout.entries()} if (root / "index.json").exists() else set()
        if named <= self._put:
            shutil.rmtree(root, ignore_errors=True)

    def check_writable(self) -> None:
        """The directory is a layout, or empty, or can be made; and it may be written."""
        check_writable_path(self.layout.root, directory=True)
        if (self.layout.root / "index.json").exists():
            self.layout.check()
        elif self.layout.root.is_dir() and any(self.layout.root.iterdir()):
            raise UsageError(f"{self.layout.root}: not an OCI image layout (no index.json) and not empty; "
                             "name a new or empty directory")


def open_registry(options: RegistryOptions) -> Registry:
    """A client for one host with its resolved options (credentials looked up now)."""
    if options.ca_bundle and not Path(options.ca_bundle).is_file():
        raise UsageError(f"registries.{options.host}.ca_bundle: {options.ca_bundle}: not found (or not a file)")
    return Registry(options.host, plain_http=options.plain_http, ca_bundle=options.ca_bundle,
                    credentials=options.credentials(), chunk_size=options.chunk_size)


def open_endpoint(ref: ImageRef, plain_http: tuple[str, ...] = (), ca_bundle: str | None = None,
                  registries: dict[str, RegistrySettings] | None = None) -> tuple[Endpoint, str | None]:
    """The read-write endpoint for a reference and the tag/digest it names. Registry options come from
    `registries` (plain_http/ca_bundle: the deprecated image.* keys, still honoured)."""
    if isinstance(ref, DockerRef):
        options = options_for(ref.registry, registries, plain_http, ca_bundle)
        endpoint = RegistryEndpoint(open_registry(options), ref.repository, concurrency=options.concurrency)
        return endpoint, ref.digest or ref.tag
    if ref.transport == "oci-archive":
        from mlci.oci.archive import ArchiveEndpoint

        return ArchiveEndpoint(Path(ref.path)), ref.tag
    return LayoutEndpoint(Layout(Path(ref.path))), ref.tag


def open_source(ref: ImageRef, plain_http: tuple[str, ...] = (), ca_bundle: str | None = None,
                registries: dict[str, RegistrySettings] | None = None) -> tuple[ImageSource, str | None]:
    """Like open_endpoint, for pulls only: a registry with `mirrors` is read from its mirrors first."""
    endpoint, reference = open_endpoint(ref, plain_http, ca_bundle, registries)
    if not isinstance(ref, DockerRef) or not isinstance(endpoint, RegistryEndpoint):
        return endpoint, reference
    mirrors = options_for(ref.registry, registries, plain_http, ca_bundle).mirrors
    if not mirrors:
        return endpoint, reference
    chain = []
    for mirror in mirrors:
        host, _, prefix = mirror.partition("/")
        options = options_for(host, registries, plain_http, ca_bundle)
        repository = f"{prefix}/{ref.repository}" if prefix else ref.repository
        chain.append(RegistryEndpoint(open_registry(options), repository, concurrency=options.concurrency))
    return MirroredSource([*chain, endpoint]), reference


def copy(src: ImageSource, src_ref: str | None, dst: ImageDestination, dst_tag: str | None) -> CopyResult:
    """Copy one image, or an index with every image in it: all blobs (at most the destination's parallel_puts()
    and a registry source's concurrency at once), then the child manifests, then the manifest asked for under
    `dst_tag` (last). The caller commits `dst` when it has written everything it means to (an archive is
    written then)."""
    top = src.get_manifest(src_ref)
    manifests = manifest_tree(src, top)  # children first, each once, the top one last
    blobs: dict[str, Descriptor] = {}
    for manifest in manifests:
        for blob in manifest.blobs():
            blobs.setdefault(blob.digest, blob)
    result = CopyResult(top.digest)
    with Progress(top.digest, [b.size for b in blobs.values()]) as progress:
        _copy_blobs(src, dst, list(blobs.values()), result, progress)
    for manifest in manifests[:-1]:
        dst.put_manifest(manifest, None, child=True)
    dst.put_manifest(top, dst_tag)
    return result


def copy_blobs(src: ImageSource, dst: ImageDestination, blobs: list[Descriptor], progress: Progress) -> CopyResult:
    """Copy the blobs `dst` lacks, as copy() does (the caller enters `progress`; its cancel() stops them)."""
    result = CopyResult("")
    _copy_blobs(src, dst, blobs, result, progress)
    return result


def manifest_tree(src: ImageSource, top: Manifest) -> list[Manifest]:
    """Every manifest under `top` (depth first, children before parents, each once), then `top`."""
    order: list[Manifest] = []
    seen: set[str] = set()

    def visit(manifest: Manifest, depth: int) -> None:
        if depth > 4:
            raise EnvironmentProblem(f"manifest {top.digest}: indexes nested deeper than 4 levels")
        for child in manifest.children():
            if child.digest not in seen:
                seen.add(child.digest)
                visit(src.get_manifest(child.digest), depth + 1)
        order.append(manifest)

    visit(top, 0)
    return order


def _parallel_gets(src: ImageSource) -> int:
    """How many blobs a source gives at once: a registry's `concurrency` (the least of a mirror chain's)."""
    if isinstance(src, RegistryEndpoint):
        return src.concurrency
    if isinstance(src, MirroredSource):
        return min(e.concurrency for e in src.endpoints)
    return DEFAULT_CONCURRENCY


def _copy_blobs(src: ImageSource, dst: ImageDestination, blobs: list[Descriptor], result: CopyResult,
                progress: Progress) -> None:
    def one(blob: Descriptor) -> tuple[Descriptor, bool, int]:
        if dst.try_reuse_blob(blob):
            progress.skipped(blob)
            return blob, True, 0
        sent = dst.put_blob(blob, lambda: progress.track(src.open_blob(blob.digest), blob))
        progress.finished(blob)
        return blob, False, sent

    workers = max(1, min(dst.parallel_puts(), _parallel_gets(src), len(blobs)))
    if workers == 1:
        outcomes = [one(blob) for blob in blobs]
    else:
        pool = ThreadPoolExecutor(workers, thread_name_prefix="mlci-blob")
        futures = [pool.submit(one, blob) for blob in blobs]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((f for f in futures if f.done() and not f.cancelled() and f.exception() is not None), None)
            if failed is not None:  # the first failure is the error; the others stop within one chunk
                progress.cancel()
                failed.result()
            outcomes = [f.result() for f in futures]
        except BaseException:  # Ctrl-C or SIGTERM in the main thread: stop the workers too, then go on unwinding
            progress.cancel()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    for blob, reused, sent in outcomes:
        if reused:
            result.reused.append(blob.digest)
        else:
            result.copied.append(blob.digest)
            result.bytes_copied += blob.size
            result.bytes_sent += sent
