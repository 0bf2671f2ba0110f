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


def test_lines_on_the_same_even_x_values_are_drawn_as_their_points_not_interpolated() -> None:
    epochs = [(float(i), 0.1 * (i + 1)) for i in range(5)]
    plot = LinePlot("curve", "acc", "epoch", "acc", {Series("abc", "c.csv"): epochs,
                                                     Series("workspace", "c.csv"): [(x, y + 0.05) for x, y in epochs]})
    lines = chart(plot, ["abc", "workspace"], LABELS, 21).splitlines()
    assert lines[4:8] == ['  x-axis "epoch" 0 --> 4', '  y-axis "acc" 0.1 --> 0.55', "  line [0.1, 0.2, 0.3, 0.4, 0.5]",
                          "  line [0.15, 0.25, 0.35, 0.45, 0.55]"]


def test_uneven_mismatched_or_too_many_x_values_are_resampled_onto_points() -> None:
    uneven = LinePlot("p", "t", "x", "y", {Series("workspace", ""): [(0, 0), (1, 1), (4, 4)]})
    assert "  line [0, 2, 4]" in chart(uneven, ["workspace"], LABELS, 3)
    mismatched = LinePlot("p", "t", "x", "y", {Series("abc", ""): [(0, 0), (2, 2)],
                                               Series("workspace", ""): [(0, 0), (1, 1), (2, 2)]})
    assert chart(mismatched, ["abc", "workspace"], LABELS, 5).count("[0, 0.5, 1, 1.5, 2]") == 2
    many = LinePlot("p", "t", "x", "y", {Series("workspace", ""): [(float(i), float(i)) for i in range(100)]})
    assert "  line [0, 49.5, 99]" in chart(many, ["workspace"], LABELS, 3)


def test_the_largest_finite_values_are_drawn_finite() -> None:
    """y values of -1e308 and 1e308 (finite) gave `y-axis -inf --> inf` and `line [-1e+308, inf, ...]`, which
    Mermaid cannot draw: `y0 + (y1 - y0) * t` overflows where y1 - y0 does; x values the same."""
    big = 1e308
    assert resample([(0, -big), (1, big)], [0, 0.5, 1]) == [-big, 0.0, big]
    plot = LinePlot("v", "v", "x", "v", {Series("workspace", "v.json"): [(-big, -big), (0, big), (big, -big)]})
    drawn = chart(plot, ["workspace"], LABELS, 5)
    assert "inf" not in drawn and "nan" not in drawn, drawn
    assert '  x-axis "x" -1e+308 --> 1e+308' in drawn and '  y-axis "v" -1e+308 --> 1e+308' in drawn
