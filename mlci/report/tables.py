"""Plots that read best as Markdown tables: confusion matrices (counts, baseline → this MR in each cell)
and bar plots (a value per category and revision)."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from mlci.report import markdown
from mlci.report.plots import BarPlot, ConfusionPlot, Series, number

MAX_CLASSES = 30  # a wider confusion matrix is unreadable in a comment
MAX_CATEGORIES = 100  # bar rows: thousands (feature importances) would push the rest out of the comment


def cell(value: str) -> str:
    """Text safe inside a Markdown table cell: one line, no Markdown or HTML of its own."""
    return markdown.text(value)


def classes(values: Iterable[str]) -> list[str]:
    """Class labels in natural order: numerically when all are numbers, else alphabetically."""
    unique = set(values)
    if all(number(v) is not None for v in unique):
        return sorted(unique, key=lambda v: number(v) or 0.0)
    return sorted(unique)


def _groups(series: Iterable[Series], revisions: Sequence[str]) -> dict[str, list[str]]:
    """Per y file/field label, its revisions: the given ones in order, then any others."""
    groups: dict[str, list[str]] = {}
    for s in series:
        groups.setdefault(s.label, []).append(s.rev)
    rank = {rev: i for i, rev in enumerate(revisions)}
    return {label: sorted(revs, key=lambda r: rank.get(r, len(rank))) for label, revs in groups.items()}


def _heading(title: str, label: str, revs: Sequence[str], labels: Mapping[str, str], extra: str) -> str:
    who = " → ".join(labels.get(r, r[:12]) for r in revs)
    parts = [f"**{cell(title)}**", *([markdown.code(label)] if label else []), extra, who]
    return " · ".join(p for p in parts if p)


def _largest(values: Sequence[Mapping[str, float]]) -> list[str]:
    """The categories of a bar table: all, or the MAX_CATEGORIES largest by |value| in the last revision."""
    names = list(dict.fromkeys(k for v in values for k in v))
    if len(names) <= MAX_CATEGORIES:
        return names
    last = values[-1]
    return sorted(names, key=lambda n: -abs(last.get(n, 0.0)))[:MAX_CATEGORIES]


def hidden(plot: BarPlot) -> int:
    """How many categories of the plot's largest table bars() leaves out."""
    groups: dict[str, set[str]] = {}
    for series, values in plot.values.items():
        groups.setdefault(series.label, set()).update(values)
    return max((len(names) - MAX_CATEGORIES for names in groups.values()), default=0)


def confusion(plot: ConfusionPlot, revisions: Sequence[str], labels: Mapping[str, str]) -> str | None:
    """One table per y file; each cell holds the counts of the revisions, baseline first. None when there
    are more than MAX_CLASSES classes."""
    blocks = []
    for label, revs in _groups(plot.counts, revisions).items():
        counts = [plot.counts[Series(rev, label)] for rev in revs]
        names = classes(v for c in counts for pair in c for v in pair)
        if len(names) > MAX_CLASSES:
            return None
        rows = [f"| {cell(plot.x)} \\\\ {cell(plot.y)} | " + " | ".join(cell(n) for n in names) + " |",
                "|---|" + "---:|" * len(names)]
        for actual in names:
            cells = [" → ".join(str(c[(actual, predicted)]) for c in counts) for predicted in names]
            rows.append(f"| **{cell(actual)}** | " + " | ".join(cells) + " |")
        extra = f"rows: {cell(plot.x)}, columns: {cell(plot.y)}"
        blocks.append(_heading(plot.title, label, revs, labels, extra) + "\n\n" + "\n".join(rows))
    return "\n\n".join(blocks)


def bars(plot: BarPlot, revisions: Sequence[str], labels: Mapping[str, str]) -> str:
    """One table per y file: a row per category, a column per revision; at most MAX_CATEGORIES rows, the
    largest by the last revision's value (see `hidden`)."""
    blocks = []
    for label, revs in _groups(plot.values, revisions).items():
        values = [plot.values[Series(rev, label)] for rev in revs]
        names = classes(_largest(values))
        header = f"| {cell(plot.category)} | " + " | ".join(cell(labels.get(r, r[:12])) for r in revs) + " |"
        rows = [header, "|---|" + "---:|" * len(revs)]
        for name in names:
            shown = [f"{v[name]:.4g}" if name in v else "—" for v in values]
            rows.append(f"| {cell(name)} | " + " | ".join(shown) + " |")
        blocks.append(_heading(plot.title, label, revs, labels, cell(plot.value)) + "\n\n" + "\n".join(rows))
    return "\n\n".join(blocks)
