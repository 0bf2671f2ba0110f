"""An OCI image layout directory (`oci:DIR[:TAG]`): blobs are written to a temp file in the layout,
hashed while written, fsynced and renamed to `blobs/sha256/<hex>` only when the digest matches; the
tag (index.json) is written last, atomically."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

from mlci.core.errors import EnvironmentProblem
from mlci.core.fsutil import atomic_write
from mlci.oci.registry import OCI_INDEX, Manifest, sha256_digest

LAYOUT_VERSION = '{"imageLayoutVersion":"1.0.0"}'
REF_NAME = "org.opencontainers.image.ref.name"
CHUNK = 1 << 20


class Layout:
    """One OCI image layout on disk."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def init(self) -> None:
        """Create the layout if it does not exist (oci-layout, empty index.json, blobs/sha256/)."""
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        if not (self.root / "oci-layout").exists():
            atomic_write(self.root / "oci-layout", LAYOUT_VERSION)
        if not (self.root / "index.json").exists():
            self._write_index({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})

    def blob_path(self, digest: str) -> Path:
        """Where a blob lives."""
        algorithm, _, hexdigest = digest.partition(":")
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
            got = "sha256:" + hasher.hexdigest()
            if got != digest:
                raise EnvironmentProblem(f"{self.root}: blob {digest}: digest did not match, got {got}")
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return size

    def open_blob(self, digest: str) -> BinaryIO:
        """A blob for reading."""
        return self.blob_path(digest).open("rb")

    def get_manifest(self, tag: str | None) -> Manifest:
        """The manifest tagged `tag` (or the only one when tag is None)."""
        entries = self._index()["manifests"]
        found = [e for e in entries if tag is None or e.get("annotations", {}).get(REF_NAME) == tag]
        if len(found) != 1:
            what = f"tag {tag!r}" if tag else "a single image"
            raise EnvironmentProblem(f"{self.root}: {what} not found in index.json ({len(found)} matches)")
        entry = found[0]
        data = self.blob_path(entry["digest"]).read_bytes()
        if sha256_digest(data) != entry["digest"]:
            raise EnvironmentProblem(f"{self.root}: manifest {entry['digest']}: digest did not match")
        return Manifest(data, entry["mediaType"], entry["digest"])

    def put_manifest(self, manifest: Manifest, tag: str | None) -> str:
        """Store the manifest blob, then point the tag at it in index.json (last, atomically)."""
        self.init()
        if not self.has_blob(manifest.digest):
            atomic_write(self.blob_path(manifest.digest), manifest.data)
        index = self._index()
        entries = [e for e in index["manifests"]
                   if not (tag and e.get("annotations", {}).get(REF_NAME) == tag) and e["digest"] != manifest.digest]
        entry: dict[str, Any] = {"mediaType": manifest.media_type, "digest": manifest.digest,
                                 "size": len(manifest.data)}
        if tag:
            entry["annotations"] = {REF_NAME: tag}
        index["manifests"] = [*entries, entry]
        self._write_index(index)
        return manifest.digest

    def _index(self) -> dict[str, Any]:
        path = self.root / "index.json"
        if not path.is_file():
            raise EnvironmentProblem(f"{self.root}: not an OCI image layout (no index.json)")
        return dict(json.loads(path.read_text(encoding="utf-8")))

    def _write_index(self, index: dict[str, Any]) -> None:
        atomic_write(self.root / "index.json", json.dumps(index, separators=(",", ":")))

