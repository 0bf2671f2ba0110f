"""The data-test suite: datasets and their checks, as frozen dataclasses parsed with file:line errors.

A check entry is either a bare name (`not_null`) or a one-key mapping (`between: {min: 0}`) that may
also carry `severity: warn|fail` and `name:`. Each check kind has an argument dataclass below.
The parse hooks (HOOKS) also apply the suite's rules (datatest/rules.py) while the file is read, to
whatever part of it is valid: structural and semantic problems come out in one pass.
"""
from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from mlci.core import schema
from mlci.datatest import rules

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
    """`regex`: every non-null value fully matches `pattern` (the RE2/PostgreSQL subset: rules.regex_problems)."""

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
    delimiter: str | None = None  # CSV: one character; default: the most frequent of , ; TAB | in the header line
    dsn_env: str | None = None
    table: str | None = None
    query: str | None = None
    reference: str | None = None
    show_values: bool = False  # opt-in: reports may show row values (min/max, newest date, small-sample stats)
    checks: tuple[DatasetCheck, ...] = ()
    columns: dict[str, tuple[ColumnCheck, ...]] = field(default_factory=dict)
    where: str = ""


@dataclass(frozen=True)
class Suite:
    """A file that holds only the suite (named by `data_tests.file`)."""

    datasets: tuple[Dataset, ...] = ()


def _shape(node: yaml.Node, level: str) -> tuple[str, yaml.Node | None, list[tuple[str, yaml.Node]]] | str:
    """A check entry as (kind, arguments without severity/name, [(severity|name, node)]), or why it is none."""
    if isinstance(node, yaml.ScalarNode) and not schema.is_null(node):
        return str(node.value), None, []
    if not isinstance(node, yaml.MappingNode):
        return f"expected a check name or mapping, got {schema.kind(node)}"
    keys = [(schema.scalar_key(k), val) for k, val in node.value]
    kinds = [(k, val) for k, val in keys if k not in OPTIONS]
    if len(kinds) != 1:
        return f"a {level} check is one mapping key naming the check (plus optional severity, name); got {len(kinds)}"
    (kind, args_node), extras = kinds[0], [(k, val) for k, val in keys if k in OPTIONS]
    if isinstance(args_node, yaml.MappingNode):  # severity/name may also sit inside the arguments
        inner = [(k, val) for k, val in args_node.value if schema.scalar_key(k) in OPTIONS]
        extras = [*extras, *((schema.scalar_key(k), val) for k, val in inner)]
        args_node = yaml.MappingNode(args_node.tag, [kv for kv in args_node.value if kv[0] not in
                                                     [k for k, _ in inner]], args_node.start_mark, args_node.end_mark)
    return kind, args_node, extras


OPTIONS = ("severity", "name")


def _entry(registry: dict[str, type], level: str) -> schema.Hook:
    def parse(v: schema.Validator, node: yaml.Node, path: str) -> Any:
        shape = _shape(node, level)
        if isinstance(shape, str):
            v.problem(node, path, shape)
            return schema.INVALID
        kind, args_node, extras = shape
        if kind not in registry:
            v.problem(node, path, f"unknown {level} check {kind!r}" + schema.did_you_mean(kind, list(registry)))
            return schema.INVALID
        args_schema = registry[kind]
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


def _datasets(v: schema.Validator, node: yaml.Node, path: str) -> Any:
    """The datasets list: each dataset validated, then every cross-field rule over what is valid."""
    if not isinstance(node, yaml.SequenceNode):
        v.problem(node, path, f"expected a list, got {schema.kind(node)}")
        return schema.INVALID
    items = [v.value(child, Dataset, f"{path}[{i}]") for i, child in enumerate(node.value)]
    views = [view(schema.build(Dataset, item)) if item is not schema.INVALID else _partial_dataset(v, child)
             for item, child in zip(items, node.value, strict=True)]
    v.problems.extend(rules.suite_problems([w for w in views if w is not None]))
    return schema.INVALID if any(i is schema.INVALID for i in items) else tuple(items)


def _data_tests(v: schema.Validator, node: yaml.Node, path: str) -> Any:
    """`data_tests`: its fields, then the settings DuckDB would refuse (memory limit, threads, bins)."""
    raw = v.mapping(node, DataTests, path)
    if isinstance(node, yaml.MappingNode):
        values = raw if raw is not schema.INVALID else _salvage(v, node, DataTests, rules.SETTINGS)
        for key_node, value_node in node.value:
            key = schema.scalar_key(key_node)
            message = rules.setting_problem(key, values.get(key)) if key in rules.SETTINGS else None
            if message:
                v.problem(value_node, f"{path}.{key}" if path else key, message)
    return raw


def override_problems(section: Mapping[str, Any], overrides: Sequence[str]) -> list[str]:
    """The same settings rules for values that came from MLCI_DATA_TESTS_* variables."""
    prefix = "MLCI_DATA_TESTS_"
    problems = []
    for name in overrides:
        key = name[len(prefix):].lower() if name.startswith(prefix) else ""
        message = rules.setting_problem(key, section.get(key)) if key in rules.SETTINGS else None
        if message:
            problems.append(f"{name}: data_tests.{key}: {message}")
    return problems


def view(ds: Dataset) -> rules.DatasetView:
    """A valid dataset as the rules see it."""
    values = {f.name: getattr(ds, f.name) for f in dataclasses.fields(Dataset)
              if f.name not in ("checks", "columns", "where") and getattr(ds, f.name) is not None}
    checks = [_check_view(c, None) for c in ds.checks]
    checks += [_check_view(c, column) for column, cs in ds.columns.items() for c in cs]
    return rules.DatasetView(ds.name, ds.where, values, frozenset(values), tuple(checks), tuple(ds.columns))


def _check_view(check: Check, column: str | None) -> rules.CheckView:
    values = {f.name: getattr(check.args, f.name) for f in dataclasses.fields(check.args)
              if getattr(check.args, f.name) is not None}
    return rules.CheckView(check.kind, values, frozenset(values), check.where, column)


def _quiet(v: schema.Validator) -> schema.Validator:
    """A validator over the same document whose problems are dropped (they were reported already)."""
    return schema.Validator(v.loader, v.shown, [], v.hooks)


def _salvage(v: schema.Validator, node: yaml.Node, cls: type, only: Sequence[str] | None = None) -> dict[str, Any]:
    """The fields of an invalid mapping node that are valid on their own (None left out)."""
    quiet, hints, out = _quiet(v), typing.get_type_hints(cls), {}
    for key_node, value_node in node.value if isinstance(node, yaml.MappingNode) else ():
        key = schema.scalar_key(key_node)
        if key in hints and key != "where" and key not in out and (only is None or key in only):
            value = quiet.value(value_node, hints[key], key)
            if value is not schema.INVALID and value is not None:
                out[key] = value
    return out


def _given(node: yaml.Node | None) -> frozenset[str]:
    """Keys written with a non-null value."""
    if not isinstance(node, yaml.MappingNode):
        return frozenset()
    return frozenset(schema.scalar_key(k) for k, val in node.value if not schema.is_null(val))


def _partial_dataset(v: schema.Validator, node: yaml.Node) -> rules.DatasetView | None:
    """What is valid of an invalid dataset: its scalar fields and each check that is valid on its own."""
    if not isinstance(node, yaml.MappingNode):
        return None
    scalars = [f.name for f in dataclasses.fields(Dataset) if f.name not in ("checks", "columns", "where")]
    values = _salvage(v, node, Dataset, scalars)
    fields = {schema.scalar_key(k): val for k, val in reversed(node.value)}
    checks = [_partial_check(v, item, DATASET_CHECKS, "dataset", None) for item in _items(fields.get("checks"))]
    column_nodes = fields.get("columns")
    columns = [(schema.scalar_key(k), val) for k, val in column_nodes.value] \
        if isinstance(column_nodes, yaml.MappingNode) else []
    checks += [_partial_check(v, item, COLUMN_CHECKS, "column", name) for name, items in columns
               for item in _items(items)]
    name = values.get("name")
    return rules.DatasetView(name if isinstance(name, str) else None, v.where(node), values,
                             _given(node) & set(scalars), tuple(c for c in checks if c is not None),
                             tuple(dict.fromkeys(name for name, _ in columns)))


def _items(node: yaml.Node | None) -> list[yaml.Node]:
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _partial_check(v: schema.Validator, node: yaml.Node, registry: dict[str, type], level: str,
                   column: str | None) -> rules.CheckView | None:
    """What is valid of one check entry: its kind and the arguments that parse."""
    shape = _shape(node, level)
    if isinstance(shape, str) or shape[0] not in registry:
        return None
    kind, args_node, _ = shape
    values = _salvage(v, args_node, registry[kind]) if args_node is not None else {}
    return rules.CheckView(kind, values, _given(args_node), v.where(node), column)


@dataclass(frozen=True)
class DataTests:
    """`data_tests` in mlci.yaml: the suite (inline, or in `file`) and how DuckDB runs it."""

    file: str | None = field(default=None, metadata={"doc": (
        "A YAML file holding the suite (`datasets:`), relative to mlci.yaml; instead of inline `datasets`.")})
    datasets: tuple[Dataset, ...] = field(default=(), metadata={"doc": "The datasets and their checks."})
    memory_limit: str = field(default="600MB", metadata={"doc": (
        "DuckDB's memory limit, at least 16MB (600MB, 2GB, 4GiB); it spills to disk beyond it. The default keeps "
        "peak RSS under 1 GB at 10M rows.")})
    threads: int | None = field(default=None, metadata={"doc": "DuckDB threads, 1 to 1024; default: all cores."})
    s3_endpoint_url: str | None = field(default=None, metadata={"doc": (
        "S3 endpoint for `s3://` paths (MinIO, Ceph, a bank's S3); credentials come from the usual "
        "AWS_* environment variables.")})
    bins: int = field(default=10, metadata={"doc": "Quantile bins of a reference profile (numeric drift), 2 to 100."})
    pull: bool = field(default=True, metadata={"doc": (
        "In a DVC repo, `dvc pull` dataset files that are missing (a CI job starts without them).")})


HOOKS: dict[Any, schema.Hook] = {
    ColumnCheck: _entry(COLUMN_CHECKS, "column"),
    DatasetCheck: _entry(DATASET_CHECKS, "dataset"),
    tuple[Dataset, ...]: _datasets,
    DataTests: _data_tests,
}
