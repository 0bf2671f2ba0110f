"""A verified bundle read again: an ImageSource (and ReferrerSource) over its OCI layout, and every member by name,
each re-hashed against bundle.json as it is read, so that a bundle changed since it was verified stops the import
at the changed member.

The verifying read (verify.verify) goes through `Keeping`, which notes the members' order and keeps the small
members that are read again whole (index.json, the JSON blobs: manifests, configs, referrers' payloads; DVC's
`.dir` listings; the artifacts for Nexus: metrics, dvc.lock, the scan record; at most KEEP_BUDGET bytes in all) in
memory: the policy checks, the manifests, the listings and those uploads then cost no second read. Everything else
is read again from the bundle: by name where the reader has random access (a directory, an uncompressed tar by
offset: several at once), else by streaming it again from its start (`_Sequential`, a tar.zst), one member at a
time, forward; asking for a member behind the current one starts another pass."""
from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, cast

from mlci.bundle.archive import BundleReader, Member, open_bundle
from mlci.bundle.errors import BundleInvalid
from mlci.bundle.manifest import BundleManifest, FileEntry, blob_path
from mlci.core.errors import GateFailed
from mlci.oci.layout import find_entry, has_ref, parse_index
from mlci.oci.manifest import MAX_MANIFEST, Descriptor, Manifest, ManifestError, NotFound, is_digest, media_type_of
from mlci.oci.referrers import REFERRER_TYPES, referrer_descriptor

INDEX = "index.json"
BLOBS = "blobs/sha256/"
ARTIFACTS = "artifacts/"
DVC = "dvc/"
KEEP_BUDGET = 64 << 20  # small JSON members kept from the verifying read (a 35 GB image's are a few MB)


class BundleChanged(GateFailed):
    """A member read again is not what was verified (the bundle was changed or damaged meanwhile): the import stops
    before anything is tagged or recorded; blobs and objects already sent are content-addressed and harmless."""


class Keeping:
    """A BundleReader that passes the verifying read through, noting the members' order and keeping the small
    members read again whole (a member is kept only once its every byte passed, as verify hashed them)."""

    def __init__(self, reader: BundleReader) -> None:
        self.reader = reader
        self.where = reader.where
        self.random_access = reader.random_access
        self.order: list[str] = []
        self.kept: dict[str, bytes] = {}
        self.heads: tuple[bytes, bytes] | None = None
        self._budget = KEEP_BUDGET

    def head(self) -> tuple[bytes, bytes]:
        self.heads = self.reader.head()
        return self.heads

    def members(self) -> Iterator[tuple[Member, BinaryIO]]:
        for member, stream in self.reader.members():
            self.order.append(member.name)
            small = member.size <= min(MAX_MANIFEST, self._budget)
            listing = member.name.startswith(DVC) and member.name.endswith(".dir")
            if not small or not (member.name.startswith((INDEX, BLOBS, ARTIFACTS)) or listing):
                yield member, stream
                continue
            tee = _Tee(stream, member.size)
            yield member, cast(BinaryIO, tee)
            data = tee.data()
            if data is not None and (data[:1] == b"{" or member.name.startswith(ARTIFACTS) or listing):
                self.kept[member.name] = data
                self._budget -= len(data)

    def open(self, name: str) -> BinaryIO:
        return self.reader.open(name)

    def close(self) -> None:
        self.reader.close()


class BundleSource:
    """The verified bundle at `path` (read by `reader`, which verify() went through): its image layout as an
    ImageSource, its members by name. `kept`, `order` and `heads` come from Keeping."""

    def __init__(self, path: Path, reader: BundleReader, manifest: BundleManifest, *,
                 kept: Mapping[str, bytes] | None = None, order: Sequence[str] = (),
                 heads: tuple[bytes, bytes] | None = None) -> None:
        self.path, self.reader, self.manifest = path, reader, manifest
        self.where = reader.where
        self.files: dict[str, FileEntry] = {f.path: f for f in manifest.files}
        self.kept = {name: data for name, data in (kept or {}).items()
                     if name in self.files and _matches(data, self.files[name])}
        self.order = [name for name in order if name in self.files] or sorted(self.files)
        self._sequential = None if reader.random_access else _Sequential(path, self.order, heads)
        self._index: list[dict[str, Any]] | None = None

    @property
    def random_access(self) -> bool:
        """Members can be read in any order, several at once."""
        return self._sequential is None

    @property
    def passes(self) -> int:
        """How often a bundle without random access was streamed again from its start."""
        return self._sequential.passes if self._sequential is not None else 0

    def member(self, name: str) -> BinaryIO:
        """The member's bytes, checked against bundle.json as they are read (BundleChanged at the end otherwise)."""
        entry = self.files.get(name)
        if entry is None:
            raise NotFound(f"{self.where}: {name} is not in the bundle")
        if name in self.kept:
            return io.BytesIO(self.kept[name])
        raw = self.reader.open(name) if self._sequential is None else self._sequential.open(name)
        return cast(BinaryIO, io.BufferedReader(_Checked(raw, entry, self.where), 1 << 20))

    def read_small(self, name: str, limit: int = MAX_MANIFEST) -> bytes:
        """A member of at most `limit` bytes, whole."""
        entry = self.files.get(name)
        if entry is None:
            raise NotFound(f"{self.where}: {name} is not in the bundle")
        if entry.size > limit:
            raise BundleInvalid(f"{self.where}: {name}: {entry.size} bytes, more than the {limit} mlci reads there")
        if name in self.kept:
            return self.kept[name]
        with self.member(name) as stream:
            data = stream.read(entry.size)
        self.kept[name] = data  # read whole, so checked (_Checked raised otherwise)
        return data

    def entries(self) -> list[dict[str, Any]]:
        """index.json's descriptors."""
        if self._index is None:
            self._index = list(parse_index(self.read_small(INDEX), f"{self.where}: {INDEX}")["manifests"])
        return self._index

    def get_manifest(self, reference: str | None) -> Manifest:
        """A manifest of the layout by digest, or by its `org.opencontainers.image.ref.name` in index.json (None:
        the only image); NotFound when the bundle has no such one."""
        if reference is None or not is_digest(reference):
            entries = self.entries()
            if reference is not None and not has_ref(entries, reference):
                raise NotFound(f"{self.where}: tag {reference!r} not found in {INDEX}")
            entry = find_entry(entries, reference, f"{self.where}: {INDEX}")
            digest, media_type = str(entry.get("digest")), entry.get("mediaType")
            if not is_digest(digest) or not isinstance(media_type, str):
                raise BundleInvalid(f"{self.where}: {INDEX}: the entry of {reference or 'the image'} is not a "
                                    "descriptor")
            return Manifest(self.read_small(blob_path(digest)), media_type, digest)
        data = self.read_small(blob_path(reference))
        return Manifest(data, media_type_of(data), reference)

    def open_blob(self, digest: str) -> BinaryIO:
        return self.member(blob_path(digest))

    def has_blob(self, digest: str) -> bool:
        return is_digest(digest) and blob_path(digest) in self.files

    def referrers_of(self, digest: str) -> list[Descriptor]:
        """The manifests index.json lists whose subject is `digest` (as a layout lists referrers: the entry's
        artifactType and annotations, else those of the manifest)."""
        found: list[Descriptor] = []
        for i, raw in enumerate(self.entries()):
            try:
                entry = Descriptor.from_json(raw, f"{self.where}: {INDEX}: manifests[{i}]")
            except ManifestError:
                continue
            if entry.media_type not in REFERRER_TYPES or not self.has_blob(entry.digest) \
                    or self.files[blob_path(entry.digest)].size > MAX_MANIFEST:
                continue
            try:
                manifest = Manifest(self.read_small(blob_path(entry.digest)), entry.media_type, entry.digest)
                subject = manifest.subject()
                if subject is not None and subject.digest == digest:
                    found.append(entry if entry.artifact_type else referrer_descriptor(manifest))
            except ManifestError:
                continue  # an image, or not JSON: not a referrer
        return found

    def close(self) -> None:
        if self._sequential is not None:
            self._sequential.close()
        self.reader.close()


class _Tee(io.RawIOBase):
    """A member's stream that keeps a copy of what passes (at most `size` bytes)."""

    def __init__(self, inner: BinaryIO, size: int) -> None:
        super().__init__()
        self.inner, self.size = inner, size
        self.copy = bytearray()

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        data = self.inner.read(len(target))
        n = len(data)
        target[:n] = data
        if len(self.copy) + n <= self.size:
            self.copy += data
        return n

    def data(self) -> bytes | None:
        """Every byte of the member, when it was read to its end."""
        return bytes(self.copy) if len(self.copy) == self.size else None


class _Checked(io.RawIOBase):
    """A member's stream that counts and hashes its bytes and compares them with bundle.json when it reaches the
    member's size: BundleChanged on a difference, or when the stream ends early or goes on."""

    def __init__(self, inner: BinaryIO, entry: FileEntry, where: str) -> None:
        super().__init__()
        self.inner, self.entry, self.where = inner, entry, where
        self.hasher = hashlib.sha256()
        self.seen = 0

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        left = self.entry.size - self.seen
        if left <= 0:
            return 0
        data = self.inner.read(min(len(target), left))
        if not data:
            raise BundleChanged(f"{self.where}: {self.entry.path}: ends after {self.seen} of its {self.entry.size} "
                                "bytes: the bundle changed since it was verified; nothing was tagged")
        n = len(data)
        target[:n] = data
        self.hasher.update(data)
        self.seen += n
        if self.seen == self.entry.size and self.hasher.hexdigest() != self.entry.sha256:
            raise BundleChanged(f"{self.where}: {self.entry.path}: its sha256 is {self.hasher.hexdigest()} on this "
                                f"read, {self.entry.sha256} when verified: the bundle changed or is damaged; nothing "
                                "was tagged")
        return n

    def close(self) -> None:
        if not self.closed:
            self.inner.close()
        super().close()


class _Sequential:
    """Members of a bundle without random access (a tar.zst), one at a time, by streaming it again: forward
    within one pass, a new pass (opened again, its head compared with the verified one) for a member behind."""

    def __init__(self, path: Path, order: Sequence[str], heads: tuple[bytes, bytes] | None) -> None:
        self.path, self.heads = path, heads
        self.position = {name: i for i, name in enumerate(order)}
        self.lock = threading.Lock()  # held from open() until that member's stream is closed
        self.reader: BundleReader | None = None
        self.members: Iterator[tuple[Member, BinaryIO]] | None = None
        self.at = -1  # the position of the member last handed out
        self.passes = 0

    def open(self, name: str) -> BinaryIO:
        wanted = self.position.get(name)
        if wanted is None:
            raise NotFound(f"{self.path}: {name} is not in the bundle")
        self.lock.acquire()
        try:
            if self.members is None or wanted <= self.at:
                self._restart()
            assert self.members is not None
            for member, stream in self.members:
                self.at = self.position.get(member.name, self.at)
                if member.name == name:
                    return cast(BinaryIO, _Held(stream, member.size, self))
                _drain(stream)
        except BaseException:
            self.members = None
            self.lock.release()
            raise
        self.members = None
        self.lock.release()
        raise BundleChanged(f"{self.path}: {name} was not found on reading the bundle again: it changed since it "
                            "was verified; nothing was tagged")

    def _restart(self) -> None:
        self.close()
        self.reader = open_bundle(self.path)
        self.passes += 1
        if self.heads is not None and self.reader.head() != self.heads:
            raise BundleChanged(f"{self.path}: bundle.json or its signature differ from those verified: the bundle "
                                "changed; nothing was tagged")
        self.members, self.at = self.reader.members(), -1

    def released(self, whole: bool) -> None:
        """The handed-out member's stream was closed (`whole`: read to its end, else the pass cannot go on)."""
        if not whole:
            self.members = None
        self.lock.release()

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
        self.reader, self.members = None, None


class _Held(io.RawIOBase):
    """The member a _Sequential handed out; closing it lets the next member be asked for."""

    def __init__(self, inner: BinaryIO, size: int, owner: _Sequential) -> None:
        super().__init__()
        self.inner, self.left, self.owner = inner, size, owner

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        data = self.inner.read(min(len(target), self.left))
        n = len(data)
        target[:n] = data
        self.left -= n
        return n

    def close(self) -> None:
        if not self.closed:
            self.owner.released(self.left == 0)
        super().close()


def _drain(stream: BinaryIO) -> None:
    while stream.read(1 << 20):
        pass


def _matches(data: bytes, entry: FileEntry) -> bool:
    return len(data) == entry.size and hashlib.sha256(data).hexdigest() == entry.sha256
