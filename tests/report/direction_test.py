"""Which way a metric improves, for the arrow's colour: the gate's `better`, else the metric's name."""
from __future__ import annotations

import pytest

from mlci.report.direction import better


@pytest.mark.parametrize("address", [
    "metrics.json:loss", "m.json:val_loss", "metrics/scores.yaml:loss.final", "m.json:rmse", "m.json:RMSE",
    "m.json:MSELoss", "m.json:latency_ms", "m.json:p95LatencyMs", "m.json:error-rate", "m.json:eval.wer",
    "m.json:train_time", "m.json:brier", "m.json:psi",
])
def test_losses_errors_and_costs_improve_as_they_fall(address: str) -> None:
    assert better(address, None) == "lower"


@pytest.mark.parametrize("address", [
    "m.json:auc", "m.json:accuracy", "m.json:roc_auc", "m.json:f1", "m.json:gross_margin", "m.json:lift_at_10pct",
    "m.json:precision.macro", "m.json:timeliness", "m.json:terror_level_score", "loss.json:auc",
])
def test_other_metrics_improve_as_they_rise_words_are_whole(address: str) -> None:
    assert better(address, None) == "higher"  # `gross`, `timeliness`, `terror` hold a word but are not it


@pytest.mark.parametrize("configured", ["higher", "lower"])
def test_a_gate_that_says_wins_over_the_name(configured: str) -> None:
    assert better("m.json:val_loss", configured) == configured  # type: ignore[arg-type]
    assert better("m.json:auc", configured) == configured  # type: ignore[arg-type]
