"""Regression gates per metric: min, max, max_drop, max_rise (absolute, or % of the baseline).

A metric absent from the baseline is "new": only min and max apply. NaN, or a gated metric missing
from the workspace, fails.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from mlci.report.diff import Change, as_float
from mlci.report.settings import Gate


@dataclass(frozen=True)
class Verdict:
    """One gate's result on one metric."""

    address: str
    ok: bool
    rule: str
    detail: str


def limit(value: float | str, old: float) -> float:
    """An absolute limit: a number, or "N%" of |old|."""
    if isinstance(value, str):
        return abs(old) * float(value.strip().rstrip("%")) / 100
    return float(value)


def check(gates: Mapping[str, Gate], metrics: list[Change]) -> list[Verdict]:
    """Every gate evaluated, in config order."""
    by_address = {m.address: m for m in metrics}
    verdicts: list[Verdict] = []
    for address, gate in gates.items():
        change = by_address.get(address)
        raw = change.new if change else None
        new = as_float(raw)
        if new is None:
            verdicts.append(Verdict(address, False, "present", "missing from this MR's metrics") if raw is None
                            else Verdict(address, False, "a number", f"not a float: {str(raw)[:40]}"))
            continue
        if math.isnan(new):
            verdicts.append(Verdict(address, False, "not NaN", "the value is NaN"))
            continue
        if gate.min is not None:
            verdicts.append(Verdict(address, new >= gate.min, f"min {gate.min:g}", f"{new:g}"))
        if gate.max is not None:
            verdicts.append(Verdict(address, new <= gate.max, f"max {gate.max:g}", f"{new:g}"))
        old = as_float(change.old) if change else None
        if old is None or not math.isfinite(old):
            continue  # new metric (or no usable baseline): nothing to drop or rise from
        if gate.max_drop is not None:
            allowed = limit(gate.max_drop, old)
            verdicts.append(Verdict(address, old - new <= allowed + 1e-12, f"max drop {gate.max_drop}",
                                    f"{old:g} → {new:g} ({new - old:+g})"))
        if gate.max_rise is not None:
            allowed = limit(gate.max_rise, old)
            verdicts.append(Verdict(address, new - old <= allowed + 1e-12, f"max rise {gate.max_rise}",
                                    f"{old:g} → {new:g} ({new - old:+g})"))
    return verdicts
