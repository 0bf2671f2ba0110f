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


DUCKDB = Dialect("duckdb", "VARCHAR")
POSTGRES = Dialect("postgres", "TEXT")


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


def count_if(condition: str) -> str:
    """Rows where condition holds (portable: no FILTER clause)."""
    return f"SUM(CASE WHEN {condition} THEN 1 ELSE 0 END)"


class Aggregates:
    """The select list of one scan: identical expressions are computed once."""

    def __init__(self) -> None:
        self._aliases: dict[str, str] = {}

    def add(self, expr: str) -> str:
        """The alias under which expr's value will be returned."""
        if expr not in self._aliases:
            self._aliases[expr] = f"a{len(self._aliases)}"
        return self._aliases[expr]

    def __bool__(self) -> bool:
        return bool(self._aliases)

    def query(self, relation: str) -> str:
        """SELECT every expression FROM relation."""
        select = ",\n  ".join(f"{expr} AS {alias}" for expr, alias in self._aliases.items())
        return f"SELECT\n  {select}\nFROM {relation}"

    def aliases(self) -> list[str]:
        """The aliases in select-list order."""
        return list(self._aliases.values())
