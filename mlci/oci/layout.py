"""An OCI image layout directory (`oci:DIR[:TAG]`): blobs are written to a temp file in the layout,
hashed while written, fsynced and renamed to `blobs/sha256/<hex>` only when the digest matches; the
tag (index.json) is written last, atomically, under a lock on the layout (jobs may share one). One
manifest may carry any number of tags (one index entry per tag, as the image-spec allows). Files get the
mode the umask gives, like any new file."""
from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from mlci.core import jsonsafe
from mlci.core.bounded import open_regular, read_bounded
from mlci.core.errors import EnvironmentProblem
from mlci.core.fsutil import atomic_write
from mlci.oci.manifest import MAX_MANIFEST, OCI_INDEX, REF_NAME, Descriptor, Manifest, check_digest, sha256_digest

LAYOUT_VERSION = '{"imageLayoutVersion":"1.0.0"}'
CHUNK = 1 << 20
MAX_INDEX = 64 << 20  # index.json: one entry per tag and referrer; a larger one is refused, not read


def published_mode() -> int:
    """The mode `open()` gives a new file under the current umask (0644 under umask 022): for files a
    user reads after mlci wrote them; temp files start at 0600 and get this before their rename."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


class Layout:
    """One OCI image layout on disk."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def init(self) -> None:
        """Create the layout if it does not exist (oci-layout, empty index.json, blobs/sha256/)."""
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        with _locked(self.root):
            if not (self.root / "oci-layout").exists():
                atomic_write(self.root / "oci-layout", LAYOUT_VERSION)
            if not (self.root / "index.json").exists():
                self._write_index({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})

    def blob_path(self, digest: str) -> Path:
        """Where a blob lives."""
        algorithm, _, hexdigest = check_digest(digest, f"{self.root}: blob").partition(":")
        return self.root / "blobs" / algorithm / hexdigest

    def has_blob(self, digest: str) -> bool:
        """Whether the blob is present."""
        return self.blob_path(digest).is_file()

    def put_blob(self, digest: str, data: BinaryIO) -> int:
        """Write a blob, verifying its digest as it is written; nothing keeps its name unless it matches."""
        target = self.blob_path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
        hasher, size = hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb") as handle:
                while chunk := data.read(CHUNK):
                    hasher.update(chunk)
                    handle.write(chunk)
                    size += len(chunk)
                handle.flush()
                os.fsync(handle.fileno())
                os.fchmod(handle.fileno(), published_mode())
            got = "sha256:" + hasher.hexdigest()
            if got != digest:
                raise EnvironmentProblem(f"{self.root}: blob {digest}: digest did not match, got {got}")
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return size

    def blob_writer(self, media_type: str) -> BlobFile:
        """A blob of unknown digest: a temp file in blobs/sha256/, hashed as written, renamed at finish()."""
        directory = self.root / "blobs" / "sha256"
        directory.mkdir(parents=True, exist_ok=True)
        return BlobFile(directory, media_type)

    def open_blob(self, digest: str) -> BinaryIO:
        """A blob for reading (a regular file: a FIFO or device under a blob's name is refused, not waited on)."""
        return open_regular(self.blob_path(digest), f"{self.root}: blob {digest}")

    def get_manifest(self, tag: str | None) -> Manifest:
        """The manifest tagged `tag` (or the only one when tag is None)."""
        entry = find_entry(self._index()["manifests"], tag, self.root)
        try:
            media_type = str(entry["mediaType"])
            data = self.read_manifest(str(entry["digest"]))
        except KeyError as exc:
            raise EnvironmentProblem(f"{self.root}: index.json entry for {tag or 'the image'} is broken: "
                                     f"{exc.__class__.__name__}") from None
        if sha256_digest(data) != entry["digest"]:
            raise EnvironmentProblem(f"{self.root}: manifest {entry['digest']}: digest did not match")
        return Manifest(data, media_type, entry["digest"])

    def read_manifest(self, digest: str) -> bytes:
        """A manifest blob's bytes (a regular file of at most MAX_MANIFEST; its digest is the caller's to check)."""
        return read_bounded(self.blob_path(digest), MAX_MANIFEST, f"{self.root}: manifest {digest}")

    def check(self) -> None:
        """index.json is a readable OCI image index (EnvironmentProblem naming it otherwise)."""
        self._index()

    def has_tag(self, tag: str) -> bool:
        """Whether index.json names `tag` (False for a layout that does not exist yet)."""
        if not (self.root / "index.json").exists():
            return False
        return has_ref(self._index()["manifests"], tag)

    def tags(self) -> list[str]:
        """The tags index.json names (none for a layout that does not exist yet)."""
        if not (self.root / "index.json").exists():
            return []
        return [name for entry in self._index()["manifests"] if (name := _ref_name(entry)) is not None]

    def put_manifest(self, manifest: Manifest, tag: str | None, *, child: bool = False) -> str:
        """Store the manifest blob, then point the tag at it in index.json (last, atomically). Other tags
        of the same manifest stay; without a tag, the manifest is listed once (untagged) if not yet listed.
        A `child` (a manifest an index points at) is stored as a blob only: no index.json entry."""
        self.init()
        if not self.has_blob(manifest.digest):
            self.put_blob(manifest.digest, io.BytesIO(manifest.data))
        if child:
            return manifest.digest
        with _locked(self.root):  # another job may tag into the same layout: no tag of either is lost
            index = self._index()
            entries = with_entry(index["manifests"], manifest, tag)
            if entries is not None:
                index["manifests"] = entries
                self._write_index(index)
            return manifest.digest

    def put_referrer(self, manifest: Manifest, entry: Descriptor) -> bool:
        """Store a referrer (a manifest with a `subject`) and list it in index.json, untagged, as `entry` says
        (its artifactType and annotations, as the referrers API would); False when it was listed already."""
        self.init()
        if not self.has_blob(manifest.digest):
            self.put_blob(manifest.digest, io.BytesIO(manifest.data))
        with _locked(self.root):
            index = self._index()
            if any(e.get("digest") == manifest.digest for e in index["manifests"]):
                return False
            index["manifests"] = [*index["manifests"], entry.to_json()]
            self._write_index(index)
            return True

    def entries(self) -> list[dict[str, Any]]:
        """index.json's descriptors, as they are (each a JSON object; EnvironmentProblem when it is not an index)."""
        return list(self._index()["manifests"])

    def _index(self) -> dict[str, Any]:
        path = self.root / "index.json"
        if not os.path.lexists(path):
            raise EnvironmentProblem(f"{self.root}: not an OCI image layout (no index.json)")
        return parse_index(read_bounded(path, MAX_INDEX, str(path)), path)

    def _write_index(self, index: dict[str, Any]) -> None:
        atomic_write(self.root / "index.json", json.dumps(index, separators=(",", ":")))


class HashedTemp:
    """A blob of unknown digest streamed into a temp file in `directory`, hashed on the way; abort() removes
    it. Subclasses say where it goes on finish()."""

    def __init__(self, directory: Path, media_type: str, prefix: str = ".tmp-") -> None:
        self.directory, self.media_type = directory, media_type
        fd, tmp = tempfile.mkstemp(prefix=prefix, dir=directory)
        self.path: Path | None = Path(tmp)
        self.handle = os.fdopen(fd, "wb")
        self.sha, self.size = hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.handle.write(data)

    def abort(self) -> None:
        self.handle.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


class BlobFile(HashedTemp):
    """A layout's streamed blob: finish() fsyncs it and renames it to its digest."""

    def finish(self) -> Descriptor:
        descriptor = self._close()
        self._rename(descriptor.digest)
        return descriptor

    def _close(self) -> Descriptor:
        """Fsynced, given its published mode and closed, still under its temp name."""
        try:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            os.fchmod(self.handle.fileno(), published_mode())
            self.handle.close()
        except BaseException:
            self.abort()
            raise
        return Descriptor(self.media_type, "sha256:" + self.sha.hexdigest(), self.size)

    def _rename(self, digest: str) -> None:
        assert self.path is not None
        try:
            os.replace(self.path, self.directory / digest[7:])
        except BaseException:
            self.abort()
            raise
        self.path = None


class HeldBlob(BlobFile):
    """A streamed blob that finish() completes under its temp name; publish() gives it its digest's name."""

    digest: str | None = None

    def finish(self) -> Descriptor:
        descriptor = self._close()
        self.digest = descriptor.digest
        return descriptor

    def publish(self) -> None:
        assert self.digest is not None, "publish() before finish()"
        self._rename(self.digest)


class HeldBlobs:
    """Blobs streamed into a layout where they will stay (written once, no copy), none of them visible until
    publish() names them all; discard() removes every one (a build refused or interrupted halfway)."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.blobs: list[HeldBlob] = []
        self.lock = threading.Lock()  # layers are streamed from several threads

    def blob_writer(self, media_type: str) -> HeldBlob:
        self.layout.init()
        blob = HeldBlob(self.layout.root / "blobs" / "sha256", media_type)
        with self.lock:
            self.blobs.append(blob)
        return blob

    def publish(self) -> list[str]:
        """Every finished blob renamed to its digest (an unfinished one is an error); their digests."""
        with self.lock:
            for blob in self.blobs:
                blob.publish()
            return [str(blob.digest) for blob in self.blobs]

    def discard(self) -> None:
        with self.lock:
            for blob in self.blobs:
                blob.abort()


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive lock on a layout while index.json is read, changed and written (flock on its directory,
    so the layout holds no extra file); released when the block ends, or the process does."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def with_entry(entries: list[dict[str, Any]], manifest: Manifest, tag: str | None) -> list[dict[str, Any]] | None:
    """index.json's entries with `manifest` under `tag` (the tag moved off any other manifest; an untagged
    entry of the same manifest replaced), or None when they already say so."""
    if tag is None:
        if any(e.get("digest") == manifest.digest for e in entries):
            return None
        kept = entries
    else:
        if any(e.get("digest") == manifest.digest and _ref_name(e) == tag for e in entries):
            return None
        kept = [e for e in entries if _ref_name(e) != tag
                and not (e.get("digest") == manifest.digest and _ref_name(e) is None)]
    entry: dict[str, Any] = {"mediaType": manifest.media_type, "digest": manifest.digest, "size": len(manifest.data)}
    if tag:
        entry["annotations"] = {REF_NAME: tag}
    return [*kept, entry]


# Tags that name an image's companions, not an image: cosign's sha256-<hex>.sig/.att/.sbom, the referrers
# tag-schema fallback sha256-<hex> and mlci's journal tags sha256-<hex>.ref-<hex>.
COMPANION_TAG = re.compile(r"sha256-[0-9a-f]{64}(\.[a-z0-9-]+)?")


def find_entry(entries: list[dict[str, Any]], tag: str | None, where: object) -> dict[str, Any]:
    """The index.json entry tagged `tag` (or the only image when tag is None: referrers listed beside it, entries
    with an `artifactType`, and the companions' tags (signatures, fallback indexes) do not count); an error naming
    `where`."""
    if tag is None:
        found = [e for e in entries if not e.get("artifactType")
                 and not COMPANION_TAG.fullmatch(_ref_name(e) or "")] or list(entries)
    else:
        found = [e for e in entries if _ref_name(e) == tag]
    if len({e.get("digest") for e in found}) != 1:
        what = f"tag {tag!r}" if tag else "a single image"
        raise EnvironmentProblem(f"{where}: {what} not found in index.json "
                                 f"({len({e.get('digest') for e in found})} matches)")
    return found[0]


def parse_index(data: bytes, where: object) -> dict[str, Any]:
    """index.json's content, checked to be an image index (an error naming `where` otherwise)."""
    try:
        index = jsonsafe.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EnvironmentProblem(f"{where}: not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list) \
            or not all(isinstance(e, dict) for e in index["manifests"]):
        raise EnvironmentProblem(f"{where}: not an OCI image index (expected `manifests`: a list of descriptors)")
    return index


def has_ref(entries: list[dict[str, Any]], tag: str) -> bool:
    """Whether an entry carries `tag`."""
    return any(_ref_name(e) == tag for e in entries)


def _ref_name(entry: dict[str, Any]) -> str | None:
    annotations = entry.get("annotations")
    name = annotations.get(REF_NAME) if isinstance(annotations, dict) else None
    return name if isinstance(name, str) else None
