from __future__ import annotations

from mlci.report.mermaid import chart, resample, text
from mlci.report.plots import LinePlot, Series

LABELS = {"abc": "baseline", "workspace": "this MR"}


def test_resample_interpolates_and_clamps() -> None:
    assert resample([(0, 0), (1, 10)], [-1, 0, 0.25, 1, 2]) == [0, 0, 2.5, 10, 10]
    assert resample([(1, 10), (0, 0), (0.5, 4)], [0.25, 0.75]) == [2, 7]  # sorted by x first


def test_chart_has_one_line_per_series_baseline_first_and_a_legend_in_palette_order() -> None:
    plot = LinePlot("roc", 'ROC "test"', "fpr", "tpr", {
        Series("workspace", "test.json"): [(0, 0), (1, 1)],
        Series("abc", "test.json"): [(0, 0), (0.5, 0.8), (1, 1)],
        Series("abc", "train.csv"): [(0, 0), (1, 0.5)],
    })
    lines = chart(plot, ["abc", "workspace"], LABELS, 3).splitlines()
    assert lines[0] == "```mermaid" and lines[1].startswith("%%{init: {\"themeVariables\": {\"xyChart\": "
                                                             "{\"plotColorPalette\": \"#4285f4, #f4a020, ")
    assert lines[2:] == [
        "xychart-beta", "  title \"ROC 'test'\"", '  x-axis "fpr" 0 --> 1', '  y-axis "tpr" 0 --> 1',
        "  line [0, 0.8, 1]", "  line [0, 0.25, 0.5]", "  line [0, 0.5, 1]", "```", "",
        "🟦 baseline `test.json` · 🟧 baseline `train.csv` · 🟩 this MR `test.json`"]


def test_labels_from_files_cannot_break_the_chart_or_the_fence() -> None:
    assert text('a"b`c\nd\x00e') == "a'b'c de"
    plot = LinePlot("p", "```\ninjected", "x\r\n", "y", {Series("workspace", "`x`"): [(0, 1), (2, 3)]})
    block = chart(plot, ["workspace"], LABELS, 2)
    assert block.count("```") == 2 and "title \"''' injected\"" in block and "this MR `'x'`" in block
