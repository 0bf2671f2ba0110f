"""json.loads for data mlci did not write (manifests, index.json, registry and forge answers, tool output):
nesting deeper than MAX_DEPTH is a ValueError like any other malformed JSON, where json.loads would raise
RecursionError (an internal error, exit 70) or return a structure that code walking it recursively cannot."""
from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 100  # an OCI manifest nests 4 deep, trivy's report about 8, a forge's answer about 6


class TooDeep(json.JSONDecodeError):
    """Nested deeper than MAX_DEPTH (a JSONDecodeError, so every `except ValueError` handles it)."""

    def __init__(self) -> None:
        super().__init__(f"nested more than {MAX_DEPTH} levels deep", "", 0)


def loads(data: str | bytes | bytearray, **options: Any) -> Any:
    """json.loads(data, **options), refusing nesting beyond MAX_DEPTH."""
    try:
        value = json.loads(data, **options)
    except RecursionError:
        raise TooDeep() from None
    _check_depth(value)
    return value


def _check_depth(value: Any) -> None:
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth >= MAX_DEPTH:
                    raise TooDeep()
                pending.append((child, depth + 1))
