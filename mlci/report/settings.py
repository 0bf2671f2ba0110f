"""The `report` section of mlci.yaml."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Gate:
    """Limits on one metric; drops and rises are absolute numbers or percentages ("2%") of the baseline."""

    min: float | None = None
    max: float | None = None
    max_drop: float | str | None = None
    max_rise: float | str | None = None
    better: Literal["higher", "lower"] | None = None  # None: from the metric's name (report/direction.py)
    where: str = ""


@dataclass(frozen=True)
class ReportSettings:
    """`report` in mlci.yaml: how `mlci report` diffs and renders."""

    id: str = field(default="metrics", metadata={"doc": (
        "Report id: one comment per MR/PR per id (hidden marker `<!-- mlci-report:ID -->`); letters, digits, `.`, "
        "`_`, `-`.")})
    target_branch: str | None = field(default=None, metadata={"doc": (
        "Target branch when CI does not say (CI_MERGE_REQUEST_TARGET_BRANCH_NAME / GITHUB_BASE_REF win).")})
    precision: int = field(default=4, metadata={"doc": "Significant digits shown for metric values (1 to 17)."})
    gates: dict[str, Gate] = field(default_factory=dict, metadata={"doc": (
        "Per metric (`file:dotted.key`): min, max, max_drop, max_rise (number or \"N%\"), better (`higher` or "
        "`lower`; default: from the metric's name, docs/report.md).")})
    plots: Literal["mermaid", "none"] = field(default="mermaid", metadata={"doc": (
        "How DVC plots appear: `mermaid` draws them (line plots as Mermaid charts, confusion and bar plots as "
        "tables, images uploaded to GitLab or linked to the GitHub run), `none` leaves them out.")})
    plot_points: int = field(default=21, metadata={"doc": (
        "Points per Mermaid line (2 to 500): lines are resampled to this many, unless all share the same evenly "
        "spaced x values, at most this many, which are drawn as they are.")})
    template: str | None = field(default=None, metadata={"doc": (
        "A Jinja2 Markdown template replacing the built-in one (relative to mlci.yaml).")})
    sections: tuple[str, ...] = field(default=(), metadata={"doc": (
        "Markdown files appended as sections (e.g. mlci-data-test.md); also --section.")})


_PERCENT = re.compile(r"^\d+(\.\d+)?%$")
PRECISION = (1, 17)  # significant digits: 17 is all a float has
REPORT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # nothing that could close the marker's HTML comment
PLOT_POINTS = (2, 500)  # a line needs two points; Mermaid draws no more than a comment can show


def report_problems(settings: ReportSettings, shown: str) -> list[str]:
    """Everything in `report` that cannot work: numbers out of range, and the gates' own problems."""
    problems = []
    for name, (low, high) in (("precision", PRECISION), ("plot_points", PLOT_POINTS)):
        value = getattr(settings, name)
        if not low <= value <= high:
            problems.append(f"{shown}: report.{name} (or MLCI_REPORT_{name.upper()}): must be from {low} to "
                            f"{high}, got {value}")
    if not REPORT_ID.fullmatch(settings.id):
        problems.append(f"{shown}: report.id (or MLCI_REPORT_ID): letters, digits, `.`, `_` and `-` only (at most 64): "
                        "it goes into the comment's hidden marker <!-- mlci-report:ID -->")
    return problems + gate_problems(settings.gates)


def gate_problems(gates: dict[str, Gate]) -> list[str]:
    """Gates that cannot work: an address without `file:key`, a limit that is not a number or "N%"."""
    problems = []
    for address, gate in gates.items():
        at = f"{gate.where}: report.gates.{address}"
        if ":" not in address:
            problems.append(f"{at}: address a metric as path/to/file.json:dotted.key")
        for name in ("min", "max", "max_drop", "max_rise"):
            value = getattr(gate, name)
            if isinstance(value, float) and math.isnan(value):
                problems.append(f"{at}.{name}: must be a number, got NaN")
        for name in ("max_drop", "max_rise"):
            value = getattr(gate, name)
            if isinstance(value, str) and not _PERCENT.match(value.strip()):
                problems.append(f"{at}.{name}: expected a number or a percentage like \"2%\", got {value!r}")
        if all(getattr(gate, n) is None for n in ("min", "max", "max_drop", "max_rise", "better")):
            problems.append(f"{at}: give at least one of min, max, max_drop, max_rise, better")
    return problems
