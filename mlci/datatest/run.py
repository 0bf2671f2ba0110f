"""Run a data-test suite: open each dataset where it lives, one aggregate scan per dataset, then the
checks that need their own query (custom SQL, leakage); every check becomes one `Result`."""
from __future__ import annotations

import datetime
import json
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlci.core.errors import ConfigError, EnvironmentProblem
from mlci.datatest import drift, spec
from mlci.datatest.compile import Compiler, Judge, Outcome, number, schema_outcome
from mlci.datatest.profile import build_profile
from mlci.datatest.sources import DuckSession, Source, clean_error, postgres
from mlci.datatest.sql import fetch, ident

SEPARATE = ("sql", "leakage")


@dataclass(frozen=True)
class Result:
    """One check's verdict; `observed` holds counts, ratios and statistics only, never row values."""

    dataset: str
    column: str | None
    check: str
    name: str
    severity: str
    status: str  # pass | warn | fail
    observed: Any
    expected: str
    where: str


def run_suite(settings: spec.DataTests, base: Path, today: datetime.date | None = None) -> list[Result]:
    """Every check of every dataset, in spec order."""
    today = today or datetime.date.today()
    with ExitStack() as stack:
        sources = _open_all(settings, base, stack)
        results: list[Result] = []
        for ds in settings.datasets:
            results.extend(_dataset(ds, sources, base, settings, today))
        return results


def _open_all(settings: spec.DataTests, base: Path, stack: ExitStack) -> dict[str, Source]:
    session: DuckSession | None = None
    sources: dict[str, Source] = {}
    for ds in settings.datasets:
        if ds.path is not None:
            session = session or DuckSession(settings)
            sources[ds.name] = session.open(ds, base)
        else:
            sources[ds.name] = stack.enter_context(postgres(ds))
    return sources


def _dataset(ds: spec.Dataset, sources: dict[str, Source], base: Path, settings: spec.DataTests,
             today: datetime.date) -> list[Result]:
    source = sources[ds.name]
    try:
        columns = source.columns()
    except Exception as exc:  # noqa: BLE001 - a source that cannot describe itself is unreadable
        raise EnvironmentProblem(f"dataset {ds.name!r}: cannot read its columns: {clean_error(exc)}") from None
    profile = _reference(ds, base, settings) if ds.reference else None
    compiler = Compiler(source.dialect, columns, profile)
    pending: list[tuple[spec.Check, str | None, Judge | Outcome]] = []
    for check in ds.checks:
        if check.kind == "schema":
            pending.append((check, None, schema_outcome(check.args, columns)))
        elif check.kind not in SEPARATE:
            missing = _missing(check, columns)
            pending.append((check, None, missing or compiler.dataset(check, today)))
    for column, column_checks in ds.columns.items():
        for column_check in column_checks:
            if column not in columns:
                pending.append((column_check, column, Outcome(False, {"missing_column": column}, "the column exists")))
            else:
                pending.append((column_check, column, compiler.column(column_check, column)))
    values = _scan(ds, source, compiler) if compiler.agg else {}
    results = [_result(ds, check, column, judged if isinstance(judged, Outcome) else judged(values))
               for check, column, judged in pending]
    results.extend(_malformed(ds, source))
    for check in ds.checks:
        if check.kind == "sql":
            results.append(_result(ds, check, None, _custom_sql(ds, check, source)))
        elif check.kind == "leakage":
            results.append(_result(ds, check, None, _leakage(ds, check, sources)))
    return results


def _scan(ds: spec.Dataset, source: Source, compiler: Compiler) -> dict[str, Any]:
    try:
        return fetch(source, compiler.agg)
    except Exception as exc:  # noqa: BLE001 - the scan failed: unreachable server or unreadable data
        raise EnvironmentProblem(f"dataset {ds.name!r}: the check query failed: {clean_error(exc)}") from None


def _missing(check: spec.Check, columns: dict[str, str]) -> Outcome | None:
    named = getattr(check.args, "columns", None) or ([check.args.column] if hasattr(check.args, "column") else [])
    absent = [c for c in named if c not in columns]
    return Outcome(False, {"missing_columns": absent}, "the columns exist") if absent else None


def _malformed(ds: spec.Dataset, source: Source) -> list[Result]:
    count, first = source.malformed()
    if not count:
        return []
    check = spec.Check("well_formed", None, where=ds.where)
    return [_result(ds, check, None, Outcome(False, {"malformed_rows": count, "first_line": first},
                                             "every row parses"))]


def _reference(ds: spec.Dataset, base: Path, settings: spec.DataTests) -> drift.Profile:
    assert ds.reference is not None
    path = Path(ds.reference) if Path(ds.reference).is_absolute() else base / ds.reference
    if path.suffix == ".json":
        if not path.is_file():
            raise EnvironmentProblem(f"dataset {ds.name!r}: reference profile {ds.reference} not found")
        try:
            return drift.load_profile(path)
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError([f"{ds.where}: dataset {ds.name!r}: reference {ds.reference}: {exc}"]) from None
    raw = spec.Dataset(name=f"{ds.name} (reference)", path=ds.reference)
    return build_profile(DuckSession.for_profile(settings).open(raw, base), settings.bins, ds.reference)


def _custom_sql(ds: spec.Dataset, check: spec.Check, source: Source) -> Outcome:
    query = check.args.query.replace("{table}", source.relation)
    try:
        if check.args.max_rows is not None:
            (rows,) = source.one(f"SELECT COUNT(*) FROM ({query}) AS mlci_q")
            return Outcome(rows <= check.args.max_rows, {"rows": rows}, f"at most {check.args.max_rows} rows")
        result = source.rows(f"SELECT * FROM ({query}) AS mlci_q")
    except Exception as exc:  # noqa: BLE001 - classified below: syntax is the spec's fault
        if _is_syntax_error(exc):
            raise ConfigError([f"{check.where}: dataset {ds.name!r}: sql: the query does not parse: "
                               f"{clean_error(exc)}"]) from None
        return Outcome(False, {"error": clean_error(exc)}, "the query runs")
    if len(result) != 1 or len(result[0]) != 1:
        return Outcome(False, {"shape": [len(result), len(result[0]) if result else 0]}, "one row with one value")
    value = number(result[0][0])
    ok = isinstance(value, (int, float)) and (check.args.min is None or value >= check.args.min) and \
        (check.args.max is None or value <= check.args.max)
    low = "-inf" if check.args.min is None else check.args.min
    high = "inf" if check.args.max is None else check.args.max
    bounds = f"{low}..{high}"
    return Outcome(ok, {"value": value}, f"value in {bounds}")


def _is_syntax_error(exc: BaseException) -> bool:
    name = type(exc).__name__
    return name in ("ParserException", "SyntaxError") or getattr(exc, "sqlstate", None) == "42601"


def _leakage(ds: spec.Dataset, check: spec.Check, sources: dict[str, Source]) -> Outcome:
    mine, other = sources[ds.name], sources[check.args.other]
    if mine.place != other.place:
        raise ConfigError([f"{check.where}: dataset {ds.name!r}: leakage: {check.args.other!r} must live in the "
                           "same place (both files, or the same PostgreSQL connection)"])
    cols = [ident(c) for c in check.args.columns]
    not_null = " AND ".join(f"{c} IS NOT NULL" for c in cols)
    keys = ", ".join(cols)
    join = " AND ".join(f"a.{c} = b.{c}" for c in cols)
    sql = (f"WITH a AS (SELECT DISTINCT {keys} FROM {mine.relation} WHERE {not_null}), "
           f"b AS (SELECT DISTINCT {keys} FROM {other.relation} WHERE {not_null}) "
           f"SELECT (SELECT COUNT(*) FROM a JOIN b ON {join}), (SELECT COUNT(*) FROM a)")
    try:
        overlap, distinct = mine.one(sql)
    except Exception as exc:  # noqa: BLE001 - e.g. a key column missing from the other dataset
        return Outcome(False, {"error": clean_error(exc)}, "the key columns exist in both datasets")
    ratio = overlap / distinct if distinct else 0.0
    if check.args.max_count is not None:
        return Outcome(overlap <= check.args.max_count, {"overlap": overlap, "ratio": ratio},
                       f"at most {check.args.max_count} shared keys with {check.args.other!r}")
    return Outcome(ratio <= check.args.max_ratio, {"overlap": overlap, "ratio": ratio},
                   f"at most {check.args.max_ratio:g} of keys shared with {check.args.other!r}")


def _result(ds: spec.Dataset, check: spec.Check, column: str | None, outcome: Outcome) -> Result:
    if outcome.ok:
        status = "pass"
    else:
        status = "warn" if check.severity == "warn" or outcome.level == "warn" else "fail"
    label = check.name or (f"{column}: {check.kind}" if column else check.kind)
    observed = json.loads(json.dumps(outcome.observed, default=str))
    return Result(ds.name, column, check.kind, label, check.severity, status, observed, outcome.expected, check.where)
