"""Every DVC plot as a Markdown block of the report: Mermaid charts, confusion and bar tables, images.
A plot that cannot be drawn becomes a warning (the job log and one line of the report), never silence."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mlci.report import mermaid, tables
from mlci.report.images import Images
from mlci.report.plots import BarPlot, ConfusionPlot, ImagePlot, LinePlot, Plot, Undrawable


@dataclass(frozen=True)
class Figure:
    """One plot as the report shows it; `kind` is chart, confusion, bars or image."""

    name: str
    kind: str
    markdown: str


@dataclass
class Figures:
    """The plots that could be shown, and a line for each one that could not."""

    figures: list[Figure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def build(plots: Sequence[Plot], revisions: Sequence[str], labels: Mapping[str, str], points: int,
          images: Images) -> Figures:
    """Markdown for each plot; `revisions` in display order (baseline first), `labels` their names."""
    shown = Figures()
    for plot in plots:
        if isinstance(plot, LinePlot):
            shown.figures.append(Figure(plot.name, "chart", mermaid.chart(plot, revisions, labels, points)))
            if plot.note:
                shown.warnings.append(f"plot {plot.name}: {plot.note}")
        elif isinstance(plot, ConfusionPlot):
            table = tables.confusion(plot, revisions, labels)
            if table is None:
                shown.warnings.append(f"plot {plot.name}: not drawn: more than {tables.MAX_CLASSES} classes")
            else:
                shown.figures.append(Figure(plot.name, "confusion", table))
        elif isinstance(plot, BarPlot):
            shown.figures.append(Figure(plot.name, "bars", tables.bars(plot, revisions, labels)))
            if tables.hidden(plot) > 0:
                shown.warnings.append(f"plot {plot.name}: {tables.hidden(plot)} categories left out: the "
                                      f"{tables.MAX_CATEGORIES} largest by this MR's value are shown")
        elif isinstance(plot, ImagePlot):
            shown.figures.append(Figure(plot.name, "image", _images(plot, revisions, labels, images)))
        elif isinstance(plot, Undrawable):
            shown.warnings.append(f"plot {plot.name}: not drawn: {plot.reason}")
    shown.warnings.extend(images.warnings)
    return shown


def _images(plot: ImagePlot, revisions: Sequence[str], labels: Mapping[str, str], images: Images) -> str:
    """The revisions' images side by side (baseline first) under the plot's name."""
    rank = {rev: i for i, rev in enumerate(revisions)}
    revs = sorted(plot.files, key=lambda r: rank.get(r, len(rank)))
    names = [labels.get(rev, rev[:12]) for rev in revs]
    cells = [images.markdown(plot.name, name, rev[:12], plot.files[rev]).replace("|", "\\|")
             for rev, name in zip(revs, names, strict=True)]
    return "\n".join([f"**{tables.cell(plot.name)}**", "", "| " + " | ".join(tables.cell(n) for n in names) + " |",
                      "|" + "---|" * len(revs), "| " + " | ".join(cells) + " |"])
