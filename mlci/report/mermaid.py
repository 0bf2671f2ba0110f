"""DVC plots as Mermaid `xychart-beta` charts: rendered by GitLab and GitHub in comments, no image host."""
from __future__ import annotations

from collections.abc import Sequence

from mlci.report.diff import PlotSeries


def resample(points: Sequence[tuple[float, float]], xs: Sequence[float]) -> list[float]:
    """y at each of `xs` by linear interpolation over points sorted by x (clamped at the ends)."""
    pts = sorted(points)
    out = []
    for x in xs:
        if x <= pts[0][0]:
            out.append(pts[0][1])
        elif x >= pts[-1][0]:
            out.append(pts[-1][1])
        else:
            i = next(k for k in range(1, len(pts)) if pts[k][0] >= x)
            (x0, y0), (x1, y1) = pts[i - 1], pts[i]
            out.append(y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0))
    return out


def chart(series: PlotSeries, revisions: Sequence[str], points: int) -> str:
    """A Mermaid block with one line per revision (in `revisions` order) on a shared x range."""
    present = [r for r in revisions if series.points.get(r)]
    if not present:
        return ""
    all_x = [x for r in present for x, _ in series.points[r]]
    low, high = min(all_x), max(all_x)
    xs = [low + (high - low) * i / (points - 1) for i in range(points)] if points > 1 else [low]
    lines = [resample(series.points[r], xs) for r in present]
    y_low, y_high = min(min(v) for v in lines), max(max(v) for v in lines)
    body = [
        "```mermaid",
        "xychart-beta",
        f'  title "{_text(series.title)}"',
        f'  x-axis "{_text(series.x)}" {_num(low)} --> {_num(high)}',
        f'  y-axis "{_text(series.y)}" {_num(y_low)} --> {_num(y_high)}',
        *(f"  line [{', '.join(_num(v) for v in values)}]" for values in lines),
        "```",
    ]
    return "\n".join(body)


def _num(value: float) -> str:
    return f"{value:.4g}"


def _text(value: str) -> str:
    return value.replace('"', "'")
