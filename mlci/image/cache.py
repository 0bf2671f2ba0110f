"""The build cache: which layer descriptor each layer-input hash produced, recorded in two places.

- **In the destination registry** (the cache every runner shares): one OCI artifact manifest per input hash,
  tagged `mlci-cache-<hex of the input hash>`, with `artifactType` ARTIFACT_TYPE, the empty config, the
  layer's descriptor as its one layer (so registry garbage collection keeps the blob) and the diff_id and
  input hash in its annotations. It has no `subject`: it is not a referrer of any image, so promotion, which
  copies an image's referrers, never carries it along. Layouts and archives get no records.
- **A local index** (`$MLCI_CACHE_DIR/layers/<hash>.json`): a hint, for layouts and archives and when the
  registry has no record yet.

Nothing from either is trusted until the destination confirms that it holds the blob (HEAD). A record that
cannot be read as one, or names another input hash, is ignored with a warning (the layer is rebuilt)."""
from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

from mlci.core import fsutil, jsonsafe
from mlci.core.errors import MlciError
from mlci.core.fsutil import atomic_write
from mlci.core.log import logger
from mlci.image.layers import MEDIA_TYPES, Layer
from mlci.oci.copy import Endpoint, RegistryEndpoint
from mlci.oci.manifest import OCI_EMPTY, OCI_MANIFEST, Descriptor, Manifest, NotFound, is_digest, sha256_digest
from mlci.oci.registry import RegistryError

RECORD_PREFIX = "mlci-cache-"
ARTIFACT_TYPE = "application/vnd.mlci.build-cache.v1+json"
EMPTY = b"{}"
INPUT = "io.mlci.build-cache.input"
DIFF_ID = "io.mlci.build-cache.diff-id"
LAYER = "io.mlci.build-cache.layer"


def input_hash(name: str, inputs: Any) -> str:
    """The hex sha256 of a layer's name and inputs (JSON, keys sorted)."""
    return hashlib.sha256(json.dumps([name, inputs], sort_keys=True).encode()).hexdigest()


def record_tag(key: str) -> str:
    """The tag of the destination's record for an input hash (75 characters: within a tag's 128)."""
    return RECORD_PREFIX + key


def keeps_records(dest: Endpoint) -> bool:
    """Whether the destination holds build-cache records: registries do, layouts and archives do not."""
    return isinstance(dest, RegistryEndpoint)


def find(dest: Endpoint, key: str, name: str) -> tuple[Layer, bool] | None:
    """The layer built before from these inputs, if the destination holds its blob, and whether the
    destination's own record says so (False: only the local hint did)."""
    if keeps_records(dest):
        layer = _from_record(dest, key, name)
        if layer is not None and dest.has_blob(layer.digest):
            return layer, True
    hint = lookup(key)
    if hint is not None and dest.has_blob(hint.digest):
        return hint, False
    return None


def _from_record(dest: Endpoint, key: str, name: str) -> Layer | None:
    try:
        manifest = dest.get_manifest(record_tag(key))
    except NotFound:
        return None
    layer = parse_record(manifest.data, key)
    if layer is None:
        logger.warning("mlci: warning: %s layer: the destination's %s is not an mlci build-cache record for "
                       "this input; ignored (the layer is rebuilt and the record replaced)", name, record_tag(key))
    return layer


def parse_record(data: bytes, key: str) -> Layer | None:
    """The layer a record names, or None when it is not a well-formed record for input hash `key`."""
    try:
        body = jsonsafe.loads(data)
        layers, annotations = body["layers"], body["annotations"]
        ok = (body.get("mediaType") == OCI_MANIFEST and body.get("artifactType") == ARTIFACT_TYPE
              and "subject" not in body and body["config"]["mediaType"] == OCI_EMPTY
              and isinstance(layers, list) and len(layers) == 1 and annotations.get(INPUT) == f"sha256:{key}")
        if not ok:
            return None
        layer = layers[0]
        digest, size, media_type, diff_id = layer["digest"], layer["size"], layer["mediaType"], annotations[DIFF_ID]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if not (is_digest(digest) and is_digest(diff_id)
            and type(size) is int and size >= 0 and media_type in MEDIA_TYPES.values()):
        return None
    return Layer(digest, size, diff_id, None, media_type)


def record(key: str, name: str, layer: Layer) -> Manifest:
    """The record for a layer built from input hash `key` (deterministic bytes)."""
    body = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": OCI_EMPTY, "digest": sha256_digest(EMPTY), "size": len(EMPTY)},
        "layers": [layer.descriptor()],
        "annotations": {INPUT: f"sha256:{key}", DIFF_ID: layer.diff_id, LAYER: name},
    }
    data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return Manifest(data, OCI_MANIFEST, sha256_digest(data))


def remember(dest: Endpoint, key: str, name: str, layer: Layer) -> None:
    """Record in the destination (a registry) which layer the input hash produced; its blob must be there."""
    if not keeps_records(dest):
        return
    try:
        if not dest.has_blob(sha256_digest(EMPTY)):
            dest.put_blob(Descriptor(OCI_EMPTY, sha256_digest(EMPTY), len(EMPTY)), lambda: io.BytesIO(EMPTY))
        dest.put_manifest(record(key, name, layer), record_tag(key))
    except RegistryError as exc:  # a registry that refuses OCI artifacts: the image itself is fine
        logger.warning("mlci: warning: %s layer: the destination refused its build-cache record (%s); "
                       "a runner without this cache dir will build the layer again", name, exc)


def cache_dir() -> Path:
    """The local layer index, in mlci's cache dir (core.fsutil.cache_dir)."""
    return fsutil.cache_dir() / "layers"


def lookup(key: str) -> Layer | None:
    """The descriptor of a layer built before on this machine from the same inputs, if recorded."""
    path = cache_dir() / f"{key}.json"
    try:
        data = jsonsafe.loads(path.read_text(encoding="utf-8"))
        layer = Layer(str(data["digest"]), int(data["size"]), str(data["diff_id"]), None, str(data["media_type"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return layer if is_digest(layer.digest) and layer.media_type in MEDIA_TYPES.values() else None


def store(key: str, layer: Layer) -> None:
    """Record a built layer's descriptor under its input hash (a hint: a cache that cannot be written is a
    warning, never a failed build)."""
    _hint(cache_dir() / f"{key}.json", json.dumps({"digest": layer.digest, "size": layer.size,
                                                   "diff_id": layer.diff_id, "media_type": layer.media_type}))


_unwritable: list[str] = []  # said once per command


def _hint(path: Path, text: str) -> None:
    try:
        atomic_write(path, text)
    except MlciError as exc:
        if _unwritable:
            return
        _unwritable.append(str(exc))
        logger.warning("mlci: warning: build cache not updated (%s); set MLCI_CACHE_DIR to a writable directory",
                       exc)


_stat_index: dict[str, list[object]] | None = None
HASH_CHUNK = 1 << 22


def _index_path() -> Path:
    return cache_dir().parent / "file-hashes.json"


def file_sha256(path: Path) -> str:
    """A file's sha256, streamed; remembered by (path, size, mtime, inode) so that unchanged large files
    (model weights) are not read again by later builds (DVC keeps a state database the same way)."""
    return _file_digest(path, "sha256")


def file_md5(path: Path) -> str:
    """A file's md5 (what DVC 3 records in dvc.lock), remembered like file_sha256."""
    return _file_digest(path, "md5")


def remember_file_hash(path: Path, before: os.stat_result, algorithm: str, digest: str) -> None:
    """Remember `digest` of a file that was read whole after `before` was taken (a stale stamp only misses)."""
    _index()[_key(path, algorithm)] = [*_stamp(before), digest]


def _index() -> dict[str, list[object]]:
    global _stat_index
    if _stat_index is None:
        try:
            _stat_index = dict(jsonsafe.loads(_index_path().read_text(encoding="utf-8")))
        except (OSError, ValueError):
            _stat_index = {}
    return _stat_index


def _key(path: Path, algorithm: str) -> str:
    return str(path.resolve()) if algorithm == "sha256" else f"{algorithm}:{path.resolve()}"


def _stamp(st: os.stat_result) -> list[object]:
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _file_digest(path: Path, algorithm: str) -> str:
    index, stamp, key = _index(), _stamp(path.stat()), _key(path, algorithm)
    known = index.get(key)
    if isinstance(known, list) and known[:3] == stamp:
        return str(known[3])
    digest = hashlib.new(algorithm, usedforsecurity=algorithm == "sha256")
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    index[key] = [*stamp, digest.hexdigest()]
    return digest.hexdigest()


def save_file_hashes() -> None:
    """Persist the file-hash index (atomically)."""
    if _stat_index is not None:
        _hint(_index_path(), json.dumps(_stat_index, sort_keys=True))
