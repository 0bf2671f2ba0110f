"""The `report` section of mlci.yaml."""
from __future__ import annotations

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
    better: Literal["higher", "lower"] = "higher"
    where: str = ""


@dataclass(frozen=True)
class ReportSettings:
    """`report` in mlci.yaml: how `mlci report` diffs and renders."""

    id: str = field(default="metrics", metadata={"doc": (
        "Report id: one comment per MR/PR per id (hidden marker `<!-- mlci-report:ID -->`).")})
    target_branch: str | None = field(default=None, metadata={"doc": (
        "Target branch when CI does not say (CI_MERGE_REQUEST_TARGET_BRANCH_NAME / GITHUB_BASE_REF win).")})
    precision: int = field(default=4, metadata={"doc": "Significant digits shown for metric values."})
    gates: dict[str, Gate] = field(default_factory=dict, metadata={"doc": (
        "Per metric (`file:dotted.key`): min, max, max_drop, max_rise (number or \"N%\"), better.")})
    plots: Literal["mermaid", "none"] = field(default="mermaid", metadata={"doc": (
        "How DVC plots appear: Mermaid charts (rendered by GitLab and GitHub, no image host), or not at all.")})
    plot_points: int = field(default=21, metadata={"doc": "Points per Mermaid line (plots are resampled)."})
    template: str | None = field(default=None, metadata={"doc": (
        "A Jinja2 Markdown template replacing the built-in one (relative to mlci.yaml).")})
    sections: tuple[str, ...] = field(default=(), metadata={"doc": (
        "Markdown files appended as sections (e.g. mlci-data-test.md); also --section.")})


_PERCENT = re.compile(r"^\d+(\.\d+)?%$")


def gate_problems(gates: dict[str, Gate]) -> list[str]:
    """Gates that cannot work: an address without `file:key`, a limit that is not a number or "N%"."""
    problems = []
    for address, gate in gates.items():
        at = f"{gate.where}: report.gates.{address}"
        if ":" not in address:
            problems.append(f"{at}: address a metric as path/to/file.json:dotted.key")
        for name in ("max_drop", "max_rise"):
            value = getattr(gate, name)
            if isinstance(value, str) and not _PERCENT.match(value.strip()):
                problems.append(f"{at}.{name}: expected a number or a percentage like \"2%\", got {value!r}")
        if all(getattr(gate, n) is None for n in ("min", "max", "max_drop", "max_rise")):
            problems.append(f"{at}: give at least one of min, max, max_drop, max_rise")
    return problems
