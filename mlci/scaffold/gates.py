"""Example gates for the scaffold's mlci.yaml, on the repository's own metrics as the report addresses them
(`dvc metrics diff --all`, report/diff.py): a rule that fits the way each one improves (a drop for an accuracy, a
rise for a loss), left commented for review."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mlci.core.errors import EnvironmentProblem
from mlci.report import diff, direction

SHOWN = 2  # examples at most: a start, not a policy
MAX_ADDRESS = 200  # a longer metric name (or one with a control character) is not an example
DEFAULTS = (("metrics.json:roc_auc", {"min": 0.75, "max_drop": 0.01}), ("metrics.json:loss", {"max_rise": "5%"}))


def examples(top: Path) -> list[tuple[str, dict[str, Any]]]:
    """(metric address, gate) for the first numeric metrics of the workspace; the generic pair when there are
    none (no DVC repository or no commit yet, no metrics declared or made, or DVC cannot say)."""
    found = [c.address for c in _metrics(top) if _usable(c)][:SHOWN]
    if not found:
        return list(DEFAULTS)
    return [(address, {"max_rise": "5%"} if direction.better(address, None) == "lower" else {"max_drop": "2%"})
            for address in found]


def _metrics(top: Path) -> list[diff.Change]:
    if not (top / ".dvc").is_dir():
        return []
    try:
        return diff.changes(diff.dvc_json(top, "metrics", "diff", "--all"))
    except EnvironmentProblem:  # DVC missing or failing, the repository locked: examples need none of it
        return []


def _usable(change: diff.Change) -> bool:
    value = diff.as_float(change.new)
    return (value is not None and math.isfinite(value) and change.address.isprintable()
            and len(change.address) <= MAX_ADDRESS)
