"""An image in any transport turned into what trivy reads: an OCI layout DIRECTORY holding exactly that one
image (trivy's `image --input` takes a layout or a docker-archive, never an oci-archive, and with several
images in a layout it takes the first).

    docker://HOST/REPO[:TAG|@DIGEST]  pulled with mlci's own registry client (the `registries` section:
                                      credentials, CA bundle, plain HTTP, mirrors), blobs verified on the way
    oci-archive:FILE[:TAG]            its members streamed out of the tar (never unpacked whole)
    oci:DIR[:TAG]                     its blobs hard-linked into the scratch layout (copied where a link is
                                      impossible), every blob's digest checked

An index is resolved to one platform (linux/amd64 unless asked). The scratch layout lives in a private temp
directory (on the source layout's filesystem when TMPDIR is elsewhere, so links work) that is removed on every
way out of `prepare_image`: return, error, Ctrl-C or SIGTERM (core/signals.py). Only SIGKILL leaves it behind.
"""
from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mlci.core.errors import EnvironmentProblem
from mlci.core.log import logger
from mlci.core.scratch import scratch_dir
from mlci.oci.copy import LayoutEndpoint, copy, open_source
from mlci.oci.layout import CHUNK, Layout
from mlci.oci.manifest import DOCKER_MANIFEST, OCI_MANIFEST, Descriptor, Manifest, Platform, sha256_digest
from mlci.oci.reference import DockerRef, ImageRef, LayoutRef, parse
from mlci.oci.settings import RegistrySettings
from mlci.oci.transport import ImageSource

DEFAULT_PLATFORM = "linux/amd64"
MAX_INDEX_DEPTH = 4


@dataclass(frozen=True)
class PreparedImage:
    """One image as an OCI layout that trivy (and the model-file scanner) reads.

    `layout`: a layout directory whose index.json has one entry, the image manifest (`manifest_digest`);
    its config and layers are under blobs/sha256/, each verified against its digest. Valid only inside
    `prepare_image`'s block. `reference`: what the user named (str of the parsed reference). `digest`: the
    manifest or index that reference resolved to (what a record is bound to, what promotion moves).
    `manifest_digest`: the platform's image manifest that was scanned (== digest unless an index).
    `source`: the parsed reference; a DockerRef says where referrers are attached (`source.registry`,
    `source.repository`, subject `digest`)."""

    layout: Path
    reference: str
    digest: str
    manifest_digest: str
    manifest: Manifest
    platform: str | None
    source: ImageRef

    @property
    def registry(self) -> DockerRef | None:
        """The registry repository the image came from (None for a layout or an archive)."""
        return self.source if isinstance(self.source, DockerRef) else None

    def config(self) -> Descriptor:
        """The image config's descriptor."""
        return self.manifest.blobs()[0]

    def layers(self) -> list[Descriptor]:
        """The image's layers, base first."""
        return self.manifest.blobs()[1:]

    def open_blob(self, digest: str) -> BinaryIO:
        """A blob of the image (a layer, still compressed as its media type says), for reading."""
        return Layout(self.layout).open_blob(digest)


@contextmanager
def prepare_image(reference: str | ImageRef, *, registries: dict[str, RegistrySettings] | None = None,
                  plain_http: tuple[str, ...] = (), ca_bundle: str | None = None,
                  platform: str = DEFAULT_PLATFORM, workdir: Path | None = None) -> Iterator[PreparedImage]:
    """The image `reference` names, as a one-image OCI layout in a scratch directory (under `workdir`, else the
    temp dir) removed when the block ends. A missing image, registry or layout is exit 3 naming it."""
    ref = parse(reference) if isinstance(reference, str) else reference
    source, tag = open_source(ref, plain_http, ca_bundle, registries)
    top = source.get_manifest(tag)
    manifest, chosen = _platform_manifest(source, top, platform, str(ref))
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
    with scratch_dir("mlci-scan-", workdir or _scratch_parent(ref)) as scratch:
        layout = scratch / "layout"
        if isinstance(ref, LayoutRef) and ref.transport == "oci":
            _link_layout(Layout(Path(ref.path)), Layout(layout), manifest)
        else:
            destination = LayoutEndpoint(Layout(layout))
            copy(source, manifest.digest, destination, None)
            destination.commit()
        yield PreparedImage(layout, str(ref), top.digest, manifest.digest, manifest, chosen, ref)


def _platform_manifest(source: ImageSource, top: Manifest, platform: str, name: str) -> tuple[Manifest, str | None]:
    """The image manifest to scan: `top` itself, or the child of an index (nested ones too) for `platform`."""
    manifest, chosen, depth = top, None, 0
    while manifest.is_index:
        depth += 1
        if depth > MAX_INDEX_DEPTH:
            raise EnvironmentProblem(f"{name}: indexes nested deeper than {MAX_INDEX_DEPTH} levels")
        children = manifest.children()
        child = next((c for c in children if c.platform is not None and _matches(c.platform, platform)), None)
        if child is None:
            offered = sorted({str(c.platform) for c in children if c.platform is not None and c.platform.os
                              and c.platform.os != "unknown"}) or ["none"]
            raise EnvironmentProblem(f"{name}: the index {top.digest} has no {platform} image (it has "
                                     f"{', '.join(offered)})")
        chosen = str(child.platform)
        manifest = source.get_manifest(child.digest)
        if sha256_digest(manifest.data) != child.digest:
            raise EnvironmentProblem(f"{name}: manifest {child.digest}: digest did not match")
    if manifest.media_type not in (OCI_MANIFEST, DOCKER_MANIFEST):
        raise EnvironmentProblem(f"{name}: {manifest.digest} is a {manifest.media_type}, not an image manifest")
    return manifest, chosen


def _matches(offered: Platform, wanted: str) -> bool:
    """Whether an index entry's platform is `wanted` (OS/ARCH[/VARIANT]; no variant asked: any)."""
    os_name, _, rest = wanted.partition("/")
    architecture, _, variant = rest.partition("/")
    return (offered.os == os_name and offered.architecture == architecture
            and (not variant or offered.variant == variant))


def _scratch_parent(ref: ImageRef) -> Path | None:
    """Where the scratch directory goes: the temp dir, unless an `oci:` layout is on another filesystem and
    its parent directory may be written (then beside it, so its blobs can be hard-linked instead of copied)."""
    if not (isinstance(ref, LayoutRef) and ref.transport == "oci"):
        return None
    parent = Path(ref.path).absolute().parent
    try:
        same = os.stat(Path(ref.path) / "blobs").st_dev == os.stat(tempfile.gettempdir()).st_dev
    except OSError:
        return None
    if same or not os.access(parent, os.W_OK | os.X_OK):
        return None
    return parent


def _link_layout(source: Layout, target: Layout, manifest: Manifest) -> None:
    """The manifest's blobs hard-linked from `source` into `target` (copied where linking fails), each checked
    against its digest, then the manifest as the layout's only entry."""
    target.init()
    copied = 0
    for blob in manifest.blobs():
        path = source.blob_path(blob.digest)
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            raise EnvironmentProblem(f"{source.root}: blob {blob.digest} is missing") from None
        if not stat.S_ISREG(mode):
            raise EnvironmentProblem(f"{source.root}: blob {blob.digest} is not a regular file")
        linked = target.blob_path(blob.digest)
        try:
            os.link(path, linked)
        except OSError:  # another filesystem, or not allowed (fs.protected_hardlinks): a verified copy
            with path.open("rb") as stream:
                target.put_blob(blob.digest, stream)
            copied += blob.size
            continue
        _check_blob(linked, blob, source.root)
    if copied:
        logger.info("mlci: copied %.1f MB of %s (no hard link possible); a TMPDIR on its filesystem avoids that",
                    copied / 1e6, source.root)
    target.put_manifest(manifest, None)


def _check_blob(path: Path, blob: Descriptor, where: Path) -> None:
    """The linked file holds what its digest says (a layout is read, not trusted)."""
    hasher = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        while chunk := handle.read(CHUNK):
            hasher.update(chunk)
    if "sha256:" + hasher.hexdigest() != blob.digest:
        path.unlink()
        raise EnvironmentProblem(f"{where}: blob {blob.digest}: digest did not match (the layout is damaged)")
