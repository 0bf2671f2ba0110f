"""Compile a dataset's checks into one aggregate scan, and judge each check from the scan's values.

Each check adds expressions to a shared `Aggregates` select list and returns a judge that turns the
returned values into an `Outcome`. Checks that cannot share the scan (custom SQL, leakage) run their
own query in `run.py`.
"""
from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from mlci.datatest import drift, spec
from mlci.datatest.sql import Aggregates, Dialect, ident, literal

NUMERIC = ("integer", "float")
DATED = ("date", "timestamp")
MIN_VALUES = 10  # a statistic over fewer values (or a quantile with fewer beyond it) is close to a row value


@dataclass(frozen=True)
class Outcome:
    """A judged check: ok, or the severity it reached (`level`, for drift's warn band)."""

    ok: bool
    observed: Any
    expected: str
    level: str | None = None  # "warn" when a drift statistic is in the warn band


Judge = Callable[[Mapping[str, Any]], Outcome]


def number(value: Any) -> Any:
    """A database value as a JSON-friendly number, date or string."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return value


def _bounds(low: float | None, high: float | None) -> str:
    if low is None:
        return f"<= {high:g}"
    if high is None:
        return f">= {low:g}"
    return f"between {low:g} and {high:g}"


def _within(value: Any, low: float | None, high: float | None) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return (low is None or value >= low) and (high is None or value <= high)


class Compiler:
    """Adds checks of one dataset to one scan.

    Privacy rule: judges report counts, ratios and statistics, never a row value. A column's min or max
    and the newest date are row values, and so is a statistic over fewer than MIN_VALUES values (a quantile
    with fewer beyond it on either side): they are shown only with the dataset's `show_values: true`."""

    def __init__(self, dialect: Dialect, columns: Mapping[str, str], profile: drift.Profile | None,
                 show_values: bool = False) -> None:
        self.dialect, self.columns, self.profile, self.show_values = dialect, columns, profile, show_values
        self.agg = Aggregates(dialect)

    def column(self, check: spec.Check, column: str) -> Judge | Outcome:
        """A column check: a judge, or an Outcome already (e.g. a type that does not fit)."""
        col = ident(column)
        kind, args = check.kind, check.args
        ctype = self.columns[column]
        if kind in ("between", "mean", "stddev", "quantile") and ctype not in NUMERIC:
            return Outcome(False, {"type": ctype}, f"a numeric column for {kind}")
        rows = self.agg.add("COUNT(*)")
        if kind == "not_null":
            nulls = self.agg.add(self.dialect.count_if(f"{col} IS NULL"))
            return lambda v: Outcome(v[nulls] == 0, {"nulls": v[nulls]}, "no NULL")
        if kind == "missing_ratio":
            nulls = self.agg.add(self.dialect.count_if(f"{col} IS NULL"))

            def missing(v: Mapping[str, Any]) -> Outcome:
                ratio = v[nulls] / v[rows] if v[rows] else 0.0
                return Outcome(ratio <= args.max, {"missing_ratio": ratio, "nulls": v[nulls]},
                               f"missing ratio <= {args.max:g}")
            return missing
        if kind == "between":
            out = self.agg.add(self.dialect.count_if(_outside(col, args.min, args.max)))
            present = self.agg.add(f"COUNT({col})")
            low, high = (self.agg.add(f"MIN({col})"), self.agg.add(f"MAX({col})")) if self.show_values else ("", "")

            def between(v: Mapping[str, Any]) -> Outcome:
                observed = {"out_of_range": v[out], "out_of_range_ratio": v[out] / v[present] if v[present] else 0.0}
                if self.show_values:
                    observed |= {"min": number(v[low]), "max": number(v[high])}
                return Outcome(v[out] == 0, observed, f"all values {_bounds(args.min, args.max)}")
            return between
        if kind == "allowed_values":
            lhs, values = self._comparable(col, ctype, args.values)
            other = self.agg.add(self.dialect.count_if(f"{col} IS NOT NULL AND {lhs} NOT IN ({values})"))
            return lambda v: Outcome(v[other] == 0, {"not_allowed": v[other]}, f"values in a set of {len(args.values)}")
        if kind == "unique":
            dup = self.agg.add(f"COUNT({col}) - COUNT(DISTINCT {col})", distinct=True)
            return lambda v: Outcome(v[dup] == 0, {"duplicates": v[dup]}, "no duplicate non-null value")
        if kind == "regex":
            matches = self.dialect.full_match(col, args.pattern)
            bad = self.agg.add(self.dialect.count_if(f"{col} IS NOT NULL AND NOT {matches}"))
            return lambda v: Outcome(v[bad] == 0, {"not_matching": v[bad]}, "every value matches the pattern")
        if kind in ("mean", "stddev", "quantile"):
            return self._statistic(kind, args, col)
        if kind == "drift":
            return self._drift(check, column, col)
        raise AssertionError(f"unhandled column check {kind}")

    def _drift(self, check: spec.Check, column: str, col: str) -> Judge | Outcome:
        assert self.profile is not None
        ref = self.profile.columns.get(column)
        if ref is None:
            return Outcome(False, {}, f"column {column!r} in the reference profile")
        method = check.args.method or "psi"
        if method == "ks" and ref.kind != "numeric":
            return Outcome(False, {"reference_kind": ref.kind}, "ks needs a numeric column")
        warn, fail = drift.thresholds(method, check.args.warn, check.args.fail)
        present = self.agg.add(f"COUNT({col})")
        if ref.kind == "numeric":
            if self.columns[column] not in NUMERIC:
                return Outcome(False, {"type": self.columns[column]}, "a numeric column, as in the reference")
            cells = [self.agg.add(self.dialect.count_if(f"{col} <= {literal(e)}")) for e in ref.edges]

            def current(v: Mapping[str, Any]) -> list[float]:
                return drift.fractions_from_cumulative([float(v[c]) for c in cells], float(v[present]))
        else:
            text = self.dialect.text(col)
            cells = [self.agg.add(self.dialect.count_if(f"{text} = {literal(c)}")) for c in ref.categories]

            def current(v: Mapping[str, Any]) -> list[float]:
                total = float(v[present])
                shares = [float(v[c]) / total if total else 0.0 for c in cells]
                return [*shares, max(1.0 - sum(shares), 0.0) if total else 0.0]

        def judge(v: Mapping[str, Any]) -> Outcome:
            if not v[present]:  # no rows, or every value NULL (or malformed): nothing to compare, and that is drift
                return Outcome(False, {"values": 0}, "non-null values to compare with the reference")
            value = drift.STATISTICS[method](ref.bins(), current(v))
            level = "fail" if value >= fail else "warn" if value >= warn else None
            return Outcome(level is None, {method: value}, f"{method} < {warn:g} (warn), < {fail:g} (fail)", level)
        return judge

    def _statistic(self, kind: str, args: Any, col: str) -> Judge:
        """mean, stddev or quantile: the value, unless so few values make it one of theirs."""
        value = f"CAST({col} AS DOUBLE PRECISION)"
        q = getattr(args, "q", 0.5)
        expr = {"mean": f"AVG({value})", "stddev": f"STDDEV_SAMP({value})",
                "quantile": self.dialect.quantile(value, q)}[kind]
        stat, present = self.agg.add(expr), self.agg.add(f"COUNT({col})")
        label = f"quantile {q:g}" if kind == "quantile" else kind
        side = min(q, 1 - q) if kind == "quantile" else 1.0

        def judge(v: Mapping[str, Any]) -> Outcome:
            observed: dict[str, Any] = {kind: number(v[stat])}
            if not self.show_values and side * v[present] < MIN_VALUES:
                observed = {kind: None, "withheld": True, "values": v[present]}
            return Outcome(_within(number(v[stat]), args.min, args.max), observed,
                           f"{label} {_bounds(args.min, args.max)}")
        return judge

    def _comparable(self, col: str, ctype: str, values: tuple[Any, ...]) -> tuple[str, str]:
        """The column and the value list of `allowed_values`, compared in the column's type when every value
        has it, else as text (a numeric literal beside a text column is an error in both engines)."""
        numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in values)
        if (ctype in NUMERIC and numbers) or (ctype == "boolean" and all(isinstance(x, bool) for x in values)):
            return col, ", ".join(literal(x) for x in values)
        texts = ", ".join(literal(str(x).lower() if isinstance(x, bool) else str(x)) for x in values)
        return (col if ctype == "string" else self.dialect.text(col)), texts

    def dataset(self, check: spec.Check, today: datetime.date) -> Judge | Outcome:
        """A dataset-level check that shares the scan (row_count, unique key, freshness)."""
        args = check.args
        if check.kind == "row_count":
            rows = self.agg.add("COUNT(*)")
            return lambda v: Outcome(_within(v[rows], args.min, args.max), {"rows": v[rows]},
                                     f"rows {_bounds(args.min, args.max)}")
        if check.kind == "unique":
            cols = [ident(c) for c in args.columns]
            if len(cols) == 1:
                expr = f"COUNT({cols[0]}) - COUNT(DISTINCT {cols[0]})"
            else:
                all_set = " AND ".join(f"{c} IS NOT NULL" for c in cols)
                expr = (f"{self.dialect.count_if(all_set)} - "
                        f"COUNT(DISTINCT CASE WHEN {all_set} THEN ({', '.join(cols)}) END)")
            dup = self.agg.add(expr, distinct=True)
            return lambda v: Outcome(v[dup] == 0, {"duplicates": v[dup]}, f"unique ({', '.join(args.columns)})")
        if check.kind == "freshness":
            return self._freshness(args, today)
        raise AssertionError(f"unhandled dataset check {check.kind}")

    def _freshness(self, args: spec.Freshness, today: datetime.date) -> Judge | Outcome:
        """The age of the newest value in days (the date itself only with show_values)."""
        ctype = self.columns[args.column]
        if ctype not in DATED:
            return Outcome(False, {"type": ctype}, "a date or timestamp column for freshness")
        newest = self.agg.add(f"MAX(CAST({ident(args.column)} AS DATE))")
        bound = datetime.date.fromisoformat(args.min_date) if args.min_date is not None else None

        def fresh(v: Mapping[str, Any]) -> Outcome:
            expected = f"newest >= {bound.isoformat()}" if bound is not None else f"age <= {args.max_age_days:g} days"
            if v[newest] is None:  # no rows, or no date in any: nothing is fresh
                return Outcome(False, {"dates": 0}, expected)
            age = (today - v[newest]).days
            observed: dict[str, Any] = {"age_days": age}
            if self.show_values:
                observed["newest"] = number(v[newest])
            return Outcome(v[newest] >= bound if bound is not None else age <= args.max_age_days, observed, expected)
        return fresh


def _outside(col: str, low: float | None, high: float | None) -> str:
    parts = ([f"{col} < {literal(low)}"] if low is not None else []) + \
        ([f"{col} > {literal(high)}"] if high is not None else [])
    return " OR ".join(parts)


def schema_outcome(args: spec.Schema, columns: Mapping[str, str]) -> Outcome:
    """Compare expected column names and logical types with the data's."""
    missing = sorted(set(args.columns) - set(columns))
    wrong = {c: columns[c] for c, t in args.columns.items() if c in columns and columns[c] != t}
    extra = sorted(set(columns) - set(args.columns)) if args.exact else []
    observed = {"missing": missing, "wrong_type": wrong, "unexpected": extra}
    return Outcome(not (missing or wrong or extra), observed,
                   f"{len(args.columns)} columns with their types" + (", nothing else" if args.exact else ""))
