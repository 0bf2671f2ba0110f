"""`oci-archive:FILE[:TAG]`: a tar of an OCI image layout, streamed both ways. Reading indexes the
(uncompressed) tar's headers once and reads each member in place by offset; nothing is unpacked. Writing
streams blobs, as they come, into one temp file beside FILE (`oci-layout` first, then the blobs, then the
old archive's blobs carried over, `index.json` last: fixed metadata, so the same inputs give the same bytes);
commit() renames it over FILE once per command, keeping every tag FILE held. A reader never sees half an
archive, and a command that fails leaves the old archive as it was (the temp file is removed)."""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any, BinaryIO, cast

from mlci.core.bounded import open_regular
from mlci.core.errors import EnvironmentProblem
from mlci.oci.layout import LAYOUT_VERSION, HashedTemp, find_entry, has_ref, parse_index, published_mode, with_entry
from mlci.oci.manifest import OCI_INDEX, Descriptor, Manifest, NotFound, check_digest, media_type_of, sha256_digest
from mlci.oci.transport import Opener, check_writable_path

BLOBS = "blobs/sha256/"
READ_SIZE = 1 << 20


class _Slice(io.RawIOBase):
    """`size` bytes of an open file from `offset` (pread: several readers may share the descriptor)."""

    def __init__(self, fd: int, offset: int, size: int, owned: bool) -> None:
        super().__init__()
        self.fd, self.position, self.end, self.owned = fd, offset, offset + size, owned

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        n = min(len(target), self.end - self.position)
        if n <= 0:
            return 0
        data = os.pread(self.fd, n, self.position)
        if not data:
            raise EnvironmentProblem("oci-archive: a member ends before its size (truncated archive)")
        target[: len(data)] = data
        self.position += len(data)
        return len(data)

    def close(self) -> None:
        if self.owned and not self.closed:
            os.close(self.fd)
        super().close()


class _Hashing(io.RawIOBase):
    """A stream that hashes what passes (the archive checks each blob's digest as it writes it)."""

    def __init__(self, inner: BinaryIO) -> None:
        super().__init__()
        self.inner, self.hasher = inner, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        data = self.inner.read(len(target))
        self.hasher.update(data)
        target[: len(data)] = data
        return len(data)


def _index_members(path: Path, handle: BinaryIO) -> dict[str, tuple[int, int]]:
    """name -> (data offset, size) of every regular file in an uncompressed tar (headers read, data skipped)."""
    members: dict[str, tuple[int, int]] = {}
    try:
        with tarfile.open(fileobj=handle, mode="r:") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if member.isfile() and not member.issparse():
                    members[name] = (member.offset_data, member.size)
                elif not member.isdir():
                    raise EnvironmentProblem(f"{path}: not a readable oci-archive: member {name[:80]!r} is not "
                                             "a regular file or directory")
    except (tarfile.TarError, OSError) as exc:
        raise EnvironmentProblem(f"{path}: not a readable oci-archive: {exc} (an uncompressed tar of an OCI "
                                 "layout is expected)") from None
    return members


class ArchiveEndpoint:
    """A copy endpoint over an oci-archive file: read in place, written once on commit()."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._old: dict[str, tuple[int, int]] = {}
        self._old_fd: int | None = None
        if os.path.lexists(path):  # a regular file only: a FIFO named as the archive is refused, not waited on
            with open_regular(path, f"{path}: the oci-archive") as handle:
                self._old = _index_members(path, handle)
                self._old_fd = os.dup(handle.fileno()) if self._old else None
        self._entries: list[dict[str, Any]] = []
        if self._old:
            if "index.json" not in self._old:
                raise EnvironmentProblem(f"{path}: not a readable oci-archive: no index.json")
            self._entries = parse_index(self._read_old("index.json", 1 << 22), f"{path}: index.json")["manifests"]
        self._new: dict[str, tuple[int, int]] = {}  # digest -> (offset, size) in the temp file
        self._tmp: Path | None = None
        self._tar: tarfile.TarFile | None = None
        self._raw: BinaryIO | None = None
        self._dirty = False
        self._failed = False  # a blob did not match its digest: the temp archive is never renamed over FILE
        self._lock = threading.Lock()
        weakref.finalize(self, _discard, self._state)

    @property
    def _state(self) -> list[Any]:
        """What the finalizer cleans up: [old fd, temp path] (a list, so it sees later changes)."""
        state: list[Any] = getattr(self, "_cleanup", None) or [self._old_fd, None]
        self._cleanup = state
        return state

    def _read_old(self, name: str, limit: int) -> bytes:
        offset, size = self._old[name]
        if size > limit:
            raise EnvironmentProblem(f"{self.path}: {name} is larger than {limit} bytes")
        assert self._old_fd is not None
        with io.BufferedReader(_Slice(self._old_fd, offset, size, owned=False)) as stream:
            return stream.read()

    def get_manifest(self, reference: str | None) -> Manifest:
        if not self._old and not self._new:
            raise NotFound(f"{self.path}: no oci-archive there (the file does not exist)" if not
                           os.path.lexists(self.path) else f"{self.path}: an empty oci-archive")
        if reference and reference.startswith("sha256:"):
            if not self.has_blob(reference):
                raise NotFound(f"{self.path}: manifest {reference} not found")
            data = self._read_blob(reference)
            return Manifest(data, media_type_of(data), reference)
        if reference and not has_ref(self._entries, reference):
            raise NotFound(f"{self.path}: tag {reference!r} not found in index.json")
        entry = find_entry(self._entries, reference, self.path)
        digest = check_digest(entry.get("digest"), f"{self.path}: index.json entry")
        if not self.has_blob(digest):
            raise EnvironmentProblem(f"{self.path}: index.json names {digest}, which the archive does not hold")
        data = self._read_blob(digest)
        if sha256_digest(data) != digest:
            raise EnvironmentProblem(f"{self.path}: manifest {digest}: digest did not match")
        return Manifest(data, str(entry.get("mediaType") or media_type_of(data)), digest)

    def _read_blob(self, digest: str) -> bytes:
        with self.open_blob(digest) as stream:
            data = stream.read((1 << 22) + 1)
        if len(data) > 1 << 22:
            raise EnvironmentProblem(f"{self.path}: manifest {digest} is larger than 4 MiB")
        return data

    def has_blob(self, digest: str) -> bool:
        return digest in self._new or BLOBS + digest[7:] in self._old

    def try_reuse_blob(self, blob: Descriptor) -> bool:
        return self.has_blob(blob.digest)

    def open_blob(self, digest: str) -> BinaryIO:
        check_digest(digest, f"{self.path}: blob")
        with self._lock:
            if digest in self._new:
                assert self._raw is not None and self._tmp is not None
                self._raw.flush()
                offset, size = self._new[digest]
                fd = os.open(self._tmp, os.O_RDONLY | os.O_CLOEXEC)
                return cast(BinaryIO, io.BufferedReader(_Slice(fd, offset, size, owned=True), READ_SIZE))
        name = BLOBS + digest[7:]
        if name not in self._old:
            raise NotFound(f"{self.path}: blob {digest} not found")
        offset, size = self._old[name]
        fd = os.dup(cast(int, self._old_fd))
        return cast(BinaryIO, io.BufferedReader(_Slice(fd, offset, size, owned=True), READ_SIZE))

    def _writer(self) -> tarfile.TarFile:
        """The temp archive beside FILE, opened at the first write (oci-layout and the blob directories first)."""
        if self._tar is None:
            self.path.absolute().parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.absolute().parent)
            self._tmp = Path(tmp)
            self._state[1] = self._tmp
            self._raw = cast(BinaryIO, os.fdopen(fd, "w+b"))
            self._tar = tarfile.open(fileobj=self._raw, mode="w", format=tarfile.PAX_FORMAT)
            for name in ("blobs", "blobs/sha256"):
                self._tar.addfile(_info(name, 0, directory=True))
            self._add("oci-layout", LAYOUT_VERSION.encode())
        return self._tar

    def _add(self, name: str, data: bytes) -> None:
        tar = self._writer()
        tar.addfile(_info(name, len(data)), io.BytesIO(data))

    def _add_stream(self, name: str, size: int, stream: BinaryIO) -> int:
        """Append a member streamed from `stream`; returns the offset of its data in the temp file."""
        tar = self._writer()
        try:
            tar.addfile(_info(name, size), stream)
        except OSError as exc:
            raise EnvironmentProblem(f"{self.path}: writing {name}: {exc}") from None
        return tar.offset - ((size + tarfile.BLOCKSIZE - 1) // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE

    def put_blob(self, blob: Descriptor, source: Opener) -> int:
        with self._lock:
            if blob.digest in self._new:
                return 0
            with source() as stream:
                hashing = _Hashing(stream)
                offset = self._add_stream(BLOBS + blob.digest[7:], blob.size, cast(BinaryIO, hashing))
            got = "sha256:" + hashing.hasher.hexdigest()
            if got != blob.digest:  # the temp archive is now unusable: the command fails, FILE stays as it was
                self._failed = True
                self._abandon()
                raise EnvironmentProblem(f"{self.path}: blob {blob.digest}: digest did not match, got {got}")
            self._new[blob.digest] = (offset, blob.size)
            self._dirty = True
            return blob.size

    def blob_writer(self, media_type: str) -> _StagedBlob:
        """A blob of unknown digest: into a temp file beside FILE (one tar is written in order, and a
        member's header needs its size), appended to the archive at finish()."""
        self.path.absolute().parent.mkdir(parents=True, exist_ok=True)
        return _StagedBlob(self, media_type)

    def put_manifest(self, manifest: Manifest, tag: str | None, *, child: bool = False) -> None:
        if not self.has_blob(manifest.digest):
            data = manifest.data
            self.put_blob(Descriptor(manifest.media_type, manifest.digest, len(data)), lambda: io.BytesIO(data))
        if not child:
            entries = with_entry(self._entries, manifest, tag)
            if entries is not None:
                self._entries = entries
                self._dirty = True

    def _abandon(self) -> None:
        """Close and remove the temp archive (it will never be renamed over FILE)."""
        if self._raw is not None:
            self._raw.close()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
        self._state[1] = None
        self._tar = self._raw = self._tmp = None
        self._new = {}

    def discard(self) -> None:
        """FILE is left as it was."""
        with self._lock:
            self._abandon()

    def parallel_puts(self) -> int:
        return 1  # one tar, written in order: the archive's bytes do not depend on thread timing

    def check_writable(self) -> None:
        """FILE is not a directory, and it can be written (its directory is made if missing)."""
        check_writable_path(self.path, directory=False)

    def commit(self) -> None:
        """Carry the old archive's other blobs over, write index.json, rename over FILE (once per command)."""
        if self._failed:
            raise EnvironmentProblem(f"{self.path}: not written: a blob did not match its digest")
        if not self._dirty:
            return
        with self._lock:
            for name in sorted(self._old):
                if name.startswith(BLOBS) and "sha256:" + name[len(BLOBS):] not in self._new:
                    offset, size = self._old[name]
                    fd = os.dup(cast(int, self._old_fd))
                    with io.BufferedReader(_Slice(fd, offset, size, owned=True), READ_SIZE) as stream:
                        self._add_stream(name, size, cast(BinaryIO, stream))
            index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self._entries}
            self._add("index.json", json.dumps(index, separators=(",", ":")).encode())
            tar, raw, tmp = self._tar, self._raw, self._tmp
            assert tar is not None and raw is not None and tmp is not None
            tar.close()
            raw.flush()
            os.fchmod(raw.fileno(), published_mode())
            os.fsync(raw.fileno())
            raw.close()
            os.replace(tmp, self.path)
            self._state[1] = None
            self._tar = self._raw = self._tmp = None
            self._dirty = False
            self._new = {}
            if self._old_fd is not None:
                os.close(self._old_fd)
            self._old_fd = self._state[0] = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            with os.fdopen(os.dup(self._old_fd), "rb") as handle:
                self._old = _index_members(self.path, handle)


class _StagedBlob(HashedTemp):
    """A streamed blob for an archive: a temp file beside it, put into the archive by finish()."""

    def __init__(self, archive: ArchiveEndpoint, media_type: str) -> None:
        super().__init__(archive.path.absolute().parent, media_type, prefix=f".{archive.path.name}.blob.")
        self.archive = archive

    def finish(self) -> Descriptor:
        blob = Descriptor(self.media_type, "sha256:" + self.sha.hexdigest(), self.size)
        path = self.path
        assert path is not None
        try:
            self.handle.close()
            self.archive.put_blob(blob, lambda: path.open("rb"))
        finally:
            self.abort()
        return blob


def _info(name: str, size: int, directory: bool = False) -> tarfile.TarInfo:
    """A member header with fixed metadata (mtime 0, root, 0644/0755): the archive is reproducible."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.uid, info.gid, info.uname, info.gname = size, 0, 0, 0, "", ""
    info.mode = 0o755 if directory else 0o644
    if directory:
        info.type = tarfile.DIRTYPE
    return info


def _discard(state: list[Any]) -> None:
    """An archive endpoint that was never committed: its temp file goes, the old descriptor is closed."""
    fd, tmp = state
    if tmp is not None:
        Path(tmp).unlink(missing_ok=True)
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass
