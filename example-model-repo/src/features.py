"""Feature definitions shared by training, evaluation and serving.

Every stage that turns raw application records into a model matrix goes
through :func:`transform`, so the server scores requests with exactly the
transform the model was trained on.

Raw columns used as model inputs (``RAW_FEATURES``)::

    age                int    applicant age in years (18-75)
    income             float  annual income, > 0
    loan_amount        float  requested principal, > 0
    term_months        int    12, 24, 36, 48 or 60
    num_delinquencies  int    past delinquencies, >= 0
    region             str    one of REGIONS
    employment_type    str    one of EMPLOYMENT_TYPES
    credit_history     str    one of CREDIT_HISTORY (good/fair/poor/none)

Derived columns: ``loan_to_income`` and ``payment_to_income`` (the annual
payment of a zero-interest loan over the term, divided by income).

Categorical columns are encoded with the fixed vocabularies below into
integer codes 0..k-1 and handed to HistGradientBoostingClassifier as native
categorical features (``CATEGORICAL_MASK``).
"""
from __future__ import annotations

import csv
import math

import numpy as np

REGIONS = ("north", "south", "east", "west", "central", "capital")
EMPLOYMENT_TYPES = ("salaried", "self_employed", "unemployed", "retired", "student")
CREDIT_HISTORY = ("good", "fair", "poor", "none")
TERMS = (12, 24, 36, 48, 60)

CATEGORIES = {
    "region": REGIONS,
    "employment_type": EMPLOYMENT_TYPES,
    "credit_history": CREDIT_HISTORY,
}
NUMERIC = ("age", "income", "loan_amount", "term_months", "num_delinquencies")
CATEGORICAL = tuple(CATEGORIES)
RAW_FEATURES = NUMERIC + CATEGORICAL
DERIVED = ("loan_to_income", "payment_to_income")
FEATURE_NAMES = NUMERIC + DERIVED + CATEGORICAL
CATEGORICAL_MASK = [name in CATEGORIES for name in FEATURE_NAMES]
TARGET = "default"

_CODES = {col: {v: i for i, v in enumerate(vals)} for col, vals in CATEGORIES.items()}


class FeatureError(ValueError):
    """A record cannot be turned into model features."""


def _number(record: dict, name: str, index: int) -> float:
    value = record[name]
    if isinstance(value, str):  # CSV input
        try:
            value = float(value)
        except ValueError:
            raise FeatureError(f"instance {index}: {name!r} is not a number: {value!r}") from None
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FeatureError(f"instance {index}: {name!r} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise FeatureError(f"instance {index}: {name!r} must be finite")
    return value


def record_to_row(record: dict, index: int = 0) -> list[float]:
    """Validate one raw record and return its feature row (FEATURE_NAMES order)."""
    if not isinstance(record, dict):
        raise FeatureError(f"instance {index}: expected an object, got {type(record).__name__}")
    missing = [name for name in RAW_FEATURES if name not in record]
    if missing:
        raise FeatureError(f"instance {index}: missing feature(s): {', '.join(missing)}")
    nums = {name: _number(record, name, index) for name in NUMERIC}
    if nums["income"] <= 0:
        raise FeatureError(f"instance {index}: 'income' must be > 0")
    if nums["term_months"] <= 0:
        raise FeatureError(f"instance {index}: 'term_months' must be > 0")
    cats = []
    for name in CATEGORICAL:
        value = record[name]
        code = _CODES[name].get(value) if isinstance(value, str) else None
        if code is None:
            allowed = ", ".join(CATEGORIES[name])
            raise FeatureError(f"instance {index}: {name!r} must be one of: {allowed}; got {value!r}")
        cats.append(float(code))
    loan_to_income = nums["loan_amount"] / nums["income"]
    payment_to_income = loan_to_income * 12.0 / nums["term_months"]
    return [nums[name] for name in NUMERIC] + [loan_to_income, payment_to_income] + cats


def transform(records) -> np.ndarray:
    """Turn an iterable of raw records (dicts) into a float64 feature matrix."""
    rows = [record_to_row(rec, i) for i, rec in enumerate(records)]
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(FEATURE_NAMES))


def load_dataset(path: str):
    """Read a prepared CSV and return (X, y, application_ids)."""
    with open(path, newline="", encoding="utf-8") as fh:
        records = list(csv.DictReader(fh))
    X = transform(records)
    y = np.asarray([int(rec[TARGET]) for rec in records], dtype=np.int64)
    ids = np.asarray([int(rec["application_id"]) for rec in records], dtype=np.int64)
    return X, y, ids
