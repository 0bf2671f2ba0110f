"""Line plots as Mermaid `xychart-beta` charts: rendered by GitLab and GitHub in comments, no image host.

xychart-beta has one shared x axis and no legend, so every line is resampled onto the same x values and
the chart is followed by a legend whose colour squares match the palette the chart is given."""
from __future__ import annotations

import bisect
import itertools
from collections.abc import Mapping, Sequence

from mlci.report.plots import LinePlot, Series

# Mermaid cycles through plotColorPalette; the legend cycles through the matching squares.
PALETTE = ("#4285f4", "#f4a020", "#34a853", "#ea4335", "#9c27b0", "#8d6e63", "#fbc02d", "#212121")
SQUARES = ("🟦", "🟧", "🟩", "🟥", "🟪", "🟫", "🟨", "⬛")


def resample(points: Sequence[tuple[float, float]], xs: Sequence[float]) -> list[float]:
    """y at each of `xs` by linear interpolation over points sorted by x (clamped at the ends)."""
    pts = sorted(points)
    keys = [x for x, _ in pts]
    out = []
    for x in xs:
        i = bisect.bisect_left(keys, x)
        if i == 0:
            out.append(pts[0][1])
        elif i == len(pts):
            out.append(pts[-1][1])
        else:
            (x0, y0), (x1, y1) = pts[i - 1], pts[i]
            out.append(y1 if x == x1 or x1 == x0 else _between(y0, y1, (x - x0) / (x1 - x0)))
    return out


def _between(a: float, b: float, t: float) -> float:
    """The point a fraction t of the way from a to b, finite for any finite a and b (`a + (b - a) * t` is inf when
    b - a overflows: y values of -1e308 and 1e308); a exactly at t = 0, b at t = 1."""
    return a * (1 - t) + b * t


def ordered(plot: LinePlot, revisions: Sequence[str]) -> list[Series]:
    """The plot's series: revisions in the given order (others after), then by y file, as DVC listed them."""
    rank = {rev: i for i, rev in enumerate(revisions)}
    return sorted(plot.lines, key=lambda s: rank.get(s.rev, len(rank)))


def chart(plot: LinePlot, revisions: Sequence[str], labels: Mapping[str, str], points: int) -> str:
    """A Mermaid block with one line per series on a shared x range, then its legend."""
    series = ordered(plot, revisions)
    xs = grid([plot.lines[s] for s in series], points)
    low, high = xs[0], xs[-1]
    lines = [resample(plot.lines[s], xs) for s in series]
    y_low, y_high = min(min(v) for v in lines), max(max(v) for v in lines)
    palette = ", ".join(PALETTE)
    body = [
        "```mermaid",
        f'%%{{init: {{"themeVariables": {{"xyChart": {{"plotColorPalette": "{palette}"}}}}}}}}%%',
        "xychart-beta",
        f'  title "{text(plot.title)}"',
        f'  x-axis "{text(plot.x)}" {_num(low)} --> {_num(high)}',
        f'  y-axis "{text(plot.y)}" {_num(y_low)} --> {_num(y_high)}',
        *(f"  line [{', '.join(_num(v) for v in values)}]" for values in lines),
        "```",
        "",
        " · ".join(f"{SQUARES[i % len(SQUARES)]} {legend(s, labels)}" for i, s in enumerate(series)),
    ]
    return "\n".join(body)


def grid(lines: Sequence[Sequence[tuple[float, float]]], points: int) -> list[float]:
    """The shared x values: the lines' own when they all have the same evenly spaced x values, at most `points`
    of them (epochs 0-4 are drawn as their 5 points, not 21 interpolated ones); else `points` evenly spaced."""
    own = [sorted({x for x, _ in line}) for line in lines]
    first = own[0]
    low, high = min(xs[0] for xs in own), max(xs[-1] for xs in own)
    steps = [b - a for a, b in itertools.pairwise(first)]
    if (2 <= len(first) <= points and all(xs == first for xs in own)
            and all(abs(step - steps[0]) <= 1e-9 * (high - low) for step in steps)):
        return first
    return [_between(low, high, i / (points - 1)) for i in range(points)]


def legend(series: Series, labels: Mapping[str, str]) -> str:
    """`baseline train.csv`: who the line belongs to."""
    who = labels.get(series.rev, series.rev[:12])
    return f"{who} `{text(series.label)}`" if series.label else who


def _num(value: float) -> str:
    return f"{value:.4g}"


def text(value: str) -> str:
    """A label safe inside a quoted Mermaid string and a code fence (no quotes, backticks, newlines)."""
    return "".join(" " if ch in "\r\n\t" else "'" if ch in '"`' else ch for ch in value if ch.isprintable()
                   or ch in "\r\n\t").strip()
