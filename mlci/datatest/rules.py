"""The rules of a data-test suite beyond its shape: argument sense, sources, references between datasets,
regular expressions (RE2 and PostgreSQL), settings, and the column types a suite declares or implies.

The rules run on views (`CheckView`, `DatasetView`) that hold whatever part of the spec is valid, so a
spec with a structural problem still gets every other problem reported in the same pass.
"""
from __future__ import annotations

import datetime
import functools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlci.core import schema
from mlci.datatest import drift

NUMERIC = ("integer", "float")
DATED = ("date", "timestamp")
NUMERIC_CHECKS = ("between", "mean", "stddev", "quantile")  # column checks that need a numeric column
RANGED = (*NUMERIC_CHECKS, "row_count")  # checks whose min/max bound a value
INT64 = 2**63 - 1
MAX_BINS = drift.MAX_BINS
MAX_THREADS = 1024
MIN_MEMORY = 16 * 1000**2  # DuckDB cannot start below a few MB
MAX_MEMORY = 2**60  # beyond any machine: a typo
PG_MAX_REPEAT = 255  # PostgreSQL's regex repetition bound (RE_DUP_MAX); RE2's is 1000


@dataclass(frozen=True)
class CheckView:
    """A check as far as it is valid: its arguments that parsed (None left out) and the ones written."""

    kind: str
    values: Mapping[str, Any]
    given: frozenset[str]
    where: str
    column: str | None = None  # None: a dataset-level check


@dataclass(frozen=True)
class DatasetView:
    """A dataset as far as it is valid."""

    name: str | None
    where: str
    values: Mapping[str, Any]
    given: frozenset[str]
    checks: tuple[CheckView, ...]
    columns: tuple[str, ...] = ()


def suite_problems(datasets: Sequence[DatasetView]) -> list[str]:
    """Every rule across fields and datasets, one `file:line: ...` line per problem."""
    names = [d.name for d in datasets if d.name is not None]
    problems: list[str] = []
    for ds in datasets:
        if ds.name is not None and names.count(ds.name) > 1:
            problems.append(f"{_at(ds)}: the name is used by {names.count(ds.name)} datasets")
        problems.extend(_dataset_problems(ds, {d.name: d for d in datasets if d.name is not None}))
    return problems


def _at(ds: DatasetView) -> str:
    return f"{ds.where}: dataset {ds.name if ds.name is not None else '?'!r}"


def _label(ds: DatasetView, check: CheckView) -> str:
    column = f"{check.column}: " if check.column is not None else ""
    return f"{check.where}: dataset {ds.name if ds.name is not None else '?'!r}: {column}{check.kind}"


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _dataset_problems(ds: DatasetView, by_name: Mapping[str, DatasetView]) -> list[str]:
    at, given, values = _at(ds), ds.given, ds.values
    problems = []
    sql_source = "dsn_env" in given
    if ("path" in given) == sql_source:
        problems.append(f"{at}: give either `path` (files) or `dsn_env` with `table` or `query` (PostgreSQL)")
    if sql_source:
        if isinstance(values.get("dsn_env"), str) and not _ENV_NAME.match(values["dsn_env"]):
            problems.append(f"{at}: dsn_env must name an environment variable holding the DSN, not the DSN")
        if ("table" in given) == ("query" in given):
            problems.append(f"{at}: with dsn_env, give exactly one of `table` or `query`")
    elif "table" in given or "query" in given:
        problems.append(f"{at}: `table`/`query` need `dsn_env`")
    problems.extend(f"{at}: column {c!r}: a NUL character cannot reach a database" for c in ds.columns if "\0" in c)
    delimiter = values.get("delimiter")
    if isinstance(delimiter, str) and (len(delimiter) != 1 or delimiter in '"\r\n\0'):
        problems.append(f"{at}: delimiter must be one character other than a quote or a line break, "
                        f"got {delimiter!r}")
    for check in ds.checks:
        label = _label(ds, check)
        problems.extend(f"{label}: {p}" for p in argument_problems(check))
        if check.kind == "drift" and "reference" not in given:
            problems.append(f"{label}: needs the dataset's `reference` (a profile JSON or a dataset path)")
        if check.kind == "leakage" and isinstance(check.values.get("other"), str):
            other = by_name.get(check.values["other"])
            if other is None:
                problems.append(f"{label}: other dataset {check.values['other']!r} is not defined")
            elif None not in (_place(ds), _place(other)) and _place(ds) != _place(other):
                problems.append(f"{label}: {check.values['other']!r} must live in the same place "
                                "(both files, or both PostgreSQL with the same dsn_env)")
    _, conflicts = column_types(ds.checks)
    problems.extend(f"{_label(ds, check)}: {message}" for check, message in conflicts if check is not None)
    return problems


def _place(ds: DatasetView) -> str | None:
    if "path" in ds.given and "dsn_env" not in ds.given:
        return "files"
    if "dsn_env" in ds.given and "path" not in ds.given and isinstance(ds.values.get("dsn_env"), str):
        return f"postgres:{ds.values['dsn_env']}"
    return None


def argument_problems(check: CheckView) -> list[str]:
    """Why a check's arguments make no sense (each line without the check's label)."""
    a, given, kind = check.values, check.given, check.kind
    problems = [*_number_problems(a), *(f"{k}: a NUL character cannot reach a database"
                                        for k, v in a.items() if _has_nul(v))]
    if kind in RANGED or kind == "sql":
        if _known(a, "min") and _known(a, "max") and a["min"] > a["max"]:
            problems.append("min is greater than max")
    if kind in RANGED and not given & {"min", "max"}:
        problems.append("give min, max or both")
    if kind == "quantile" and _known(a, "q") and not 0 <= a["q"] <= 1:
        problems.append("q must be between 0 and 1")
    if kind == "missing_ratio" and _known(a, "max") and not 0 <= a["max"] <= 1:
        problems.append("max must be a ratio between 0 and 1")
    if kind == "freshness":
        if ("min_date" in given) == ("max_age_days" in given):
            problems.append("give exactly one of min_date or max_age_days")
        if isinstance(a.get("min_date"), str) and not _is_date(a["min_date"]):
            problems.append(f"min_date must be an ISO date (YYYY-MM-DD), got {a['min_date']!r}")
        problems.extend(_at_least_zero(a, "max_age_days"))
    if kind == "sql":
        if ("max_rows" in given) + bool(given & {"min", "max"}) != 1:
            problems.append("give either max_rows, or min/max for a single-value query")
        if isinstance(a.get("query"), str) and "{table}" not in a["query"]:
            problems.append("the query must read the dataset as {table}")
        problems.extend(_at_least_zero(a, "max_rows"))
    if kind == "leakage":
        if ("max_count" in given) == ("max_ratio" in given):
            problems.append("give exactly one of max_count or max_ratio")
        problems.extend(_at_least_zero(a, "max_count"))
        if _known(a, "max_ratio") and not 0 <= a["max_ratio"] <= 1:
            problems.append("max_ratio must be a ratio between 0 and 1")
    if kind in ("leakage", "unique") and a.get("columns") == ():
        problems.append("columns: name at least one column")
    if kind == "allowed_values" and a.get("values") == ():
        problems.append("values: give at least one value")
    if kind == "drift":
        problems.extend([*_at_least_zero(a, "warn"), *_at_least_zero(a, "fail")])
        warn, fail = drift.thresholds(a.get("method") or "psi", a.get("warn"), a.get("fail"))
        if math.isfinite(warn) and math.isfinite(fail) and warn > fail:
            problems.append(f"warn ({warn:g}) is above fail ({fail:g}); with a default, set both")
    if kind == "regex" and isinstance(a.get("pattern"), str):
        problems.extend(regex_problems(a["pattern"]))
    return problems


def _number_problems(values: Mapping[str, Any]) -> list[str]:
    """Numbers go into SQL and comparisons: NaN and infinity have no meaning there, nor do integers
    beyond 64 bits (neither engine compares them with a column)."""
    problems = []
    for key, value in values.items():
        items = value if isinstance(value, tuple) else (value,)
        if any(isinstance(x, float) and not math.isfinite(x) for x in items):
            problems.append(f"{key}: must be a finite number (NaN and infinity are not; leave a bound out instead)")
        elif any(isinstance(x, int) and not isinstance(x, bool) and abs(x) > INT64 for x in items):
            problems.append(f"{key}: the number is outside the 64-bit integer range")
    return problems


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\0" in value
    if isinstance(value, tuple):
        return any(_has_nul(v) for v in value)
    if isinstance(value, Mapping):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    return False


def _known(values: Mapping[str, Any], key: str) -> bool:
    """The argument parsed as a finite number."""
    value = values.get(key)
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _at_least_zero(values: Mapping[str, Any], key: str) -> list[str]:
    return [f"{key} must not be negative"] if _known(values, key) and values[key] < 0 else []


def _is_date(text: str) -> bool:
    try:
        datetime.date.fromisoformat(text)
        return True
    except ValueError:
        return False


# Constructs outside the syntax shared by RE2 (DuckDB) and PostgreSQL ARE (docs/data-tests.md); RE2 itself
# is asked about everything else.
_UNSHARED = (
    (re.compile(r"\(\?[=!<]"), "lookaround is not supported by RE2"),
    (re.compile(r"\\[1-9]"), "backreferences are not supported by RE2"),
    (re.compile(r"\(\?P?<[A-Za-z]"), "named groups are not supported by PostgreSQL"),
    (re.compile(r"\\[AZzbBQE]"), "anchors/escapes \\A \\Z \\z \\b \\B \\Q \\E differ between RE2 and PostgreSQL"),
    (re.compile(r"\[\[:"), "POSIX classes inside brackets differ between engines; use \\d \\w \\s"),
    (re.compile(r"\\p\{"), "Unicode classes \\p{..} are not supported by PostgreSQL"),
)
_REPEAT = re.compile(r"(?<!\\)\{(\d+)(?:,(\d*))?\}")


def regex_problems(pattern: str) -> list[str]:
    """Why a pattern is outside the RE2/PostgreSQL common subset: a known difference, PostgreSQL's
    repetition bound, or whatever RE2 itself refuses (possessive and atomic groups, counts over 1000, ...)."""
    problems = [message for rx, message in _UNSHARED if rx.search(pattern)]
    counts = [int(n) for m in _REPEAT.finditer(pattern) for n in m.groups() if n]
    if any(n > PG_MAX_REPEAT for n in counts):
        problems.append(f"repetition counts above {PG_MAX_REPEAT} are refused by PostgreSQL")
    if not problems:
        refusal = re2_refusal(pattern)
        if refusal is not None:
            problems.append(f"RE2 refuses the pattern: {refusal}")
    return problems


@functools.cache
def _re2() -> Any:
    import duckdb

    return duckdb.connect(":memory:", config={"threads": 1})


def re2_refusal(pattern: str) -> str | None:
    """RE2's own reason for refusing a pattern, or None: the pattern is compiled by DuckDB (which uses RE2)."""
    import duckdb

    try:
        _re2().execute("SELECT regexp_full_match('', $1)", [pattern]).fetchall()
    except duckdb.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return first.split("Error: ", 1)[-1]
    return None


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|tb|kib|mib|gib|tib)\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
          "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}


def setting_problem(key: str, value: Any) -> str | None:
    """Why a `data_tests` setting would not work (DuckDB's memory limit, threads, profile bins)."""
    if key == "memory_limit" and isinstance(value, str):
        size = _SIZE.match(value)
        amount = float(size[1]) * _UNITS[size[2].lower()] if size else 0.0
        if not MIN_MEMORY <= amount <= MAX_MEMORY:
            return f"expected a size of at least 16MB such as 600MB, 2GB or 4GiB, got {schema.short(value)}"
    if key == "threads" and isinstance(value, int) and not 1 <= value <= MAX_THREADS:
        return f"must be between 1 and {MAX_THREADS} (leave it out to use every core), got {value}"
    if key == "bins" and isinstance(value, int) and not 2 <= value <= MAX_BINS:
        return f"must be between 2 and {MAX_BINS}, got {value}"
    return None


SETTINGS = ("memory_limit", "threads", "bins")


def column_types(checks: Iterable[CheckView], numeric: Iterable[str] = ()) -> tuple[
        dict[str, str], list[tuple[CheckView | None, str]]]:
    """The logical type of each column the checks name: declared by `schema` checks, else implied
    (numeric checks and `numeric` drift columns -> float, freshness -> timestamp); and the conflicts."""
    checks = list(checks)
    declared: dict[str, tuple[str, CheckView]] = {}
    conflicts: list[tuple[CheckView | None, str]] = []
    for check in checks:
        typed = check.values.get("columns") if check.kind == "schema" else None
        for column, logical in (typed or {}).items() if isinstance(typed, Mapping) else ():
            if column in declared and declared[column][0] != logical:
                conflicts.append((check, f"column {column!r} is typed {logical} here and "
                                         f"{declared[column][0]} at {declared[column][1].where}"))
            declared.setdefault(column, (logical, check))
    implied: dict[str, str] = {}

    def need(column: str, group: tuple[str, ...], check: CheckView | None) -> None:
        wanted = "a numeric" if group == NUMERIC else "a date or timestamp"
        if column in declared:
            if declared[column][0] not in group:
                conflicts.append((check, f"needs {wanted} column, but the schema at {declared[column][1].where} "
                                         f"types {column!r} {declared[column][0]}"))
        elif implied.setdefault(column, group[-1]) not in group:
            conflicts.append((check, f"needs {wanted} column, but another check needs {column!r} "
                                     f"to be {implied[column]}"))
    for check in checks:
        if check.column is not None and check.kind in NUMERIC_CHECKS:
            need(check.column, NUMERIC, check)
        if check.kind == "freshness" and check.column is None and isinstance(check.values.get("column"), str):
            need(check.values["column"], DATED, check)
    for column in numeric:
        need(column, NUMERIC, None)
    return {**implied, **{c: t for c, (t, _) in declared.items()}}, conflicts
