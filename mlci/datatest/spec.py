"""The data-test suite: datasets and their checks, as frozen dataclasses parsed with file:line errors.

A check entry is either a bare name (`not_null`) or a one-key mapping (`between: {min: 0}`) that may
also carry `severity: warn|fail` and `name:`. Each check kind has an argument dataclass below.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from mlci.core import schema

Severity = Literal["warn", "fail"]
LogicalType = Literal["integer", "float", "string", "boolean", "date", "timestamp"]
Scalar = str | int | float | bool


@dataclass(frozen=True)
class NoArgs:
    """A check without arguments (`not_null`, column `unique`)."""


@dataclass(frozen=True)
class Range:
    """Bounds on a statistic; either may be left open."""

    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class MaxRatio:
    """`missing_ratio`: the share of NULLs at most `max` (0..1)."""

    max: float


@dataclass(frozen=True)
class AllowedValues:
    """`allowed_values`: every non-null value is in `values`."""

    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class Regex:
    """`regex`: every non-null value fully matches `pattern` (the RE2/PostgreSQL subset, docs/data-tests.md)."""

    pattern: str


@dataclass(frozen=True)
class Quantile:
    """`quantile`: the q-quantile (continuous) within bounds."""

    q: float
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class Drift:
    """`drift`: distance from the dataset's reference profile, gated on the statistic (never a p-value)."""

    method: Literal["psi", "ks", "js"] | None = None
    warn: float | None = None
    fail: float | None = None


@dataclass(frozen=True)
class RowCount:
    """`row_count`: number of rows within bounds."""

    min: int | None = None
    max: int | None = None


@dataclass(frozen=True)
class Schema:
    """`schema`: column names and logical types; `exact` also forbids other columns."""

    columns: dict[str, LogicalType]
    exact: bool = False


@dataclass(frozen=True)
class Key:
    """`unique` (dataset level): no duplicate among rows whose key columns are all non-null."""

    columns: tuple[str, ...]


@dataclass(frozen=True)
class Freshness:
    """`freshness`: the newest value of `column` is at least `min_date`, or at most `max_age_days` old."""

    column: str
    min_date: str | None = None
    max_age_days: float | None = None


@dataclass(frozen=True)
class Sql:
    """`sql`: custom SQL over `{table}`: at most `max_rows` rows, or a single value within min/max."""

    query: str
    max_rows: int | None = None
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class Leakage:
    """`leakage`: overlap of key values with dataset `other` at most `max_count` or `max_ratio`."""

    other: str
    columns: tuple[str, ...]
    max_count: int | None = None
    max_ratio: float | None = None


COLUMN_CHECKS: dict[str, type] = {
    "not_null": NoArgs, "missing_ratio": MaxRatio, "between": Range, "allowed_values": AllowedValues,
    "unique": NoArgs, "regex": Regex, "mean": Range, "stddev": Range, "quantile": Quantile, "drift": Drift,
}
DATASET_CHECKS: dict[str, type] = {
    "row_count": RowCount, "schema": Schema, "unique": Key, "freshness": Freshness, "sql": Sql,
    "leakage": Leakage,
}


@dataclass(frozen=True)
class Check:
    """One check entry: its kind, arguments, severity and where it is written."""

    kind: str
    args: Any
    severity: Severity = "fail"
    name: str | None = None
    where: str = ""


class ColumnCheck(Check):
    """Marker type for the column-level check hook."""


class DatasetCheck(Check):
    """Marker type for the dataset-level check hook."""


@dataclass(frozen=True)
class Dataset:
    """A dataset: files (`path`, DuckDB) or a PostgreSQL table/query (`dsn_env` + `table`|`query`)."""

    name: str
    path: str | None = None
    format: Literal["csv", "parquet", "jsonl"] | None = None
    dsn_env: str | None = None
    table: str | None = None
    query: str | None = None
    reference: str | None = None
    checks: tuple[DatasetCheck, ...] = ()
    columns: dict[str, tuple[ColumnCheck, ...]] = field(default_factory=dict)
    where: str = ""


@dataclass(frozen=True)
class Suite:
    """A file that holds only the suite (named by `data_tests.file`)."""

    datasets: tuple[Dataset, ...] = ()


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _entry(registry: dict[str, type], level: str) -> schema.Hook:
    def parse(v: schema.Validator, node: yaml.Node, path: str) -> Any:
        if isinstance(node, yaml.ScalarNode) and not schema.is_null(node):
            kind, args_node, extras = str(node.value), None, []
        elif isinstance(node, yaml.MappingNode):
            keys = [(schema.scalar_key(k), val) for k, val in node.value]
            kinds = [(k, val) for k, val in keys if k not in ("severity", "name")]
            if len(kinds) != 1:
                v.problem(node, path, f"a {level} check is one mapping key naming the check "
                                      f"(plus optional severity, name); got {len(kinds)}")
                return schema.INVALID
            (kind, args_node), extras = kinds[0], [(k, val) for k, val in keys if k in ("severity", "name")]
        else:
            v.problem(node, path, f"expected a check name or mapping, got {schema.kind(node)}")
            return schema.INVALID
        if kind not in registry:
            v.problem(node, path, f"unknown {level} check {kind!r}" + schema.did_you_mean(kind, list(registry)))
            return schema.INVALID
        args_schema = registry[kind]
        if isinstance(args_node, yaml.MappingNode):  # severity/name may also sit inside the arguments
            inner = [(k, val) for k, val in args_node.value if schema.scalar_key(k) in ("severity", "name")]
            extras = [*extras, *((schema.scalar_key(k), val) for k, val in inner)]
            args_node = yaml.MappingNode(args_node.tag, [kv for kv in args_node.value if kv[0] not in
                                                         [k for k, _ in inner]], args_node.start_mark,
                                         args_node.end_mark)
        if args_node is None:
            if any(f.default is dataclasses.MISSING for f in dataclasses.fields(args_schema)):
                v.problem(node, f"{path}.{kind}", "needs arguments")
                return schema.INVALID
            args: Any = args_schema()
        else:
            raw = v.mapping(args_node, args_schema, f"{path}.{kind}")
            if raw is schema.INVALID:
                return schema.INVALID
            args = schema.build(args_schema, raw)
        options: dict[str, Any] = {}
        for key, val in extras:
            hint = Severity if key == "severity" else str
            options[key] = v.value(val, hint, f"{path}.{key}")
            if options[key] is schema.INVALID:
                return schema.INVALID
        return Check(kind, args, where=v.where(node), **options)
    return parse


HOOKS: dict[Any, schema.Hook] = {
    ColumnCheck: _entry(COLUMN_CHECKS, "column"),
    DatasetCheck: _entry(DATASET_CHECKS, "dataset"),
}


def semantic_problems(datasets: tuple[Dataset, ...]) -> list[str]:
    """Rules across fields: a source per dataset, unique names, references that exist, argument sense."""
    problems: list[str] = []
    names = [d.name for d in datasets]
    for ds in datasets:
        at = f"{ds.where}: dataset {ds.name!r}"
        if names.count(ds.name) > 1:
            problems.append(f"{at}: the name is used by {names.count(ds.name)} datasets")
        sql_source = ds.dsn_env is not None
        if (ds.path is None) == (not sql_source):
            problems.append(f"{at}: give either `path` (files) or `dsn_env` with `table` or `query` (PostgreSQL)")
        if sql_source:
            if not _ENV_NAME.match(ds.dsn_env or ""):
                problems.append(f"{at}: dsn_env must name an environment variable holding the DSN, not the DSN")
            if (ds.table is None) == (ds.query is None):
                problems.append(f"{at}: with dsn_env, give exactly one of `table` or `query`")
        elif ds.table or ds.query:
            problems.append(f"{at}: `table`/`query` need `dsn_env`")
        problems.extend(_check_problems(ds, names))
    return problems


def _check_problems(ds: Dataset, names: list[str]) -> list[str]:
    problems = []
    entries = [(None, c) for c in ds.checks] + [(col, c) for col, cs in ds.columns.items() for c in cs]
    for column, check in entries:
        label = f"{check.where}: dataset {ds.name!r}: {column + ': ' if column else ''}{check.kind}"
        args = check.args
        if isinstance(args, (Range, RowCount, Quantile)) and args.min is None and args.max is None:
            problems.append(f"{label}: give min, max or both")
        if isinstance(args, (Range, RowCount, Quantile)) and None not in (args.min, args.max) \
                and args.min > args.max:  # type: ignore[operator]
            problems.append(f"{label}: min is greater than max")
        if isinstance(args, Quantile) and not 0 <= args.q <= 1:
            problems.append(f"{label}: q must be between 0 and 1")
        if isinstance(args, MaxRatio) and not 0 <= args.max <= 1:
            problems.append(f"{label}: max must be a ratio between 0 and 1")
        if isinstance(args, Freshness) and (args.min_date is None) == (args.max_age_days is None):
            problems.append(f"{label}: give exactly one of min_date or max_age_days")
        if isinstance(args, Freshness) and args.min_date is not None and not _is_date(args.min_date):
            problems.append(f"{label}: min_date must be an ISO date (YYYY-MM-DD), got {args.min_date!r}")
        if isinstance(args, Sql):
            modes = (args.max_rows is not None) + (args.min is not None or args.max is not None)
            if modes != 1:
                problems.append(f"{label}: give either max_rows, or min/max for a single-value query")
            if "{table}" not in args.query:
                problems.append(f"{label}: the query must read the dataset as {{table}}")
        if isinstance(args, Leakage):
            if args.other not in names:
                problems.append(f"{label}: other dataset {args.other!r} is not defined")
            if (args.max_count is None) == (args.max_ratio is None):
                problems.append(f"{label}: give exactly one of max_count or max_ratio")
        if isinstance(args, Drift) and ds.reference is None:
            problems.append(f"{label}: needs the dataset's `reference` (a profile JSON or a dataset path)")
        if isinstance(args, Regex):
            problems.extend(f"{label}: {p}" for p in regex_problems(args.pattern))
    return problems


def _is_date(text: str) -> bool:
    import datetime

    try:
        datetime.date.fromisoformat(text)
        return True
    except ValueError:
        return False


# Constructs outside the syntax shared by RE2 (DuckDB) and PostgreSQL ARE (docs/data-tests.md).
_UNSHARED = (
    (re.compile(r"\(\?[=!<]"), "lookaround is not supported by RE2"),
    (re.compile(r"\\[1-9]"), "backreferences are not supported by RE2"),
    (re.compile(r"\(\?P?<[A-Za-z]"), "named groups are not supported by PostgreSQL"),
    (re.compile(r"\\[AZzbBQE]"), "anchors/escapes \\A \\Z \\z \\b \\B \\Q \\E differ between RE2 and PostgreSQL"),
    (re.compile(r"\[\[:"), "POSIX classes inside brackets differ between engines; use \\d \\w \\s"),
    (re.compile(r"\\p\{"), "Unicode classes \\p{..} are not supported by PostgreSQL"),
)


def regex_problems(pattern: str) -> list[str]:
    """Why a pattern is outside the RE2/PostgreSQL common subset (or does not compile)."""
    problems = [message for rx, message in _UNSHARED if rx.search(pattern)]
    if not problems:
        try:
            re.compile(pattern)
        except re.error as exc:
            problems.append(f"the pattern does not compile: {exc}")
    return problems


@dataclass(frozen=True)
class DataTests:
    """`data_tests` in mlci.yaml: the suite (inline, or in `file`) and how DuckDB runs it."""

    file: str | None = field(default=None, metadata={"doc": (
        "A YAML file holding the suite (`datasets:`), relative to mlci.yaml; instead of inline `datasets`.")})
    datasets: tuple[Dataset, ...] = field(default=(), metadata={"doc": "The datasets and their checks."})
    memory_limit: str = field(default="600MB", metadata={"doc": (
        "DuckDB's memory limit (it spills to disk beyond it); keeps peak RSS under 1 GB at 10M rows.")})
    threads: int | None = field(default=None, metadata={"doc": "DuckDB threads; default: all cores."})
    s3_endpoint_url: str | None = field(default=None, metadata={"doc": (
        "S3 endpoint for `s3://` paths (MinIO, Ceph, a bank's S3); credentials come from the usual "
        "AWS_* environment variables.")})
    bins: int = field(default=10, metadata={"doc": "Quantile bins of a reference profile (numeric drift)."})
    pull: bool = field(default=True, metadata={"doc": (
        "In a DVC repo, `dvc pull` dataset files that are missing (a CI job starts without them).")})
