"""JSON written byte for byte as Go's encoding/json writes it, for the documents cosign writes through it (the
simple-signing payload, the signature image's config and manifest): compact, keys in the order given (a Go
struct's field order; callers sort what Go holds in maps), and Go's string escapes: `<`, `>`, `&`, U+2028 and
U+2029 as `\\u003c`-style escapes (Go escapes HTML by default), other control characters as Python writes them
(the same `\\n`, `\\b`, `\\u001f` Go 1.22+ writes). Numbers are integers only: Go and Python format floats
differently, and nothing mlci signs needs one."""
from __future__ import annotations

import json
from typing import Any

_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_TABLE = str.maketrans(_GO_ESCAPES)


def dumps(value: Any) -> bytes:
    """`value` (dicts in the order to write, lists, str, int, bool, None) as Go's json.Marshal writes it."""
    _check(value)
    # `<>&` and the two separators occur only inside strings in JSON text, so escaping them in the whole text
    # escapes exactly the strings' characters.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).translate(_TABLE).encode()


def sorted_map(mapping: dict[str, Any]) -> dict[str, Any]:
    """A mapping in the order Go writes a map: keys sorted by their UTF-8 bytes (= by code point)."""
    return {key: mapping[key] for key in sorted(mapping)}


def _check(value: Any) -> None:
    if isinstance(value, float):
        raise ValueError("gojson: floats are not written (Go and Python format them differently)")
    if isinstance(value, str):
        value.encode("utf-8")  # a lone surrogate cannot be written as UTF-8: UnicodeEncodeError, a ValueError
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError("gojson: map keys are strings")
            _check(key)
            _check(item)
    elif isinstance(value, list):
        for item in value:
            _check(item)
