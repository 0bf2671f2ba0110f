"""DVC plots as `dvc plots diff --json` gives them, read by what their Vega-Lite spec does (so DVC's
templates and a repo's own work alike): line-like marks become lines, a count by x and y becomes a
confusion matrix, bars become a table of values, image files stay images. Anything else is a plot that
cannot be drawn, with the reason; nothing is dropped silently."""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LINE_MARKS = frozenset({"line", "point", "circle", "square", "trail", "area", "tick"})
# Encodings that split rows into series (DVC: `rev` in color, the y file in strokeDash or column).
SERIES_CHANNELS = ("color", "strokeDash", "shape", "detail", "column", "row", "yOffset", "xOffset")
_NUMBER = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$")
WORKSPACE = "workspace"


@dataclass(frozen=True)
class Series:
    """The rows of one revision (`rev`) and one y file/field (`label`, "" when the plot has one)."""

    rev: str
    label: str


@dataclass(frozen=True)
class LinePlot:
    """A line-like plot: per series, its (x, y) points in file order."""

    name: str
    title: str
    x: str
    y: str
    lines: dict[Series, list[tuple[float, float]]]
    note: str = ""


@dataclass(frozen=True)
class ConfusionPlot:
    """A confusion matrix: per series, the count of rows per (actual, predicted) pair."""

    name: str
    title: str
    x: str
    y: str
    counts: dict[Series, Counter[tuple[str, str]]]


@dataclass(frozen=True)
class BarPlot:
    """Bars: per series, the value of each category."""

    name: str
    title: str
    category: str
    value: str
    values: dict[Series, dict[str, float]]


@dataclass(frozen=True)
class ImagePlot:
    """An image file (PNG, SVG, ...) per revision, as DVC wrote it into the output directory."""

    name: str
    files: dict[str, Path]


@dataclass(frozen=True)
class Undrawable:
    """A plot that cannot be shown, and why."""

    name: str
    reason: str


Plot = LinePlot | ConfusionPlot | BarPlot | ImagePlot | Undrawable


def number(value: Any) -> float | None:
    """A finite number, also when a CSV/TSV plot gives it as a string ("0.5"); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            parsed = float(value)  # an int beyond a float's range overflows
        except OverflowError:
            return None
        return parsed if math.isfinite(parsed) else None
    if isinstance(value, str) and _NUMBER.match(value):
        parsed = float(value)
        return parsed if math.isfinite(parsed) else None
    return None


def category(value: Any) -> str:
    """A class label as text: 1, 1.0 and "1" are the same class."""
    parsed = number(value)
    if parsed is not None and parsed.is_integer() and abs(parsed) < 2**53:
        return str(int(parsed))
    return str(value)


def parse(data: dict[str, Any]) -> list[Plot]:
    """Every plot of `dvc plots diff --json` output, in DVC's order (images of a name grouped)."""
    found: list[Plot] = []
    images: dict[str, ImagePlot] = {}
    plots = data.get("data") if isinstance(data, dict) else None
    for name, entries in (plots if isinstance(plots, dict) else {}).items():
        if entries == []:
            found.append(Undrawable(str(name), "DVC has no data for it at either revision"))
        for entry in entries if isinstance(entries, list) else [entries]:
            kind = entry.get("type") if isinstance(entry, dict) else None
            if kind == "image" and isinstance(entry.get("url"), str):
                revisions = entry.get("revisions")
                rev = str(revisions[0]) if isinstance(revisions, list) and revisions else WORKSPACE
                if name not in images:
                    images[name] = ImagePlot(name, {})
                    found.append(images[name])
                images[name].files[rev] = Path(entry["url"])
            elif kind == "vega" and isinstance(entry.get("content"), dict):
                found.append(vega(str(name), entry["content"]))
            else:
                found.append(Undrawable(str(name), f"DVC gave it as {kind or 'an unknown kind'!r}, not Vega-Lite "
                                                   "or an image"))
    return found


def vega(name: str, spec: dict[str, Any]) -> Plot:
    """One Vega-Lite spec with inline values, classified by its marks and transforms."""
    raw = (spec.get("data") or {}).get("values") if isinstance(spec.get("data"), dict) else None
    rows = [row for row in raw if isinstance(row, dict)] if isinstance(raw, list) else []
    title = _title(spec, name)
    x, y = _axis(spec, "x"), _axis(spec, "y")
    marks = set(_marks(spec))
    if not rows:
        return Undrawable(name, "no data rows at either revision")
    if x is None or y is None:
        return Undrawable(name, "its template names no x and y fields")
    series = _series_fields(spec, {x[0], y[0]})
    if _counts_by(spec, x[0], y[0]):
        counts: dict[Series, Counter[tuple[str, str]]] = {}
        for row in rows:
            if x[0] in row and y[0] in row:
                counts.setdefault(_series(row, series), Counter())[(category(row[x[0]]), category(row[y[0]]))] += 1
        if not counts:
            return Undrawable(name, f"no row has both {x[0]} and {y[0]}")
        return ConfusionPlot(name, title, x[1], y[1], counts)
    if marks & LINE_MARKS:
        return _lines(name, title, x, y, rows, series)
    if "bar" in marks:
        return _bars(name, title, spec, x, y, rows, series)
    shown = ", ".join(sorted(marks)) or "no"
    return Undrawable(name, f"its template draws {shown} marks: not a line, confusion or bar plot")


def _lines(name: str, title: str, x: tuple[str, str], y: tuple[str, str], rows: list[dict[str, Any]],
           series: list[str]) -> Plot:
    lines: dict[Series, list[tuple[float, float]]] = {}
    dropped = 0
    for row in rows:
        px, py = number(row.get(x[0])), number(row.get(y[0]))
        if px is None or py is None:
            dropped += 1
            continue
        lines.setdefault(_series(row, series), []).append((px, py))
    if not lines:
        return Undrawable(name, f"no row has numbers for both {x[0]} and {y[0]}")
    note = f"{dropped} of {len(rows)} rows without numbers for {x[0]} and {y[0]} left out" if dropped else ""
    return LinePlot(name, title, x[1], y[1], lines, note)


def _bars(name: str, title: str, spec: dict[str, Any], x: tuple[str, str], y: tuple[str, str],
          rows: list[dict[str, Any]], series: list[str]) -> Plot:
    value, label = (y, x) if _axis_type(spec, "y") == "quantitative" else (x, y)
    values: dict[Series, dict[str, float]] = {}
    for row in rows:
        number_ = number(row.get(value[0]))
        if number_ is not None and label[0] in row:
            values.setdefault(_series(row, series), {})[category(row[label[0]])] = number_
    if not values:
        return Undrawable(name, f"no row has a number for {value[0]}")
    return BarPlot(name, title, label[1], value[1], values)


def _walk(spec: Any) -> Iterator[dict[str, Any]]:
    """Every mapping in a spec (layers, facets, nested specs) in document order, skipping inline data;
    iterative, so no nesting depth of a repo's own template can overflow the stack."""
    stack = [spec]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield node
            stack.extend(reversed([child for key, child in node.items() if key not in ("data", "datasets")]))
        elif isinstance(node, list):
            stack.extend(reversed(node))


def _encodings(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for node in _walk(spec):
        if isinstance(node.get("encoding"), dict):
            yield node["encoding"]


def _axis(spec: dict[str, Any], axis: str) -> tuple[str, str] | None:
    """(field, title) of the first encoding of `axis` that names a field."""
    for encoding in _encodings(spec):
        channel = encoding.get(axis)
        if isinstance(channel, dict) and isinstance(channel.get("field"), str):
            title = channel.get("title")
            return channel["field"], title if isinstance(title, str) and title else channel["field"]
    return None


def _axis_type(spec: dict[str, Any], axis: str) -> str | None:
    for encoding in _encodings(spec):
        channel = encoding.get(axis)
        if isinstance(channel, dict) and channel.get("type"):
            return str(channel["type"])
    return None


def _marks(spec: dict[str, Any]) -> Iterator[str]:
    for node in _walk(spec):
        mark = node.get("mark")
        if isinstance(mark, str):
            yield mark
        elif isinstance(mark, dict) and isinstance(mark.get("type"), str):
            yield mark["type"]


def _counts_by(spec: dict[str, Any], x: str, y: str) -> bool:
    """Does a transform count rows grouped by both x and y (DVC's confusion templates)?"""
    for node in _walk(spec):
        steps = node.get("transform")
        for step in steps if isinstance(steps, list) else []:
            if not isinstance(step, dict):
                continue
            ops = [a.get("op") for a in step.get("aggregate") or [] if isinstance(a, dict)]
            if "count" in ops and {x, y} <= set(step.get("groupby") or []):
                return True
    return False


def _series_fields(spec: dict[str, Any], axes: set[str]) -> list[str]:
    """Fields other than x/y that tell series apart (the y file of a multi-file plot), in spec order."""
    fields: list[str] = []
    for encoding in _encodings(spec):
        for channel in SERIES_CHANNELS:
            value = encoding.get(channel)
            field_name = value.get("field") if isinstance(value, dict) else None
            if isinstance(field_name, str) and field_name not in axes and field_name not in fields:
                fields.append(field_name)
    facet: dict[str, Any] = next((n["facet"] for n in _walk(spec) if isinstance(n.get("facet"), dict)), {})
    for part in facet.values():
        field_name = part.get("field") if isinstance(part, dict) else None
        if isinstance(field_name, str) and field_name not in axes and field_name not in fields:
            fields.append(field_name)
    return [f for f in fields if f != "rev"]


def _series(row: dict[str, Any], fields: list[str]) -> Series:
    label = " ".join(str(row[f]) for f in fields if f in row)
    return Series(str(row.get("rev", WORKSPACE)), label)


def _title(spec: dict[str, Any], name: str) -> str:
    title = spec.get("title")
    if isinstance(title, dict):
        title = title.get("text")
    return title if isinstance(title, str) and title.strip() else name
