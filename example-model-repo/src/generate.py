"""Generate the synthetic credit-application data set.

Writes data/raw/applications.csv with ``generate.n_rows`` rows. Everything is
drawn from ``numpy.random.default_rng(generate.seed)`` in a fixed order, so the
file is byte-for-byte identical for a given seed (no wall clock involved:
application dates lie in the fixed range 2024-01-01..2025-12-31).

Customers are drawn first (age, region, employment, credit history, income
level); each application picks a customer, so a customer can apply more than
once. The ``default`` target comes from a logistic model of the features plus
Gaussian noise (see ``default_logit``).
"""
from __future__ import annotations

import csv
import os
import sys

import numpy as np
import yaml

from features import CREDIT_HISTORY, EMPLOYMENT_TYPES, REGIONS, TERMS

OUT = os.path.join("data", "raw", "applications.csv")
COLUMNS = (
    "application_id", "customer_id", "application_date", "age", "income",
    "loan_amount", "term_months", "region", "employment_type",
    "credit_history", "num_delinquencies", "default",
)
START = np.datetime64("2024-01-01")
N_DAYS = int((np.datetime64("2025-12-31") - START).astype(np.int64)) + 1  # 731

REGION_P = np.array([0.17, 0.16, 0.15, 0.14, 0.16, 0.22])
TERM_P = np.array([0.10, 0.20, 0.35, 0.15, 0.20])


def _pick(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """Vectorised categorical draw: one row of probabilities per sample."""
    probs = probs / probs.sum(axis=1, keepdims=True)
    cdf = np.cumsum(probs, axis=1)
    u = rng.random(len(probs))[:, None]
    return np.minimum((u > cdf).sum(axis=1), probs.shape[1] - 1)


def default_logit(age, income, loan, term, region, emp, hist, delinq, noise):
    """Log-odds of default. Indices refer to the vocabularies in features.py."""
    lti = loan / income
    pti = lti * 12.0 / term
    z = -2.9
    z += 0.9 * np.log(lti / 0.25)
    z += 1.5 * np.minimum(pti, 1.5)
    z += 0.4 * np.minimum(delinq, 5)
    z += np.array([-0.7, 0.0, 0.8, 0.35])[hist]            # good fair poor none
    z += np.array([0.0, 0.35, 1.1, 0.15, 0.6])[emp]        # sal self unemp ret stud
    z += np.array([0.0, 0.15, -0.05, 0.05, 0.0, -0.15])[region]
    z += 0.05 * np.maximum(0, 30 - age) + 0.03 * np.maximum(0, age - 65)
    z += 0.01 * (term - 36)
    z -= 0.25 * np.log(income / 40000.0)
    return z + noise


def generate(n_rows: int, seed: int):
    rng = np.random.default_rng(seed)
    n_cust = 2 * n_rows

    # --- customers -------------------------------------------------------
    cust_age0 = 18 + np.floor(57 * rng.beta(2.0, 3.0, n_cust)).astype(np.int64)
    cust_region = _pick(rng, np.tile(REGION_P, (n_cust, 1)))
    emp_p = np.tile(np.array([0.72, 0.15, 0.08, 0.02, 0.03]), (n_cust, 1))
    emp_p[cust_age0 >= 62] = [0.25, 0.10, 0.05, 0.60, 0.00]
    emp_p[cust_age0 <= 24] = [0.40, 0.05, 0.15, 0.00, 0.40]
    cust_emp = _pick(rng, emp_p)
    hist_p = np.tile(np.array([0.47, 0.30, 0.15, 0.08]), (n_cust, 1))
    hist_p[cust_age0 <= 25] = [0.20, 0.25, 0.15, 0.40]
    cust_hist = _pick(rng, hist_p)
    years = cust_age0 - 18
    log_inc = (
        10.55
        + np.array([0.0, 0.10, -0.90, -0.30, -1.00])[cust_emp]
        + np.array([0.0, -0.05, 0.0, 0.05, 0.0, 0.20])[cust_region]
        + 0.03 * years - 0.0005 * years ** 2
        + rng.normal(0.0, 0.45, n_cust)
    )

    # --- applications ----------------------------------------------------
    day = np.sort(rng.integers(0, N_DAYS, n_rows))
    cust = rng.integers(0, n_cust, n_rows)
    age = np.minimum(75, cust_age0[cust] + day // 365)
    income = np.round(np.exp(log_inc[cust] + rng.normal(0.0, 0.05, n_rows)), 2)
    income = np.maximum(income, 1000.0)
    term_idx = _pick(rng, np.tile(TERM_P, (n_rows, 1)))
    term = np.asarray(TERMS, dtype=np.int64)[term_idx]
    loan = income * np.exp(rng.normal(np.log(0.22) + 0.004 * (term - 36), 0.55, n_rows))
    loan = np.clip(np.round(loan / 50.0) * 50.0, 1000.0, 150000.0)
    hist = cust_hist[cust]
    delinq = rng.poisson(np.array([0.1, 0.5, 1.6, 0.2])[hist])
    noise = rng.normal(0.0, 0.4, n_rows)
    z = default_logit(age, income, loan, term, cust_region[cust], cust_emp[cust], hist, delinq, noise)
    default = (rng.random(n_rows) < 1.0 / (1.0 + np.exp(-z))).astype(np.int64)

    dates = np.datetime_as_string(START + day.astype("timedelta64[D]"), unit="D")
    return {
        "application_id": 1_000_001 + np.arange(n_rows),
        "customer_id": 500_001 + cust,
        "application_date": dates,
        "age": age,
        "income": income,
        "loan_amount": loan,
        "term_months": term,
        "region": np.asarray(REGIONS)[cust_region[cust]],
        "employment_type": np.asarray(EMPLOYMENT_TYPES)[cust_emp[cust]],
        "credit_history": np.asarray(CREDIT_HISTORY)[hist],
        "num_delinquencies": delinq,
        "default": default,
    }


def write_csv(cols: dict, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    text = {
        "income": [f"{v:.2f}" for v in cols["income"]],
        "loan_amount": [f"{v:.2f}" for v in cols["loan_amount"]],
    }
    columns = [text[c] if c in text else cols[c].tolist() for c in COLUMNS]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(zip(*columns))


def main() -> int:
    with open("params.yaml", encoding="utf-8") as fh:
        params = yaml.safe_load(fh)["generate"]
    cols = generate(int(params["n_rows"]), int(params["seed"]))
    write_csv(cols, OUT)
    n = len(cols["default"])
    print(f"wrote {OUT}: {n} rows, default rate {cols['default'].mean():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
