from __future__ import annotations

from mlci.report.diff import PlotSeries, plots
from mlci.report.mermaid import chart, resample


def test_resample_interpolates_and_clamps() -> None:
    assert resample([(0, 0), (1, 10)], [-1, 0, 0.25, 1, 2]) == [0, 0, 2.5, 10, 10]


def test_chart_has_one_line_per_revision_baseline_first() -> None:
    series = PlotSeries("roc.json", 'ROC "test"', "fpr", "tpr",
                        {"workspace": [(0, 0), (1, 1)], "abc": [(0, 0), (0.5, 0.8), (1, 1)]})
    text = chart(series, ["abc", "workspace"], 3)
    assert text.splitlines() == [
        "```mermaid", "xychart-beta", "  title \"ROC 'test'\"", '  x-axis "fpr" 0 --> 1', '  y-axis "tpr" 0 --> 1',
        "  line [0, 0.8, 1]", "  line [0, 0.5, 1]", "```"]
    assert chart(series, ["nope"], 3) == ""


def test_plots_reads_dvc_specs_including_layered_ones() -> None:
    data = {"data": {"lift.json": [{"content": {
        "title": "Lift", "encoding": {"x": {"field": "pct"}},
        "layer": [{"encoding": {"y": {"field": "lift"}}}],
        "data": {"values": [{"pct": 10, "lift": 3.0, "rev": "workspace"}, {"pct": 10, "lift": "x", "rev": "a"}]}}}]}}
    (series,) = plots(data)
    assert (series.x, series.y, series.title, series.points) == ("pct", "lift", "Lift", {"workspace": [(10, 3.0)]})
