"""Metrics, params and plots of the workspace against the baseline, read through DVC (so any params
file, nested metrics and the plots the repo's dvc.yaml declares are covered)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlci.core.errors import EnvironmentProblem
from mlci.dvcstage.dvc import dvc, last_error


@dataclass(frozen=True)
class Change:
    """One metric or param: `address` is `file:dotted.key`; old is None when new in this MR."""

    address: str
    old: Any
    new: Any

    @property
    def diff(self) -> float | None:
        """new - old, when both are numbers."""
        if _number(self.old) and _number(self.new):
            return float(self.new) - float(self.old)
        return None

    @property
    def relative(self) -> float | None:
        """(new - old) / |old|, when defined."""
        d = self.diff
        return d / abs(float(self.old)) if d is not None and self.old not in (0, None) else None


@dataclass(frozen=True)
class PlotSeries:
    """One plot: x/y field names and, per revision, its points."""

    path: str
    title: str
    x: str
    y: str
    points: dict[str, list[tuple[float, float]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Diff:
    """Everything the report shows."""

    metrics: list[Change]
    params: list[Change]
    plots: list[PlotSeries]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _dvc_json(repo: Path, *args: str) -> dict[str, Any]:
    result = dvc(repo, *args, "--json")
    if result.returncode != 0:
        raise EnvironmentProblem(f"`dvc {' '.join(args)}` failed: {last_error(result)}")
    text = result.stdout.strip()
    try:
        return dict(json.loads(text)) if text else {}
    except json.JSONDecodeError:
        raise EnvironmentProblem(f"`dvc {' '.join(args)}` printed no JSON: {text[:200]}") from None


def changes(data: dict[str, Any]) -> list[Change]:
    """`dvc metrics|params diff --json` output as Changes, file by file."""
    found = [Change(f"{path}:{key}", values.get("old"), values.get("new"))
             for path, keys in data.items() for key, values in (keys or {}).items()]
    return sorted(found, key=lambda c: c.address)  # stable: an unchanged report is not re-posted


def plots(data: dict[str, Any]) -> list[PlotSeries]:
    """`dvc plots diff --json` output (Vega-Lite specs with inline values) as per-revision points."""
    found = []
    for path, specs in (data.get("data") or {}).items():
        for spec in specs:
            content = spec.get("content") or {}
            x, y = _field(content, "x"), _field(content, "y")
            if not x or not y:
                continue
            series = PlotSeries(path, str(content.get("title") or path) if not isinstance(content.get("title"), dict)
                                else str(content["title"].get("text", path)), x, y)
            for row in (content.get("data") or {}).get("values", []):
                if _number(row.get(x)) and _number(row.get(y)) and math.isfinite(row[x]) and math.isfinite(row[y]):
                    series.points.setdefault(str(row.get("rev", "workspace")), []).append((row[x], row[y]))
            found.append(series)
    return found


def _field(spec: dict[str, Any], axis: str) -> str | None:
    """The data field on an axis, looking into layered specs (DVC's linear/smooth templates)."""
    field_name = ((spec.get("encoding") or {}).get(axis) or {}).get("field")
    if field_name:
        return str(field_name)
    for layer in spec.get("layer") or []:
        found = _field(layer, axis)
        if found:
            return found
    return None


def compute(repo: Path, base: str, with_plots: bool) -> Diff:
    """Metrics, params (all, changed or not) and plots of the workspace against `base`."""
    metrics = changes(_dvc_json(repo, "metrics", "diff", base, "--all"))
    params = changes(_dvc_json(repo, "params", "diff", base, "--all"))
    plot_data = plots(_dvc_json(repo, "plots", "diff", base)) if with_plots else []
    return Diff(metrics, params, plot_data)
