"""Reference profiles and drift statistics (PSI, KS distance, Jensen-Shannon distance).

Rules (docs/data-tests.md): numeric bins are (-inf, e1], (e1, e2], ..., (ek, +inf) with the edges taken
from the reference's quantiles (ties merged); categorical bins are the reference's categories plus
"other". Before PSI or JS, every bin fraction is floored at FLOOR in both distributions, so an empty
bin costs a bounded amount instead of infinity. KS is measured at the reference's edges.
"""
from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlci.core import jsonsafe

PROFILE_FORMAT = "mlci-profile/1"
FLOOR = 1e-4
MAX_CATEGORIES = 50  # more distinct values than this: not profiled as a category (and labels not stored)
MAX_BINS = 100  # numeric bins of a profile: percentiles at most (each edge is one expression in the scan)
# A profile's fractions are stored rounded to 8 digits: two fractions closer than this are the same share, so
# identical data measures exactly 0 (not 1e-31 of float noise a reviewer would have to read as zero).
SAME_SHARE = 1e-8
TOLERANCE = 1e-6  # per bin: how far a profile's fractions may sum from 1 (they are stored rounded to 8 digits)
DEFAULTS = {"psi": (0.1, 0.25), "ks": (0.1, 0.2), "js": (0.1, 0.2)}  # (warn, fail)


@dataclass(frozen=True)
class ColumnProfile:
    """One column of a reference: numeric (edges + fractions) or categorical (category fractions)."""

    kind: str  # "numeric" | "categorical"
    count: int  # non-null values
    nulls: int
    edges: tuple[float, ...] = ()
    fractions: tuple[float, ...] = ()
    categories: dict[str, float] = field(default_factory=dict)
    other: float = 0.0

    def bins(self) -> list[float]:
        """The reference's bin fractions: numeric bins in edge order, or the categories then "other" (the
        order in which compile.Compiler counts the current data)."""
        if self.kind == "numeric":
            return list(self.fractions)
        return [*self.categories.values(), self.other]


@dataclass(frozen=True)
class Profile:
    """A reference profile: small, committable, enough for every drift check."""

    rows: int
    columns: dict[str, ColumnProfile]
    source: str = ""

    def to_json(self) -> str:
        """The profile as stable, sorted JSON."""
        data = {"format": PROFILE_FORMAT, **asdict(self)}
        return json.dumps(data, indent=1, sort_keys=True, allow_nan=False) + "\n"


def load_profile(path: Path) -> Profile:
    """Read a profile JSON and check its shape; ValueError naming the first field that is wrong."""
    data = jsonsafe.loads(path.read_text(encoding="utf-8"), parse_constant=_not_a_number)
    if not isinstance(data, dict) or data.get("format") != PROFILE_FORMAT:
        raise ValueError(f"not an mlci profile ({PROFILE_FORMAT}); make one with `mlci data-test profile`")
    columns = {str(name): _column(col, f"columns.{name}")
               for name, col in _object(data.get("columns"), "columns").items()}
    source = data.get("source", "")
    return Profile(rows=_count(data.get("rows"), "rows"), columns=columns,
                   source=source if isinstance(source, str) else "")


def _not_a_number(constant: str) -> float:
    raise ValueError(f"{constant} is not a number a profile may hold")


def _column(col: Any, at: str) -> ColumnProfile:
    col = _object(col, at)
    kind = col.get("kind")
    count, nulls = _count(col.get("count"), f"{at}.count"), _count(col.get("nulls"), f"{at}.nulls")
    if kind == "numeric":
        edges = _numbers(col.get("edges", []), f"{at}.edges")
        if len(edges) >= MAX_BINS:
            raise ValueError(f"{at}.edges: more than {MAX_BINS - 1} edges")
        if any(b <= a for a, b in itertools.pairwise(edges)):
            raise ValueError(f"{at}.edges: must be strictly increasing")
        fractions = _numbers(col.get("fractions", []), f"{at}.fractions")
        if len(fractions) != len(edges) + 1:
            raise ValueError(f"{at}.fractions: {len(edges)} edges need {len(edges) + 1} fractions, "
                             f"got {len(fractions)}")
        _shares(fractions, count, f"{at}.fractions")
        return ColumnProfile("numeric", count, nulls, edges, fractions)
    if kind == "categorical":
        categories = {str(k): v for k, v in _object(col.get("categories", {}), f"{at}.categories").items()}
        if len(categories) > MAX_CATEGORIES:
            raise ValueError(f"{at}.categories: more than {MAX_CATEGORIES} categories")
        shares = _numbers([*categories.values(), col.get("other", 0.0)], f"{at}.categories")
        _shares(shares, count, f"{at}.categories")
        return ColumnProfile("categorical", count, nulls, categories=dict(zip(categories, shares[:-1], strict=True)),
                             other=shares[-1])
    raise ValueError(f"{at}.kind: expected numeric or categorical, got {kind!r}")


def _object(value: Any, at: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{at}: expected an object")
    return value


def _count(value: Any, at: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{at}: expected a count (an integer >= 0), got {value!r}")
    return value


def _numbers(values: Any, at: str) -> tuple[float, ...]:
    if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{at}: expected a list of numbers")
    return tuple(float(v) for v in values)


def _shares(fractions: Sequence[float], count: int, at: str) -> None:
    """Bin fractions are within 0..1 and sum to 1 (to 0 when the column had no value)."""
    if any(not 0 <= f <= 1 for f in fractions):
        raise ValueError(f"{at}: fractions must be between 0 and 1")
    if abs(sum(fractions) - (1.0 if count else 0.0)) > TOLERANCE * len(fractions):
        raise ValueError(f"{at}: fractions sum to {sum(fractions):.6g}, not {1 if count else 0}")


def fractions_from_cumulative(at_or_below: Sequence[float], total: float) -> list[float]:
    """Bin fractions from counts of values <= each edge (plus the open last bin)."""
    if total <= 0:
        return [0.0] * (len(at_or_below) + 1)
    cumulative = [c / total for c in at_or_below]
    return [b - a for a, b in zip([0.0, *cumulative], [*cumulative, 1.0], strict=True)]


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index over the same bins, fractions floored at FLOOR."""
    return sum((a - e) * math.log(a / e) for e, a in _pairs(expected, actual) if a != e)


def ks_at_edges(expected: Sequence[float], actual: Sequence[float]) -> float:
    """KS distance: the largest gap between the two cumulative distributions at the bin edges."""
    gap, cum_e, cum_a = 0.0, 0.0, 0.0
    for e, a in zip(expected[:-1], actual[:-1], strict=True):
        cum_e, cum_a = cum_e + e, cum_a + _same(e, a)
        gap = max(gap, abs(cum_e - cum_a))
    return gap


def js_distance(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) over the same bins, fractions floored at FLOOR."""
    divergence = 0.5 * sum(p * math.log2(2 * p / (p + q)) + q * math.log2(2 * q / (p + q))
                           for p, q in _pairs(expected, actual) if p != q)
    return math.sqrt(max(divergence, 0.0))


STATISTICS = {"psi": psi, "ks": ks_at_edges, "js": js_distance}


def _pairs(expected: Sequence[float], actual: Sequence[float]) -> list[tuple[float, float]]:
    """(expected, actual) per bin, floored at FLOOR, an actual share the same as the expected one made equal."""
    floored = zip((max(f, FLOOR) for f in expected), (max(f, FLOOR) for f in actual), strict=True)
    return [(e, _same(e, a)) for e, a in floored]


def _same(expected: float, actual: float) -> float:
    """`expected` when `actual` is within SAME_SHARE of it (the profile's rounding), else `actual`."""
    return expected if abs(actual - expected) <= SAME_SHARE else actual


def thresholds(method: str, warn: float | None, fail: float | None) -> tuple[float, float]:
    """The (warn, fail) thresholds for a method, defaults filled in."""
    default_warn, default_fail = DEFAULTS[method]
    return (default_warn if warn is None else warn, default_fail if fail is None else fail)

