from __future__ import annotations

from collections import Counter
from pathlib import Path

from mlci.report import figures
from mlci.report.images import Images
from mlci.report.plots import BarPlot, ConfusionPlot, Series
from mlci.report.tables import MAX_CATEGORIES, MAX_CLASSES, bars, classes, confusion

LABELS = {"abc": "baseline", "workspace": "this MR"}


def test_confusion_cells_hold_baseline_then_head_counts_per_y_file() -> None:
    plot = ConfusionPlot("cm", "Confusion", "actual", "predicted", {
        Series("workspace", "test.json"): Counter({("1", "1"): 9, ("0", "0"): 7, ("0", "1"): 2}),
        Series("abc", "test.json"): Counter({("1", "1"): 8, ("0", "0"): 6, ("1", "0"): 1, ("10", "10"): 1}),
        Series("workspace", "train.json"): Counter({("a|b", "a|b"): 3}),
    })
    assert confusion(plot, ["abc", "workspace"], LABELS) == "\n".join([
        "**Confusion** · `test.json` · rows: actual, columns: predicted · baseline → this MR",
        "",
        "| actual \\\\ predicted | 0 | 1 | 10 |",
        "|---|---:|---:|---:|",
        "| **0** | 6 → 7 | 0 → 2 | 0 → 0 |",
        "| **1** | 1 → 0 | 8 → 9 | 0 → 0 |",
        "| **10** | 0 → 0 | 0 → 0 | 1 → 0 |",
        "",
        "**Confusion** · `train.json` · rows: actual, columns: predicted · this MR",
        "",
        "| actual \\\\ predicted | a\\|b |",
        "|---|---:|",
        "| **a\\|b** | 3 |",
    ])


def test_too_many_classes_is_no_table() -> None:
    many = Counter({(str(i), str(i)): 1 for i in range(MAX_CLASSES + 1)})
    assert confusion(ConfusionPlot("cm", "cm", "a", "p", {Series("workspace", ""): many}), [], LABELS) is None


def test_bars_are_a_value_per_category_and_revision() -> None:
    plot = BarPlot("imp", "Importance", "feature", "gain", {
        Series("abc", ""): {"age": 0.5, "income": 1.25}, Series("workspace", ""): {"age": 0.75, "debt": 2.0}})
    assert bars(plot, ["abc", "workspace"], LABELS).splitlines() == [
        "**Importance** · gain · baseline → this MR", "", "| feature | baseline | this MR |", "|---|---:|---:|",
        "| age | 0.5 | 0.75 |", "| debt | — | 2 |", "| income | 1.25 | — |"]


def test_classes_sort_numbers_numerically() -> None:
    assert classes(["10", "2", "1"]) == ["1", "2", "10"] and classes(["b", "10", "a"]) == ["10", "a", "b"]


def test_thousands_of_bars_keep_the_largest_and_say_how_many_are_left_out() -> None:
    values = {f"f{i}": float(i % 997) for i in range(3000)}
    plot = BarPlot("importance", "Feature importance", "feature", "gain", {Series("workspace", ""): values})
    rows = bars(plot, ["workspace"], LABELS).splitlines()[4:]
    assert len(rows) == MAX_CATEGORIES
    assert min(float(row.split("|")[2]) for row in rows) >= 960  # the 100 largest (three of each of 963..996)
    shown = figures.build([plot], ["workspace"], LABELS, 21, Images(lambda: None, True, Path("plots")))
    assert shown.warnings == [f"plot importance: {3000 - MAX_CATEGORIES} categories left out: the "
                              f"{MAX_CATEGORIES} largest by this MR's value are shown"]
