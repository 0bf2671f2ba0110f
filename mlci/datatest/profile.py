"""Compute a reference profile with SQL: quantile bin edges and fractions, category frequencies, counts."""
from __future__ import annotations

import math

from mlci.core.errors import EnvironmentProblem
from mlci.datatest import drift
from mlci.datatest.sources import QueryError, Source
from mlci.datatest.sql import Aggregates, fetch, ident, literal

NUMERIC = ("integer", "float")
CATEGORICAL = ("string", "boolean")


def build_profile(source: Source, bins: int, label: str) -> drift.Profile:
    """Profile every numeric and low-cardinality categorical column of a source; exit 3 when it cannot be read."""
    try:
        return _profile(source, bins, label)
    except QueryError as exc:
        raise EnvironmentProblem(f"cannot profile {label}: {exc}") from None


def _profile(source: Source, bins: int, label: str) -> drift.Profile:
    """Counts and bin edges in one scan (two queries in DuckDB, see sql.Aggregates), the bin counts in a
    second, then one GROUP BY per categorical column."""
    columns = source.columns()
    first = Aggregates(source.dialect)
    rows = first.add("COUNT(*)")
    present = {c: first.add(f"COUNT({ident(c)})") for c in columns}
    qs = [i / bins for i in range(1, bins)]
    quantiles = {c: first.add(source.dialect.bin_edges(f"CAST({ident(c)} AS DOUBLE PRECISION)", qs))
                 for c, t in columns.items() if t in NUMERIC}
    distinct = {c: first.add(f"COUNT(DISTINCT {ident(c)})", distinct=True)
                for c, t in columns.items() if t in CATEGORICAL}
    values = fetch(source, first)
    total = int(values[rows])
    edges = {c: sorted({float(v) for v in values[alias] or () if v is not None and math.isfinite(float(v))})
             for c, alias in quantiles.items()}
    second = Aggregates(source.dialect)
    at_or_below = {c: [second.add(source.dialect.count_if(f"{ident(c)} <= {literal(e)}")) for e in es]
                   for c, es in edges.items()}
    counted = fetch(source, second)
    profiles: dict[str, drift.ColumnProfile] = {}
    for column in columns:
        count = int(values[present[column]])
        if column in edges:
            fractions = drift.fractions_from_cumulative([float(counted[a]) for a in at_or_below[column]], count)
            profiles[column] = drift.ColumnProfile("numeric", count, total - count, tuple(edges[column]),
                                                   tuple(round(f, 8) for f in fractions))
        elif column in distinct and 0 < int(values[distinct[column]]) <= drift.MAX_CATEGORIES:
            profiles[column] = _categorical(source, column, count, total)
    return drift.Profile(rows=total, columns=profiles, source=label)


def _categorical(source: Source, column: str, count: int, total: int) -> drift.ColumnProfile:
    """Category shares of a low-cardinality column (one GROUP BY scan)."""
    text = source.dialect.text(ident(column))
    groups = source.rows(f"SELECT {text}, COUNT(*) FROM {source.relation} WHERE {ident(column)} IS NOT NULL "
                         f"GROUP BY {text} ORDER BY {text}")
    shares = {str(label): round(int(n) / count, 8) for label, n in groups}
    return drift.ColumnProfile("categorical", count, total - count, categories=shares,
                               other=round(max(1.0 - sum(shares.values()), 0.0), 8))
