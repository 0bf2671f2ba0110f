"""Reference profiles and drift statistics (PSI, KS distance, Jensen-Shannon distance).

Rules (docs/data-tests.md): numeric bins are (-inf, e1], (e1, e2], ..., (ek, +inf) with the edges taken
from the reference's quantiles (ties merged); categorical bins are the reference's categories plus
"other". Before PSI or JS, every bin fraction is floored at FLOOR in both distributions, so an empty
bin costs a bounded amount instead of infinity. KS is measured at the reference's edges.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

PROFILE_FORMAT = "mlci-profile/1"
FLOOR = 1e-4
MAX_CATEGORIES = 50  # more distinct values than this: not profiled as a category (and labels not stored)
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
        """The reference's bin fractions, in the order `current_bins` produces them."""
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
        return json.dumps(data, indent=1, sort_keys=True) + "\n"


def load_profile(path: Path) -> Profile:
    """Read a profile JSON; ValueError on anything else."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("format") != PROFILE_FORMAT:
        raise ValueError(f"not an mlci profile ({PROFILE_FORMAT}); make one with `mlci data-test profile`")
    columns = {}
    for name, col in data["columns"].items():
        columns[name] = ColumnProfile(
            kind=col["kind"], count=int(col["count"]), nulls=int(col["nulls"]),
            edges=tuple(float(e) for e in col.get("edges", ())),
            fractions=tuple(float(f) for f in col.get("fractions", ())),
            categories={str(k): float(v) for k, v in col.get("categories", {}).items()},
            other=float(col.get("other", 0.0)),
        )
    return Profile(rows=int(data["rows"]), columns=columns, source=str(data.get("source", "")))


def fractions_from_cumulative(at_or_below: Sequence[float], total: float) -> list[float]:
    """Bin fractions from counts of values <= each edge (plus the open last bin)."""
    if total <= 0:
        return [0.0] * (len(at_or_below) + 1)
    cumulative = [c / total for c in at_or_below]
    return [b - a for a, b in zip([0.0, *cumulative], [*cumulative, 1.0], strict=True)]


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index over the same bins, fractions floored at FLOOR."""
    return sum((a - e) * math.log(a / e) for e, a in zip(_floor(expected), _floor(actual), strict=False))


def ks_at_edges(expected: Sequence[float], actual: Sequence[float]) -> float:
    """KS distance: the largest gap between the two cumulative distributions at the bin edges."""
    gap, cum_e, cum_a = 0.0, 0.0, 0.0
    for e, a in zip(expected[:-1], actual[:-1], strict=False):
        cum_e, cum_a = cum_e + e, cum_a + a
        gap = max(gap, abs(cum_e - cum_a))
    return gap


def js_distance(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) over the same bins, fractions floored at FLOOR."""
    p, q = _floor(expected), _floor(actual)
    m = [(x + y) / 2 for x, y in zip(p, q, strict=True)]
    divergence = 0.5 * sum(x * math.log2(x / z) for x, z in zip(p, m, strict=True)) + \
        0.5 * sum(y * math.log2(y / z) for y, z in zip(q, m, strict=True))
    return math.sqrt(max(divergence, 0.0))


STATISTICS = {"psi": psi, "ks": ks_at_edges, "js": js_distance}


def _floor(fractions: Sequence[float]) -> list[float]:
    return [max(f, FLOOR) for f in fractions]


def thresholds(method: str, warn: float | None, fail: float | None) -> tuple[float, float]:
    """The (warn, fail) thresholds for a method, defaults filled in."""
    default_warn, default_fail = DEFAULTS[method]
    return (default_warn if warn is None else warn, default_fail if fail is None else fail)

