"""A local index of built layers by the hash of their inputs: a layer whose inputs did not change
and whose blob the destination already holds is not rebuilt at all (only its descriptor is needed).
The index is a hint: a descriptor is used only after the destination confirms the blob exists."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mlci.core import fsutil
from mlci.core.errors import MlciError
from mlci.core.fsutil import atomic_write
from mlci.core.log import logger
from mlci.image.layers import Layer


def cache_dir() -> Path:
    """The layer index, in mlci's cache dir (core.fsutil.cache_dir)."""
    return fsutil.cache_dir() / "layers"


def lookup(key: str) -> Layer | None:
    """The descriptor of a layer built before from the same inputs, if recorded."""
    path = cache_dir() / f"{key}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Layer(str(data["digest"]), int(data["size"]), str(data["diff_id"]), None)
    except (OSError, ValueError, KeyError):
        return None


def store(key: str, layer: Layer) -> None:
    """Record a built layer's descriptor under its input hash (a hint: a cache that cannot be written is a
    warning, never a failed build)."""
    _hint(cache_dir() / f"{key}.json",
          json.dumps({"digest": layer.digest, "size": layer.size, "diff_id": layer.diff_id}))


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
    global _stat_index
    if _stat_index is None:
        try:
            _stat_index = dict(json.loads(_index_path().read_text(encoding="utf-8")))
        except (OSError, ValueError):
            _stat_index = {}
    st = path.stat()
    key, stamp = str(path.resolve()), [st.st_size, st.st_mtime_ns, st.st_ino]
    known = _stat_index.get(key)
    if known is not None and known[:3] == stamp:
        return str(known[3])
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    _stat_index[key] = [*stamp, digest.hexdigest()]
    return digest.hexdigest()


def save_file_hashes() -> None:
    """Persist the file-hash index (atomically)."""
    if _stat_index is not None:
        _hint(_index_path(), json.dumps(_stat_index, sort_keys=True))
