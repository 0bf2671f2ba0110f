"""Example gates for the scaffold's mlci.yaml, on the repository's own metrics (`dvc metrics show`): a rule
that fits the way each one improves (a drop for an accuracy, a rise for a loss), left commented for review."""
from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlci.report import direction

SHOWN = 2  # examples at most: a start, not a policy
MAX_ADDRESS = 200  # a longer metric name (or one with a control character) is not an example
DEFAULTS = (("metrics.json:roc_auc", {"min": 0.75, "max_drop": 0.01}), ("metrics.json:loss", {"max_rise": "5%"}))


def examples(top: Path) -> list[tuple[str, dict[str, Any]]]:
    """(metric address, gate) for the first numeric metrics of the workspace; the generic pair when there are
    none (no DVC repository, no metrics declared or made yet, or DVC cannot say)."""
    found = [a for a in _addresses(_metrics(top)) if a.isprintable() and len(a) <= MAX_ADDRESS][:SHOWN]
    if not found:
        return list(DEFAULTS)
    return [(address, {"max_rise": "5%"} if direction.better(address, None) == "lower" else {"max_drop": "2%"})
            for address in found]


def _metrics(top: Path) -> Any:
    from mlci.core.errors import EnvironmentProblem
    from mlci.dvcstage.dvc import dvc

    if not (top / ".dvc").is_dir():
        return None
    try:
        result = dvc(top, "metrics", "show", "--json")
    except EnvironmentProblem:  # DVC missing, or the repository locked by another DVC: examples need neither
        return None
    try:
        return json.loads(result.stdout) if result.returncode == 0 else None
    except ValueError:
        return None


def _addresses(shown: Any) -> Iterator[str]:
    workspace = shown.get("") if isinstance(shown, dict) else None
    files = workspace.get("data") if isinstance(workspace, dict) else None
    for path, content in sorted(files.items()) if isinstance(files, dict) else ():
        data = content.get("data") if isinstance(content, dict) else None
        for key in _numeric_keys(data, ""):
            yield f"{path}:{key}"


def _numeric_keys(value: Any, prefix: str) -> Iterator[str]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _numeric_keys(child, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and prefix:
        yield prefix
