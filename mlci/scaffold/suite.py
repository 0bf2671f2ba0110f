"""A data-test suite and its drift reference from one dataset's profile, with nothing in them that identifies a row.

Privacy rule (what `mlci init --from-data` commits): column names, types, counts and ratios; ranges from the 1st and
99th percentiles widened by a margin and rounded outward to a power of ten, always strictly beyond the column's
minimum and maximum (never one of them); value sets only for text and boolean columns with at most
drift.MAX_CATEGORIES values, each seen at least MIN_VALUES times (a rarer value is close to naming its row: the
profile counts it as "other", and the column gets no value set); the reference profile's quantile edges without
any that is a column's minimum or maximum (their bins merged).
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, get_args

from mlci.core import log
from mlci.datatest import drift, spec
from mlci.datatest.compile import MIN_VALUES
from mlci.datatest.profile import CATEGORICAL, NUMERIC, build_profile
from mlci.datatest.sources import DuckSession, QueryError, Source
from mlci.datatest.sql import Aggregates, fetch, ident

MARGIN = 0.1  # of the 1st..99th percentile spread, added on both sides
QUANTILES = (0.01, 0.99)
EXACT_LIMIT = 2 ** 53  # beyond it a bound is not exact as a YAML float: no range
LOGICAL = frozenset(get_args(spec.LogicalType))

Entry = tuple[str, Any]  # (check kind, its arguments or None): one line of the suite


@dataclass(frozen=True)
class Generated:
    """A suite for one dataset (what ci_templates/data-tests.yaml.j2 renders) and its reference profile."""

    name: str
    data_path: str  # relative to the repository, as the suite names it
    reference: str
    rows: int
    schema: dict[str, str]
    exact: bool
    columns: dict[str, list[Entry]]
    profile: drift.Profile
    malformed: int


@dataclass(frozen=True)
class _Column:
    """What one scan tells of a column: its NULLs and, when numeric, its extremes (never written anywhere) and
    outer percentiles."""

    nulls: int
    lowest: float | int | None = None
    highest: float | int | None = None
    q_low: float | None = None
    q_high: float | None = None


def dataset_name(data_path: str) -> str:
    """A dataset name from the file's name: `data/train.csv` -> `train`."""
    stem = Path(data_path).name.split(".")[0]
    return re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_") or "data"


def generate(repo: Path, data_path: str, reference: str, bins: int) -> Generated:
    """Profile the file at `data_path` (relative to `repo`) through DuckDB, and derive the suite."""
    settings = spec.DataTests(bins=bins)
    name = dataset_name(data_path)
    source = DuckSession.for_profile(settings).open(spec.Dataset(name=name, path=data_path), repo, {}, detect=True)
    profile = build_profile(source, bins, data_path)
    types = source.columns()
    scanned = _scan(source, types, data_path)
    malformed, _ = source.malformed()
    profile = private_profile(profile, scanned)
    kept = {c: t for c, t in types.items() if "\0" not in c}  # a NUL cannot reach the database (rules.py)
    columns = {c: _entries(t, profile.rows, scanned[c], profile.columns.get(c)) for c, t in kept.items()}
    schema = {c: t for c, t in kept.items() if t in LOGICAL}
    return Generated(name=name, data_path=data_path, reference=reference, rows=profile.rows, schema=schema,
                     exact=len(schema) == len(types), columns=columns, profile=profile, malformed=malformed)


def _scan(source: Source, types: dict[str, str], label: str) -> dict[str, _Column]:
    """Every column's NULLs, and min, max and the outer percentiles of the numeric ones, in one scan."""
    from mlci.core.errors import EnvironmentProblem

    agg = Aggregates(source.dialect)
    rows = agg.add("COUNT(*)")
    present = {c: agg.add(f"COUNT({ident(c)})") for c in types}
    numeric = {c: (agg.add(f"MIN({ident(c)})"), agg.add(f"MAX({ident(c)})"),
                   *(agg.add(source.dialect.quantile(f"CAST({ident(c)} AS DOUBLE)", q)) for q in QUANTILES))
               for c, t in types.items() if t in NUMERIC}
    try:
        values = fetch(source, agg)
    except QueryError as exc:
        raise EnvironmentProblem(f"cannot profile {label}: {exc}") from None
    total = int(values[rows])
    out = {}
    for c in types:
        aliases = numeric.get(c)
        stats = (*(_plain(values[a]) for a in aliases[:2]), *(_float(values[a]) for a in aliases[2:])) \
            if aliases else ()
        out[c] = _Column(total - int(values[present[c]]), *stats)
    return out


def _plain(value: Any) -> float | int | None:
    """An extreme as Python's exact int (integer columns) or float (a DECIMAL becomes its nearest float)."""
    if value is None or isinstance(value, int):
        return value
    return float(value)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def private_profile(profile: drift.Profile, scanned: dict[str, _Column]) -> drift.Profile:
    """The profile without row values: numeric edges that are a column's min or max dropped (their two bins
    merged: the fractions stay exact), category columns whose values never repeat left out."""
    columns: dict[str, drift.ColumnProfile] = {}
    for name, col in profile.columns.items():
        if col.kind == "numeric":
            stats = scanned.get(name)
            extremes = {stats.lowest, stats.highest} if stats else set()
            edges, fractions = list(col.edges), list(col.fractions)
            for i in reversed(range(len(edges))):
                if edges[i] in extremes:
                    fractions[i] = round(fractions[i] + fractions.pop(i + 1), 8)
                    edges.pop(i)
            columns[name] = dataclasses.replace(col, edges=tuple(edges), fractions=tuple(fractions))
        else:
            common = {label: share for label, share in col.categories.items() if _seen(share, col) >= MIN_VALUES}
            if common:  # the rarer values count as "other": their share stays, their names go
                columns[name] = dataclasses.replace(
                    col, categories=common, other=round(max(1.0 - math.fsum(common.values()), 0.0), 8))
    return dataclasses.replace(profile, columns=columns)


def _seen(share: float, col: drift.ColumnProfile) -> int:
    """How many of the column's values a category's share stands for."""
    return round(share * col.count)


def _complete(col: drift.ColumnProfile) -> bool:
    """Whether the categories are every value the column holds (none was too rare to name)."""
    return sum(_seen(share, col) for share in col.categories.values()) == col.count


def _entries(logical: str, rows: int, column: _Column, ref: drift.ColumnProfile | None) -> list[Entry]:
    """A column's checks: its NULLs, then its range or value set, then drift from the reference."""
    out: list[Entry] = [("not_null", None) if column.nulls == 0 else
                        ("missing_ratio", {"max": missing_bound(column.nulls, rows)})]
    if logical in NUMERIC:
        bounds = widened(column, integer=logical == "integer")
        if bounds is not None:
            out.append(("between", {"min": bounds[0], "max": bounds[1]}))
    if ref is not None and ref.kind == "categorical" and logical in CATEGORICAL and _complete(ref):
        labels = list(ref.categories)
        out.append(("allowed_values", {"values": [x == "true" for x in labels] if logical == "boolean" else labels}))
    if ref is not None and ref.count:
        out.append(("drift", None))
    return out


def missing_bound(nulls: int, rows: int) -> float:
    """missing_ratio's max: the ratio seen plus half of it (at least one point), rounded up to a hundredth."""
    ratio = nulls / rows if rows else 0.0
    return min(1.0, math.ceil(round((ratio + max(0.01, ratio / 2)) * 100, 6)) / 100)  # 15.000000000000002: 15


def widened(column: _Column, integer: bool) -> tuple[float | int, float | int] | None:
    """Bounds beyond the outer percentiles by MARGIN of their spread, rounded outward to a power of ten about the
    size of the margin, and strictly beyond the column's extremes (so the data passes without its min or max being
    written down). None when the column has no finite values or they are too large to bound exactly."""
    lowest, highest, q_low, q_high = column.lowest, column.highest, column.q_low, column.q_high
    if lowest is None or highest is None or q_low is None or q_high is None:
        return None
    values = (float(lowest), float(highest), q_low, q_high)
    if not all(math.isfinite(v) and abs(v) < EXACT_LIMIT for v in values):
        return None
    # The spread of the percentiles, else of the extremes, else the values' size: a margin that is a normal number.
    spreads = (q_high - q_low, values[1] - values[0], max(abs(q_low), abs(q_high), 1.0))
    margin = next(MARGIN * s for s in spreads if MARGIN * s > 1e-300)
    exponent = math.floor(math.log10(margin))
    if integer:
        exponent = max(exponent, 0)
    return (_outward(min(q_low - margin, values[0]), exponent, lowest, down=True),
            _outward(max(q_high + margin, values[1]), exponent, highest, down=False))


def _outward(x: float, exponent: int, beyond: float | int, down: bool) -> float | int:
    """x rounded down (or up) to a multiple of 10**exponent that is strictly below (above) `beyond` as the number
    the YAML file will hold (an int, or the float nearest the decimal); a larger power when floats cannot tell."""
    for exp in itertools.count(exponent):
        step = Fraction(10) ** exp
        k = math.floor(Fraction(x) / step) if down else math.ceil(Fraction(x) / step)
        for multiple in (k, k - 1) if down else (k, k + 1):
            candidate: float | int = int(multiple * step) if exp >= 0 else float(multiple * step)
            if (candidate < beyond) if down else (candidate > beyond):
                return candidate
    raise AssertionError("unreachable")  # itertools.count never ends; a large enough step always fits


def warn_malformed(generated: Generated) -> None:
    """Rows that do not parse fail the suite's well_formed check on this very data: say so now."""
    if generated.malformed:
        log.logger.warning("mlci: %s: %d rows do not parse; the suite's well_formed check fails until they are "
                           "fixed", generated.data_path, generated.malformed)
