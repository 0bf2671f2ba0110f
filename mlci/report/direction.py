"""Which way a metric improves: a gate's `better`, else what its name says (a loss falls, an accuracy rises)."""
from __future__ import annotations

import re
from typing import Literal

Better = Literal["higher", "lower"]

# Words that name a metric that improves as it falls; matched as whole words of the metric's key (`loss`,
# `val_loss`, `loss.final`, `rmse`, `latency_ms`, `error-rate`, `p95LatencyMs`), never inside one (`gross_margin`).
LOWER_IS_BETTER = frozenset({
    "loss", "logloss", "error", "errors", "err", "rmse", "mse", "mae", "mape", "smape", "rmsle", "msle", "brier",
    "perplexity", "latency", "duration", "time", "runtime", "seconds", "ms", "fpr", "fnr", "eer", "wer", "cer",
    "aic", "bic", "cost", "divergence", "psi",
})
_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")


def better(address: str, configured: Better | None) -> Better:
    """`configured` when the gate says; else `lower` when the metric's key names a loss, an error or a cost."""
    if configured is not None:
        return configured
    key = address.rsplit(":", 1)[-1]
    words = {w.lower() for w in _WORD.findall(key)}
    return "lower" if words & LOWER_IS_BETTER else "higher"
