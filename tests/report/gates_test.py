from __future__ import annotations

import math

from mlci.report.diff import Change
from mlci.report.gates import check
from mlci.report.settings import Gate


def _verdicts(gate: Gate, old: object, new: object) -> list[tuple[str, bool]]:
    return [(v.rule, v.ok) for v in check({"m.json:auc": gate}, [Change("m.json:auc", old, new)])]


def test_min_max_and_absolute_drop() -> None:
    assert _verdicts(Gate(min=0.7, max=0.9, max_drop=0.01), 0.80, 0.795) == [
        ("min 0.7", True), ("max 0.9", True), ("max drop 0.01", True)]
    assert _verdicts(Gate(max_drop=0.01), 0.80, 0.78) == [("max drop 0.01", False)]


def test_percentage_limits_are_relative_to_the_baseline() -> None:
    assert _verdicts(Gate(max_drop="5%"), 4.0, 3.81) == [("max drop 5%", True)]
    assert _verdicts(Gate(max_drop="5%"), 4.0, 3.79) == [("max drop 5%", False)]
    assert _verdicts(Gate(max_rise="10%", better="lower"), 100, 111) == [("max rise 10%", False)]


def test_a_new_metric_gets_only_min_and_max() -> None:
    assert _verdicts(Gate(min=0.5, max_drop=0.0), None, 0.6) == [("min 0.5", True)]


def test_nan_and_missing_fail() -> None:
    assert _verdicts(Gate(min=0.5), 0.6, math.nan) == [("not NaN", False)]
    assert [(v.rule, v.ok) for v in check({"m.json:gone": Gate(min=0)}, [])] == [("present", False)]
