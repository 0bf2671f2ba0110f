"""Run a data-test suite: open each dataset where it lives, one aggregate scan per dataset, then the
checks that need their own query (custom SQL, leakage); every check becomes one `Result`."""
from __future__ import annotations

import datetime
import math
import re
from collections.abc import Collection, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlci.core.errors import ConfigError, EnvironmentProblem
from mlci.datatest import drift, rules, spec
from mlci.datatest.compile import Compiler, Judge, Outcome, number, schema_outcome
from mlci.datatest.profile import build_profile
from mlci.datatest.sources import DuckSession, QueryError, Source, postgres
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


def run_suite(settings: spec.DataTests, base: Path, today: datetime.date | None = None,
              only: Collection[str] | None = None) -> list[Result]:
    """Every check of every dataset (or of those named in `only`), in spec order."""
    today = today or datetime.date.today()
    chosen = [ds for ds in settings.datasets if only is None or ds.name in only]
    with ExitStack() as stack:
        profiles = {ds.name: _reference(ds, base, settings) for ds in chosen if ds.reference}
        sources = _open_all(needed(settings, chosen), base, settings, profiles, stack)
        results: list[Result] = []
        for ds in chosen:
            results.extend(_dataset(ds, sources, profiles.get(ds.name), today))
        return results


def needed(settings: spec.DataTests, chosen: Sequence[spec.Dataset]) -> list[spec.Dataset]:
    """The chosen datasets and those their leakage checks compare with."""
    others = {c.args.other for ds in chosen for c in ds.checks if c.kind == "leakage"}
    names = {ds.name for ds in chosen} | others
    return [ds for ds in settings.datasets if ds.name in names]


def read_types(ds: spec.Dataset, profile: drift.Profile | None) -> dict[str, str]:
    """The logical type each CSV column is read with: as the spec declares or implies it; a drift column as
    the reference profile read it (numeric; boolean when its categories are a boolean's text, which is how
    the profile's type detection spells `True`, `TRUE` or `t`); other columns are text."""
    columns = profile.columns if profile else {}
    drifting = {column for column, checks in ds.columns.items() for c in checks if c.kind == "drift"}
    types, _ = rules.column_types(spec.view(ds).checks,
                                  [c for c in drifting if c in columns and columns[c].kind == "numeric"])
    booleans = {c: "boolean" for c in drifting if c in columns and columns[c].kind == "categorical"
                and columns[c].categories and set(columns[c].categories) <= {"true", "false"}}
    return {**booleans, **types}


def _open_all(datasets: Sequence[spec.Dataset], base: Path, settings: spec.DataTests,
              profiles: dict[str, drift.Profile], stack: ExitStack) -> dict[str, Source]:
    session: DuckSession | None = None
    sources: dict[str, Source] = {}
    for ds in datasets:
        if ds.path is not None:
            session = session or DuckSession(settings)
            sources[ds.name] = session.open(ds, base, read_types(ds, profiles.get(ds.name)))
        else:
            sources[ds.name] = stack.enter_context(postgres(ds))
    return sources


def _dataset(ds: spec.Dataset, sources: dict[str, Source], profile: drift.Profile | None,
             today: datetime.date) -> list[Result]:
    source = sources[ds.name]
    try:
        columns = source.columns()
    except QueryError as exc:  # a source that cannot describe itself is unreadable
        raise EnvironmentProblem(f"dataset {ds.name!r}: cannot read its columns: {exc}") from None
    compiler = Compiler(source.dialect, columns, profile, ds.show_values)
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
                pending.append((column_check, column, Outcome(False, {"missing_column": column}, _exists(column,
                                                                                                         columns))))
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
            results.append(_result(ds, check, None, _leakage(check, sources[ds.name], sources[check.args.other])))
    return results


def _scan(ds: spec.Dataset, source: Source, compiler: Compiler) -> dict[str, Any]:
    try:
        return fetch(source, compiler.agg)
    except QueryError as exc:  # the scan failed: unreachable server or unreadable data
        raise EnvironmentProblem(f"dataset {ds.name!r}: the check query failed: {exc}") from None


def _exists(column: str, columns: dict[str, str]) -> str:
    """What a missing column's check expected, with the columns it may have meant: SQL names ignore case, so of
    `x` and `X` in one file the second is read as `X_1`."""
    near = [c for c in columns if c.casefold() == column.casefold()
            or re.fullmatch(re.escape(column.casefold()) + r"_\d+", c.casefold())]
    if not near:
        return "the column exists"
    return (f"the column exists (the data has {', '.join(map(repr, near))}: names are matched exactly, and of two "
            "that differ only by case the second is read as NAME_1)")


def _missing(check: spec.Check, columns: dict[str, str]) -> Outcome | None:
    named = getattr(check.args, "columns", None) or ([check.args.column] if hasattr(check.args, "column") else [])
    absent = [c for c in named if c not in columns]
    return Outcome(False, {"missing_columns": absent}, "the columns exist") if absent else None


def _malformed(ds: spec.Dataset, source: Source) -> list[Result]:
    try:
        count, first = source.malformed()
    except QueryError as exc:
        raise EnvironmentProblem(f"dataset {ds.name!r}: cannot count its malformed rows: {exc}") from None
    if not count:
        return []
    check = spec.Check("well_formed", None, where=ds.where)
    return [_result(ds, check, None, Outcome(False, {"malformed_rows": count, "first_line": first},
                                             "every row parses"))]


def _reference(ds: spec.Dataset, base: Path, settings: spec.DataTests) -> drift.Profile:
    """The dataset's reference profile: a profile JSON (checked), or a dataset profiled now."""
    assert ds.reference is not None
    path = Path(ds.reference) if Path(ds.reference).is_absolute() else base / ds.reference
    if path.suffix == ".json":
        if not path.is_file():
            raise EnvironmentProblem(f"dataset {ds.name!r}: reference profile {ds.reference} not found")
        try:
            return drift.load_profile(path)
        except ValueError as exc:  # bad JSON, bad UTF-8, or the wrong shape
            raise ConfigError([f"{ds.where}: dataset {ds.name!r}: reference {ds.reference}: {exc}"]) from None
        except OSError as exc:
            raise EnvironmentProblem(f"dataset {ds.name!r}: cannot read reference {ds.reference}: "
                                     f"{exc.strerror or exc}") from None
    raw = spec.Dataset(name=f"{ds.name} (reference)", path=ds.reference)
    source = DuckSession.for_profile(settings).open(raw, base, read_types(ds, None), detect=True)
    return build_profile(source, settings.bins, ds.reference)


def _custom_sql(ds: spec.Dataset, check: spec.Check, source: Source) -> Outcome:
    query = check.args.query.replace("{table}", source.relation)
    try:
        if check.args.max_rows is not None:
            (rows,) = source.one(f"SELECT COUNT(*) FROM ({query}) AS mlci_q")
            return Outcome(rows <= check.args.max_rows, {"rows": rows}, f"at most {check.args.max_rows} rows")
        result = source.rows(f"SELECT * FROM ({query}) AS mlci_q")
    except QueryError as exc:  # classified below: syntax is the spec's fault
        if _is_syntax_error(exc.original):
            raise ConfigError([f"{check.where}: dataset {ds.name!r}: sql: the query does not parse: {exc}"]) from None
        return Outcome(False, {"error": str(exc)}, "the query runs")
    if len(result) != 1 or len(result[0]) != 1:
        return Outcome(False, {"shape": [len(result), len(result[0]) if result else 0]}, "one row with one value")
    value = number(result[0][0])
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = numeric and (check.args.min is None or value >= check.args.min) and \
        (check.args.max is None or value <= check.args.max)
    low = "-inf" if check.args.min is None else check.args.min
    high = "inf" if check.args.max is None else check.args.max
    # A number is the statistic the query computes; anything else may be a row value.
    observed = {"value": value} if numeric or ds.show_values else {"value_type": type(result[0][0]).__name__}
    return Outcome(ok, observed, f"value in {low}..{high}")


def _is_syntax_error(exc: BaseException) -> bool:
    name = type(exc).__name__
    return name in ("ParserException", "SyntaxError") or getattr(exc, "sqlstate", None) == "42601"


def _leakage(check: spec.Check, mine: Source, other: Source) -> Outcome:
    try:
        types = (mine.columns(), other.columns())
    except QueryError as exc:
        return Outcome(False, {"error": str(exc)}, "both datasets can be read")
    cols = [ident(c) for c in check.args.columns]
    # Keys of different types (a typed id here, text there) are compared as text.
    keys = ", ".join(c if types[0].get(n) == types[1].get(n) else f"{mine.dialect.text(c)} AS {c}"
                     for c, n in zip(cols, check.args.columns, strict=True))
    not_null = " AND ".join(f"{c} IS NOT NULL" for c in cols)
    join = " AND ".join(f"a.{c} = b.{c}" for c in cols)
    sql = (f"WITH a AS (SELECT DISTINCT {keys} FROM {mine.relation} WHERE {not_null}), "
           f"b AS (SELECT DISTINCT {keys} FROM {other.relation} WHERE {not_null}) "
           f"SELECT (SELECT COUNT(*) FROM a JOIN b ON {join}), (SELECT COUNT(*) FROM a)")
    try:
        overlap, distinct = mine.one(sql)
    except QueryError as exc:  # e.g. a key column missing from the other dataset
        return Outcome(False, {"error": str(exc)}, "the key columns exist in both datasets")
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
    return Result(ds.name, column, check.kind, label, check.severity, status, _plain(outcome.observed),
                  outcome.expected, check.where)


def _plain(value: Any) -> Any:
    """Observed values as JSON data at full precision: NaN and infinities as text ("nan", "inf")."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
