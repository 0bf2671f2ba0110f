"""Strict JSON for a bundle's hostile files (bundle.json, bundle.dsse.json, the signed Statement): bounded, UTF-8
only, duplicate keys, NaN, infinities and lone surrogates refused; and the typed readers of its values. A problem
is a `Bad(field, why)` the caller turns into its one-line BundleInvalid."""
from __future__ import annotations

import json
import math
import re
from collections.abc import Collection
from typing import Any

MAX_TEXT = 4096  # the longest string a field other than `extra` and metric values may hold (a path's bytes too)
_SURROGATE = re.compile("[\ud800-\udfff]")
_SHOWN = 80
_FIELD = 200  # the longest field path shown (the end of a deeper one)


class Bad(Exception):
    """`field` (e.g. `files[3].sha256`; empty: the document) is wrong: `why`."""

    def __init__(self, field: str, why: str) -> None:
        if len(field) > _FIELD:
            field = "..." + field[-_FIELD:]
        super().__init__(f"{field}: {why}" if field else why)
        self.field, self.why = field, why


def loads(data: bytes, limit: int) -> Any:
    """The JSON document `data` (at most `limit` bytes, UTF-8), strictly."""
    if len(data) > limit:
        raise Bad("", f"{len(data)} bytes, more than the {limit} a reader accepts")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Bad("", f"not UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text, object_pairs_hook=_unique, parse_constant=_constant, parse_float=_float)
    except Bad:
        raise
    except RecursionError:
        raise Bad("", "nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise Bad("", f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise Bad("", f"not JSON this reader takes: {str(exc).splitlines()[0][:_SHOWN]}") from None


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise Bad("", f"duplicate key {show(key)} in an object")
        found[key] = value
    return found


def _constant(name: str) -> Any:
    raise Bad("", f"{name} is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise Bad("", f"{show(text)} is out of a double's range")
    return value


def dumps(value: Any) -> bytes:
    """Canonical JSON: sorted keys, no spaces, UTF-8 (not \\u-escaped), no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def show(value: Any) -> str:
    """`value` in a message: one line of JSON, ASCII, cut at 80 characters."""
    try:
        text = json.dumps(value, ensure_ascii=True, allow_nan=True, default=repr)
    except (ValueError, RecursionError):
        text = ascii(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN - 3] + "..."


def kind(value: Any) -> str:
    """A JSON value's type as JSON names it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def at(field: str, key: str | int) -> str:
    """The field `key` of `field`: `files[3]`, `files[3].sha256`."""
    if isinstance(key, int):
        return f"{field}[{key}]"
    if not key.isprintable() or len(key) > _SHOWN or not key:
        return f"{field}[{show(key)}]"
    return f"{field}.{key}" if field else key


def obj(value: Any, field: str, keys: Collection[str]) -> dict[str, Any]:
    """An object with exactly `keys`."""
    if not isinstance(value, dict):
        raise Bad(field, f"expected an object, got {kind(value)}")
    unknown = sorted(set(value) - set(keys))
    if unknown:
        raise Bad(at(field, unknown[0]), "unknown key")
    missing = [key for key in keys if key not in value]
    if missing:
        raise Bad(field, f"missing key {show(missing[0])}")
    return value


def array(value: Any, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise Bad(field, f"expected an array, got {kind(value)}")
    return value


def text(value: Any, field: str, pattern: re.Pattern[str] | None = None, what: str = "",
         *, controls: bool = False) -> str:
    """A string (at most MAX_TEXT characters, no lone surrogate; no control characters unless `controls`) that
    matches `pattern` in full (`what` says what it must be)."""
    if not isinstance(value, str):
        raise Bad(field, f"expected a string, got {kind(value)}")
    if len(value) > MAX_TEXT:
        raise Bad(field, f"longer than {MAX_TEXT} characters")
    if _SURROGATE.search(value):
        raise Bad(field, "holds a lone surrogate (\\ud800-\\udfff), not UTF-8 text")
    if not controls and not value.isprintable():
        raise Bad(field, f"{show(value)}: holds control or invisible characters")
    if pattern is not None and not pattern.fullmatch(value):
        raise Bad(field, f"{show(value)}: not {what}")
    return value


def optional_text(value: Any, field: str, pattern: re.Pattern[str] | None = None, what: str = "") -> str | None:
    return None if value is None else text(value, field, pattern, what)


def integer(value: Any, field: str, low: int = 0, high: int = (1 << 63) - 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise Bad(field, f"expected an integer, got {kind(value)}")
    if not low <= value <= high:
        raise Bad(field, f"{show(value)}: not within {low}..{high}")
    return value


def plain(value: Any, field: str) -> Any:
    """Any JSON value, its strings (keys too) free of lone surrogates (walked without recursion)."""
    stack: list[tuple[Any, str]] = [(value, field)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str) and _SURROGATE.search(item):
            raise Bad(where, "holds a lone surrogate (\\ud800-\\udfff), not UTF-8 text")
        if isinstance(item, dict):
            for key, child in item.items():
                if _SURROGATE.search(key):
                    raise Bad(where, "a key holds a lone surrogate (\\ud800-\\udfff), not UTF-8 text")
                stack.append((child, at(where, key)))
        elif isinstance(item, list):
            stack.extend((child, at(where, index)) for index, child in enumerate(item))
    return value
