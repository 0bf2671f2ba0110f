"""Metrics, params and plots of the workspace against the baseline, read through DVC (so any params
file, nested metrics and the plots the repo's dvc.yaml declares are covered)."""
from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlci.core import jsonsafe
from mlci.core.errors import EnvironmentProblem
from mlci.core.fsutil import outside
from mlci.dvcstage.dvc import dvc, last_error
from mlci.dvcstage.files import check_pipeline_files, dvc_root
from mlci.report import availability
from mlci.report.plots import Plot
from mlci.report.plots import parse as parse_plots


@dataclass(frozen=True)
class Change:
    """One metric or param: `address` is `file:dotted.key`; old is None when new in this MR."""

    address: str
    old: Any
    new: Any

    @property
    def diff(self) -> float | None:
        """new - old, when both are numbers (and finite: inf - inf is no change to show)."""
        old, new = as_float(self.old), as_float(self.new)
        if old is None or new is None or not math.isfinite(new - old):
            return None
        return new - old

    @property
    def relative(self) -> float | None:
        """(new - old) / |old|, when defined."""
        d, old = self.diff, as_float(self.old)
        return d / abs(old) if d is not None and old else None


@dataclass(frozen=True)
class Diff:
    """Everything the report shows: `problems` are one line each (which file, at which revision, why)."""

    metrics: list[Change]
    params: list[Change]
    plots: list[Plot]
    problems: list[str] = field(default_factory=list)


def as_float(value: Any) -> float | None:
    """A metric value as a float: None for what is not a number, or an integer too large for a float
    (a metrics file may hold any JSON number)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def dvc_json(repo: Path, *args: str, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """`dvc ARGS --json EXTRA` as a dict; errors name `dvc ARGS` (EXTRA is plumbing, e.g. a temp dir)."""
    result = dvc(repo, *args, "--json", *extra)
    if result.returncode != 0:
        raise EnvironmentProblem(f"`dvc {' '.join(args)}` failed: {last_error(result)}")
    text = result.stdout.strip()
    try:
        data = jsonsafe.loads(text) if text else {}
    except json.JSONDecodeError:
        raise EnvironmentProblem(f"`dvc {' '.join(args)}` printed no JSON: {text[:200]}") from None
    if not isinstance(data, dict):
        raise EnvironmentProblem(f"`dvc {' '.join(args)}` printed JSON that is not an object")
    return data


def changes(data: dict[str, Any]) -> list[Change]:
    """`dvc metrics|params diff --json` output as Changes, file by file."""
    found = [Change(f"{path}:{key}", values.get("old"), values.get("new"))
             for path, keys in data.items() for key, values in (keys or {}).items()]
    return sorted(found, key=lambda c: c.address)  # stable: an unchanged report is not re-posted


def compute(repo: Path, base: str, with_plots: bool, plots_dir: Path) -> Diff:
    """Metrics, params (all, changed or not) and plots of the workspace against `base`; images of image
    plots are written into `plots_dir`. Files DVC could not read become problems, never silence. The
    MR's pipeline files are read within bounds first (exit 2 naming one that would blow DVC up)."""
    root = dvc_root(repo)
    if root is not None:
        check_pipeline_files(root)
    linked: list[str] = []
    metrics_data = _inside(repo, dvc_json(repo, "metrics", "diff", base, "--all"), linked)
    metrics = changes(metrics_data)
    params = changes(_inside(repo, dvc_json(repo, "params", "diff", base, "--all"), linked))
    unreadable, check_problem = availability.metrics(repo, base, metrics_data)
    problems = [check_problem] if check_problem else []
    if not metrics:
        problems.append("no metrics to compare" + (
            ": DVC could not read the metrics files (below)" if unreadable else " (above)" if check_problem else
            ": DVC finds no metrics in this repo (declare them under `metrics:` in dvc.yaml)"))
    found: list[Plot] = []
    if with_plots:
        try:
            data = dvc_json(repo, "plots", "diff", base, extra=("-o", str(plots_dir)))
        except EnvironmentProblem as exc:  # e.g. a plot naming a template that does not exist
            problems.append(f"plots left out: {exc}")
            data = {}
        if isinstance(data.get("data"), dict):
            data = {**data, "data": _inside(repo, data["data"], linked, _plot_files)}
        found = parse_plots(data)
        unreadable += availability.plots(data.get("errors") or [])
    labels = revision_labels(base)
    remote = functools.cache(lambda: availability.default_remote(repo))
    problems += availability.describe(unreadable, labels, remote)
    return Diff(metrics, params, found, [*dict.fromkeys(linked), *problems])


def _inside(repo: Path, data: dict[str, Any], problems: list[str],
            files: Callable[[str, Any], set[str]] = lambda name, _: {name}) -> dict[str, Any]:
    """`data` (DVC's JSON by file or plot) without the entries whose workspace files are symlinks out of the
    repository (a `params.yaml -> ~/.docker/config.json`): their values would be shown in the comment."""
    kept = {}
    for name, values in data.items():
        out = sorted((f, target) for f in files(str(name), values) if os.path.lexists(repo / f)
                     and (target := outside(repo, Path(f))) is not None)
        if out:
            problems.extend(_outside_problem(repo, f, target) for f, target in out)
        else:
            kept[name] = values
    return kept


def _outside_problem(repo: Path, name: str, target: Path) -> str:
    """Why a file DVC names is not shown: a symlink leading out, or a file beside the model's directory (another
    model's, in a monorepo whose DVC repository holds several)."""
    if Path(os.path.normpath(repo / name)).is_relative_to(os.path.normpath(repo)):
        return f"`{name}` is a symlink out of the repository (to {target}); not shown"
    return f"`{name}` is outside this model's directory ({repo}); not shown"


def _plot_files(name: str, entries: Any) -> set[str]:
    """The files a plot of `dvc plots diff --json` shows: its name (a file, for a plot of one file) and the
    `filename` of every row (a top-level plot over several files)."""
    found = {name}
    for entry in entries if isinstance(entries, list) else [entries]:
        content = entry.get("content") if isinstance(entry, dict) else None
        data = content.get("data") if isinstance(content, dict) else None
        values = data.get("values") if isinstance(data, dict) else None
        if isinstance(values, list):
            found.update(str(row["filename"]) for row in values if isinstance(row, dict) and "filename" in row)
    return found


def revision_labels(base: str) -> dict[str, str]:
    """How the report names the two revisions DVC compares."""
    return {base: "baseline", "workspace": "this MR"}
