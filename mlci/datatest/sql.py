"""SQL text for the two dialects mlci speaks: DuckDB (files) and PostgreSQL 9.4+ (also Greenplum 6).

Only constructs both accept are used: CASE-based conditional sums instead of FILTER, CAST, COUNT
DISTINCT; the differences (quantiles, regex full match, text type) live in `Dialect`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Dialect:
    """The few places where DuckDB and PostgreSQL differ."""

    name: str
    text_type: str
    distinct_apart: bool  # run COUNT(DISTINCT ...) in its own query (see Aggregates)

    def count_if(self, condition: str) -> str:
        """Rows where condition holds, 0 over no rows: DuckDB's count_if (faster), else a CASE sum (PostgreSQL
        9.4 has FILTER, Greenplum 6 does not reliably). Both are NULL over no rows (count_if also when the
        condition is NULL on every row: an all-NULL column), hence the COALESCE: a count is never NULL."""
        if self.name == "duckdb":
            return f"COALESCE(count_if({condition}), 0)"
        return f"COALESCE(SUM(CASE WHEN {condition} THEN 1 ELSE 0 END), 0)"

    def quantile(self, expr: str, q: float) -> str:
        """The continuous q-quantile of expr."""
        if self.name == "duckdb":
            return f"quantile_cont({expr}, {literal(q)})"
        return f"percentile_cont({literal(q)}) WITHIN GROUP (ORDER BY {expr})"

    def bin_edges(self, expr: str, qs: list[float]) -> str:
        """A list of q-quantiles for a profile's bin edges: in DuckDB a bounded-memory t-digest
        (approx_quantile; the bin fractions are then counted exactly), in PostgreSQL exact."""
        values = ", ".join(literal(q) for q in qs)
        if self.name == "duckdb":
            return f"approx_quantile({expr}, [{values}])"
        return f"percentile_cont(ARRAY[{values}]) WITHIN GROUP (ORDER BY {expr})"

    def full_match(self, expr: str, pattern: str) -> str:
        """A boolean: expr (as text) fully matches pattern."""
        text = f"CAST({expr} AS {self.text_type})"
        if self.name == "duckdb":
            return f"regexp_full_match({text}, {literal(pattern)})"
        return f"({text} ~ {literal('^(?:' + pattern + ')$')})"

    def text(self, expr: str) -> str:
        """expr cast to text."""
        return f"CAST({expr} AS {self.text_type})"


DUCKDB = Dialect("duckdb", "VARCHAR", distinct_apart=True)
POSTGRES = Dialect("postgres", "TEXT", distinct_apart=False)


def ident(name: str) -> str:
    """A quoted identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: Any) -> str:
    """A SQL literal for a YAML scalar."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} has no SQL literal")
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


class Aggregates:
    """The select lists of one dataset's scan: identical expressions are computed once.

    Where the dialect asks for it (DuckDB), COUNT(DISTINCT ...) goes to a second, narrow query: in an
    ungrouped aggregate beside dozens of others it takes DuckDB's slow path (measured: 1.5x the time
    and 2x the memory at 10M rows; docs/benchmarks.md), while on its own it reads one column.
    """

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._groups: tuple[dict[str, str], dict[str, str]] = ({}, {})

    def add(self, expr: str, distinct: bool = False) -> str:
        """The alias under which expr's value will be returned."""
        for group in self._groups:
            if expr in group:
                return group[expr]
        group = self._groups[1 if distinct and self.dialect.distinct_apart else 0]
        alias = f"a{sum(map(len, self._groups))}"
        group[expr] = alias
        return alias

    def __bool__(self) -> bool:
        return any(self._groups)

    def queries(self, relation: str) -> list[tuple[list[str], str]]:
        """(aliases, SELECT) per non-empty select list."""
        out = []
        for group in self._groups:
            if group:
                select = ",\n  ".join(f"{expr} AS {alias}" for expr, alias in group.items())
                out.append((list(group.values()), f"SELECT\n  {select}\nFROM {relation}"))
        return out


def fetch(source: Any, agg: Aggregates) -> dict[str, Any]:
    """Run every select list of `agg` on a source (anything with `relation` and `one(sql)`)."""
    values: dict[str, Any] = {}
    for aliases, sql in agg.queries(source.relation):
        values.update(zip(aliases, source.one(sql), strict=True))
    return values
