"""Evaluate the model on the held-out test set.

Writes metrics.json (roc_auc, gini, accuracy at a 0.5 threshold,
lift_at_10pct) and two small plot files:

* plots/roc.json  - ROC curve linearly interpolated on 101 evenly spaced
  false-positive rates: [{"fpr": .., "tpr": ..}, ...]
* plots/lift.json - cumulative lift per population decile (applications
  sorted by predicted risk): [{"population_pct": 10, "lift": ..}, ...]

All numbers are rounded to 6 decimals so the files are stable in git.
"""
from __future__ import annotations

import json
import os
import pickle
import sys

import numpy as np
from sklearn.metrics import accuracy_score, roc_auc_score, roc_curve

from features import load_dataset

TEST = os.path.join("data", "prepared", "test.csv")
MODEL = os.path.join("model", "model.pkl")
METRICS = "metrics.json"
ROC = os.path.join("plots", "roc.json")
LIFT = os.path.join("plots", "lift.json")


def _r(x) -> float:
    return round(float(x), 6)


def cumulative_lift(y: np.ndarray, scores: np.ndarray, fraction: float) -> float:
    """Default rate among the top ``fraction`` riskiest applications / overall rate."""
    order = np.argsort(-scores, kind="stable")
    k = max(1, int(round(fraction * len(y))))
    return float(y[order[:k]].mean() / y.mean())


def _dump(obj, path: str) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2)
        fh.write("\n")


def main() -> int:
    with open(MODEL, "rb") as fh:
        model = pickle.load(fh)
    X, y, _ = load_dataset(TEST)
    proba = model.predict_proba(X)[:, 1]

    auc = roc_auc_score(y, proba)
    metrics = {
        "roc_auc": _r(auc),
        "gini": _r(2 * auc - 1),
        "accuracy": _r(accuracy_score(y, (proba >= 0.5).astype(int))),
        "lift_at_10pct": _r(cumulative_lift(y, proba, 0.10)),
    }
    _dump(metrics, METRICS)

    fpr, tpr, _ = roc_curve(y, proba)
    grid = np.linspace(0.0, 1.0, 101)
    _dump([{"fpr": _r(f), "tpr": _r(t)} for f, t in zip(grid, np.interp(grid, fpr, tpr))], ROC)
    _dump(
        [{"population_pct": pct, "lift": _r(cumulative_lift(y, proba, pct / 100))}
         for pct in range(10, 101, 10)],
        LIFT,
    )
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
