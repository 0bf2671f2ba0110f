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


def test_values_no_float_can_hold_fail_the_gate_and_show_no_change() -> None:
    huge = 10**400  # a metrics file may hold any JSON number
    assert _verdicts(Gate(min=0), 1.0, huge) == [("a number", False)]
    assert _verdicts(Gate(min=0, max_drop=0.1), huge, 2.0) == [("min 0", True)]  # no usable baseline
    assert _verdicts(Gate(min=0), 1.0, "n/a") == [("a number", False)]
    assert Change("m:x", huge, huge + 1).diff is None and Change("m:x", math.inf, math.inf).diff is None
    assert Change("m:x", 0, 1).relative is None and Change("m:x", 2, 3).relative == 0.5
