"""A local index of built layers by the hash of their inputs: a layer whose inputs did not change
and whose blob the destination already holds is not rebuilt at all (only its descriptor is needed).
The index is a hint: a descriptor is used only after the destination confirms the blob exists."""
from __future__ import annotations

import json
import os
from pathlib import Path

from mlci.build.layers import Layer
from mlci.core.fsutil import atomic_write


def cache_dir() -> Path:
    """$MLCI_CACHE_DIR, else the user cache dir (in CI, cache this path between jobs)."""
    if os.environ.get("MLCI_CACHE_DIR"):
        return Path(os.environ["MLCI_CACHE_DIR"]) / "layers"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlci" / "layers"


def lookup(key: str) -> Layer | None:
    """The descriptor of a layer built before from the same inputs, if recorded."""
    path = cache_dir() / f"{key}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Layer(str(data["digest"]), int(data["size"]), str(data["diff_id"]), None)
    except (OSError, ValueError, KeyError):
        return None


def store(key: str, layer: Layer) -> None:
    """Record a built layer's descriptor under its input hash."""
    atomic_write(cache_dir() / f"{key}.json",
                 json.dumps({"digest": layer.digest, "size": layer.size, "diff_id": layer.diff_id}))
