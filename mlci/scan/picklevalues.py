"""The values of the pickle walker's simulated stack (mlci.scan.pickles), and what joblib's array wrapper
among them says about the raw bytes that follow it (NumpyArrayWrapper.read_array): exact, or an error."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

WRAPPER = ("joblib.numpy_pickle", "NumpyArrayWrapper")


class NotPickle(Exception):
    """The bytes are not (or stop being) a well-formed pickle; the message says where and why."""


class Truncated(NotPickle):
    """The stream ended inside a pickle."""


class Opaque:
    """A value whose content does not matter here (a float, bytes, a list, a long string)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __repr__(self) -> str:
        return f"<{self.kind}>"


BYTES, NUMBER, BIGSTR, LIST, SET, BIGTUPLE, ARRAY = (Opaque(k) for k in (
    "bytes", "number", "long string", "list", "set", "long tuple", "array"))
LITERALS = (int, float, str, bytes, type(None))


@dataclass(frozen=True)
class Ref:
    """A global the pickle imports (GLOBAL, STACK_GLOBAL, INST)."""

    module: str
    name: str


@dataclass(eq=False)
class Obj:
    """What a call (REDUCE, NEWOBJ, OBJ, INST) or a persistent id returns; BUILD merges its attributes."""

    func: Any
    args: Any
    state: Any = None
    attrs: dict[str, Any] = field(default_factory=dict)


class Dct(dict[Any, Any]):
    """A dict value; keeps at most 64 string keys (all joblib's wrapper needs), never its bulk."""

    def put(self, key: Any, value: Any) -> None:
        if isinstance(key, str) and (key in self or len(self) < 64):
            self[key] = value


def array_layout(attrs: dict[str, Any], at: int) -> tuple[int, int, bool]:
    """(element count, item size, object dtype) of a joblib wrapper's state, or NotPickle when it cannot be
    told exactly (mlci never guesses where opcodes resume)."""
    shape, dtype = attrs.get("shape"), attrs.get("dtype")
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise NotPickle(f"byte {at}: a joblib array without a readable shape: the rest cannot be read")
    count = 1
    for n in shape:
        count *= n
    itemsize, objects = _dtype(dtype, at, 0)
    return count, itemsize, objects


def _dtype(dtype: Any, at: int, depth: int) -> tuple[int, bool]:
    """A pickled numpy dtype's item size and whether it holds objects (dtype(str, False, True) + state)."""
    bad = NotPickle(f"byte {at}: a joblib array of a dtype mlci cannot size: the rest cannot be read")
    if (depth > 8 or not isinstance(dtype, Obj) or dtype.func != Ref("numpy", "dtype")
            or not isinstance(dtype.args, tuple) or not dtype.args or not isinstance(dtype.args[0], str)):
        raise bad
    match = re.fullmatch(r"([?a-zA-Z])(\d*)", dtype.args[0])
    state = dtype.state if isinstance(dtype.state, tuple) else ()
    if match is None or (state and len(state) < 8):
        raise bad
    kind, digits = match[1], int(match[2] or 0)
    elsize = state[5] if state and isinstance(state[5], int) else -1
    flags = state[7] if state and isinstance(state[7], int) else 0
    if kind == "O" or flags & 1:
        return 8, True
    if kind in "SUVa":
        unit = 4 if kind == "U" else 1
        if elsize <= 0 or (digits and elsize != digits * unit):
            raise bad
        if kind == "V" and (state[2] is not None or state[3] is not None):
            if not _fields_plain(state, at, depth):
                return elsize, True
        return elsize, False
    if digits <= 0 or elsize not in (-1, digits):
        raise bad
    return digits, False


def _fields_plain(state: tuple[Any, ...], at: int, depth: int) -> bool:
    """Whether a structured or subarray dtype's parts hold no objects (NotPickle when unreadable)."""
    parts: list[Any] = []
    if state[2] is not None:
        parts.append(state[2][0] if isinstance(state[2], tuple) and state[2] else None)
    if state[3] is not None:
        fields = state[4]
        if not isinstance(fields, Dct) or not isinstance(state[3], tuple) or len(fields) != len(state[3]):
            raise NotPickle(f"byte {at}: a joblib array of a structured dtype mlci cannot read")
        parts.extend(v[0] if isinstance(v, tuple) and v else None for v in fields.values())
    return not any(_dtype(part, at, depth + 1)[1] for part in parts)


def holds(value: Any, ref: Ref, depth: int) -> bool | None:
    """Whether `value` holds `ref` (None: it may, inside a list, set or object mlci does not follow)."""
    if value == ref:
        return True
    if isinstance(value, (*LITERALS, Ref)) or value in (BYTES, NUMBER, BIGSTR, ARRAY):
        return False
    if depth > 16 or not isinstance(value, (tuple, Dct)):
        return None
    found = [holds(v, ref, depth + 1) for v in (value if isinstance(value, tuple) else value.values())]
    return True if True in found else (None if None in found else False)


def why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
