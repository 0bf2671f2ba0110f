"""Reading `dvc plots diff|show --json` from real DVC: every format (JSON, YAML, CSV, TSV: numbers given as
strings are numbers), every shape (top-level definitions, several y files, DVC's templates and a repo's
own), and a reason for every plot that cannot be drawn."""
from __future__ import annotations

import json
import math
from typing import Any

import pytest

from mlci.report.plots import (
    BarPlot,
    ConfusionPlot,
    ImagePlot,
    LinePlot,
    Plot,
    Series,
    Undrawable,
    number,
    parse,
)
from tests.report.get_started import GetStarted
from tests.testing import repos


@pytest.fixture(scope="module")
def diffed(get_started: GetStarted, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Plot]:
    """`dvc plots diff BASE --json` in the trained upstream repo (workspace = head), parsed."""
    out = tmp_path_factory.mktemp("plots")
    data = json.loads(repos.dvc(get_started.upstream, "plots", "diff", get_started.base, "--json", "-o",
                                str(out)).stdout)
    return {p.name: p for p in parse(data)}


def test_csv_values_given_as_strings_are_lines_of_each_revision_and_file(
        diffed: dict[str, Plot], get_started: GetStarted) -> None:
    roc = diffed["ROC"]
    assert isinstance(roc, LinePlot) and (roc.title, roc.x, roc.y, roc.note) == ("ROC", "fpr", "tpr", "")
    base, head = get_started.base, "workspace"
    assert roc.lines == {
        Series(head, "train.csv"): [(0.0, 0.0), (0.5, 0.95), (1.0, 1.0)],
        Series(head, "test.json"): [(0.0, 0.0), (0.5, 0.9), (1.0, 1.0)],
        Series(base, "train.csv"): [(0.0, 0.0), (0.5, 0.85), (1.0, 1.0)],
        Series(base, "test.json"): [(0.0, 0.0), (0.5, 0.8), (1.0, 1.0)],
    }


def test_tsv_and_yaml_plots_with_linear_and_smooth_templates(diffed: dict[str, Plot], get_started: GetStarted) -> None:
    prc, loss = diffed["Precision-Recall"], diffed["Loss"]
    assert isinstance(prc, LinePlot) and prc.lines[Series(get_started.base, "")] == [(0.2, 0.8), (0.8, 0.5)]
    assert isinstance(loss, LinePlot)
    assert loss.lines[Series("workspace", "")] == [(0.0, 1.0), (1.0, 0.775), (2.0, 0.55), (3.0, 0.325)]


def test_confusion_counts_per_revision(diffed: dict[str, Plot], get_started: GetStarted) -> None:
    cm = diffed["Confusion-Matrix"]
    assert isinstance(cm, ConfusionPlot) and (cm.x, cm.y) == ("actual", "predicted")
    assert dict(cm.counts[Series(get_started.base, "")]) == {("0", "0"): 4, ("0", "1"): 1, ("1", "1"): 4,
                                                             ("1", "0"): 1}
    assert dict(cm.counts[Series("workspace", "")]) == {("0", "0"): 5, ("1", "1"): 5}


def test_image_plots_are_the_files_dvc_wrote_for_each_revision(
        diffed: dict[str, Plot], get_started: GetStarted) -> None:
    image = diffed["eval/plots/importance.png"]
    assert isinstance(image, ImagePlot) and set(image.files) == {get_started.base, "workspace"}
    assert image.files[get_started.base].read_bytes() == get_started.images[get_started.base]
    assert image.files["workspace"].read_bytes() == get_started.images[get_started.head]


PIE = {"$schema": "https://vega.github.io/schema/vega-lite/v5.json", "data": {"values": "<DVC_METRIC_DATA>"},
       "mark": "arc", "encoding": {"theta": {"field": "<DVC_METRIC_Y>", "type": "quantitative"},
                                   "color": {"field": "<DVC_METRIC_X>", "type": "nominal"}}}
HEAT = {"$schema": "https://vega.github.io/schema/vega-lite/v5.json", "data": {"values": "<DVC_METRIC_DATA>"},
        "mark": "rect", "encoding": {"x": {"field": "<DVC_METRIC_X>", "type": "nominal"},
                                     "y": {"field": "<DVC_METRIC_Y>", "type": "nominal"}}}


@pytest.fixture(scope="module")
def shown(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Plot]:
    """`dvc plots show --json` of plots in DVC's other templates, a repo's own templates, and junk."""
    files = {
        "importance.csv": "feature,gain\nage,0.5\nincome,1.5\n",
        "scores.json": json.dumps([{"score": 0.1, "label": 1.0}, {"score": 0.7, "label": 0}]),
        "cm.csv": "actual,predicted\ncat,dog\ncat,cat\ndog,dog\n",
        "names.csv": "x,y\na,b\nc,d\n",
        "mixed.csv": "step,loss\n1,0.5\n2,n/a\n3,0.25\n",
        ".dvc/plots/pie.json": json.dumps(PIE), ".dvc/plots/heat.json": json.dumps(HEAT),
    }
    dvc_yaml = """\
plots:
- importance.csv: {template: bar_horizontal, x: gain, y: feature}
- scores.json: {template: scatter, x: score, y: label}
- cm.csv: {template: confusion_normalized, x: actual, y: predicted}
- names.csv: {x: x, y: y}
- mixed.csv: {x: step, y: loss}
- Pie: {template: pie, x: feature, y: {importance.csv: gain}}
- Heat: {template: heat, x: feature, y: {importance.csv: gain}}
"""
    repo = repos.tiny_dvc_repo(tmp_path_factory.mktemp("shapes") / "repo", dvc_yaml, files)
    return {p.name: p for p in parse(json.loads(repos.dvc(repo, "plots", "show", "--json").stdout))}


def test_other_dvc_templates(shown: dict[str, Plot]) -> None:
    bars, scatter, cm = shown["importance.csv"], shown["scores.json"], shown["cm.csv"]
    assert isinstance(bars, BarPlot) and bars.values == {Series("workspace", ""): {"age": 0.5, "income": 1.5}}
    assert isinstance(scatter, LinePlot) and scatter.lines == {Series("workspace", ""): [(0.1, 1.0), (0.7, 0.0)]}
    assert isinstance(cm, ConfusionPlot)
    assert dict(cm.counts[Series("workspace", "")]) == {("cat", "dog"): 1, ("cat", "cat"): 1, ("dog", "dog"): 1}


def test_plots_that_cannot_be_drawn_say_why(shown: dict[str, Plot]) -> None:
    reasons = {name: p.reason for name, p in shown.items() if isinstance(p, Undrawable)}
    assert reasons == {
        "names.csv": "no row has numbers for both x and y",
        "Pie": "its template names no x and y fields",
        "Heat": "its template draws rect marks: not a line, confusion or bar plot",
    }
    mixed = shown["mixed.csv"]
    assert isinstance(mixed, LinePlot) and mixed.lines == {Series("workspace", ""): [(1.0, 0.5), (3.0, 0.25)]}
    assert mixed.note == "1 of 3 rows without numbers for step and loss left out"


@pytest.mark.parametrize("value, expected", [
    ("0.5", 0.5), (" 1e-3 ", 0.001), ("-2", -2.0), (".5", 0.5), (3, 3.0), (2.5, 2.5),
    ("nan", None), ("inf", None), (math.inf, None), (math.nan, None), ("1_000", None), ("0x10", None),
    (True, None), (None, None), ("", None), ("1e999", None), ([1], None), (10**400, None), (2**53, 2.0**53),
])
def test_number(value: Any, expected: float | None) -> None:
    assert number(value) == expected


def test_a_deeply_nested_template_is_walked_without_recursion() -> None:
    spec: dict[str, Any] = {"mark": "line", "encoding": {"x": {"field": "a"}, "y": {"field": "b"}}}
    for _ in range(5000):
        spec = {"layer": [spec]}
    spec["data"] = {"values": [{"a": "1", "b": "2"}, {"a": 2, "b": 3}]}
    (plot,) = parse({"data": {"deep": [{"type": "vega", "content": spec}]}})
    assert isinstance(plot, LinePlot) and plot.lines == {Series("workspace", ""): [(1.0, 2.0), (2.0, 3.0)]}
