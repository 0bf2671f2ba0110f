"""Validate YAML nodes against frozen dataclasses, collecting one `file:line: path: message` per problem.

The schema is the dataclasses' type hints: `bool`, `int`, `float`, `str`, `Literal[...]`, unions with
None, `tuple[X, ...]`, `dict[str, X]`, nested dataclasses, and custom types parsed by a hook (e.g. the
polymorphic entries of a data-test suite). A dataclass with a `where` field gets `file:line` of its node.
"""
from __future__ import annotations

import dataclasses
import datetime
import functools
import types
import typing
from collections.abc import Callable
from typing import Any

import yaml

from mlci.core import log, yamlsafe

INVALID: Any = object()
_KEY_SHOWN = 60  # keys longer than this get no "did you mean"; paths four times as long are cut in messages
Hook = Callable[["Validator", yaml.Node, str], Any]


class Validator:
    """Walks a YAML node tree against a schema; `problems` collects one line per problem."""

    def __init__(self, loader: yaml.SafeLoader, shown: str, problems: list[str],
                 hooks: dict[Any, Hook] | None = None, *, lenient: bool = False) -> None:
        self.loader, self.shown, self.problems = loader, shown, problems
        self.hooks = hooks or {}
        # lenient: what is wrong is recorded and left out, the rest kept (the checks across fields then run on
        # what is right, so that one pass names every problem); a mapping missing a required key is still left out
        self.lenient = lenient
        self.locations: dict[str, str] = {}  # dotted key -> `file:line`, for cross-field problems

    def where(self, node: yaml.Node) -> str:
        """`file:line` of a node."""
        return f"{self.shown}:{node.start_mark.line + 1}"

    def problem(self, node: yaml.Node, path: str, message: str) -> None:
        """Record a problem at `node` (a path made of huge keys is cut)."""
        shown = path if len(path) <= 4 * _KEY_SHOWN else path[:4 * _KEY_SHOWN - 3] + "..."
        self.problems.append(log.one_line(f"{self.where(node)}: {shown}: {message}"))

    def mapping(self, node: yaml.Node, schema: type, path: str) -> Any:
        """A mapping node checked against dataclass `schema`: a dict of validated values, or INVALID."""
        if not isinstance(node, yaml.MappingNode):
            if is_null(node):
                node = yaml.MappingNode("tag:yaml.org,2002:map", [], node.start_mark, node.end_mark)
            else:
                self.problem(node, path or "(top level)", f"expected a mapping, got {kind(node)}")
                return INVALID
        try:
            self.loader.flatten_mapping(node)  # YAML merge keys: `<<: *defaults`
        except yaml.YAMLError as exc:
            self.problem(node, path or "(top level)", _reason(exc))
            return INVALID
        hints = _hints(schema)
        fields = {f.name: f for f in dataclasses.fields(schema) if f.name != "where"}
        prefix = f"{path}." if path else ""
        result: dict[str, Any] = {}
        seen: set[str] = set()
        ok = True
        for key_node, value_node in node.value:
            key = scalar_key(key_node)
            if key in seen:
                self.problem(key_node, prefix + key, "duplicate key")
                ok = False
                continue
            seen.add(key)
            self.locations.setdefault(prefix + key, self.where(key_node))
            if key not in fields:
                self.problem(key_node, prefix + key, "unknown key" + did_you_mean(key, list(fields))
                             if len(key) <= _KEY_SHOWN else "unknown key")
                ok = False
            else:
                value = self.value(value_node, hints[key], prefix + key)
                if value is INVALID:
                    ok = False
                else:
                    result[key] = value
        complete = True
        for name, spec in fields.items():
            if name not in result and spec.default is dataclasses.MISSING \
                    and spec.default_factory is dataclasses.MISSING:
                if name not in seen:
                    self.problem(node, prefix + name, "missing required key")
                complete = False
        if "where" in {f.name for f in dataclasses.fields(schema)}:
            result["where"] = self.where(node)
        return result if complete and (ok or self.lenient) else INVALID

    def value(self, node: yaml.Node, hint: Any, path: str) -> Any:
        """A node checked against one type hint."""
        if hint in self.hooks:  # a hook checks its part whole, structure and meaning in one pass: never leniently
            lenient, self.lenient = self.lenient, False
            try:
                return self.hooks[hint](self, node, path)
            finally:
                self.lenient = lenient
        if dataclasses.is_dataclass(hint):
            return self.mapping(node, typing.cast(type, hint), path)
        if is_optional(hint) and is_null(node):
            return None
        base = strip_optional(hint)
        origin = typing.get_origin(base)
        if origin is tuple:
            return self._sequence(node, typing.get_args(base)[0], path)
        if origin is dict:
            return self._dict(node, typing.get_args(base)[1], path)
        if not isinstance(node, yaml.ScalarNode) or is_null(node):
            self.problem(node, path, f"expected {type_name(base)}, got {kind(node)}")
            return INVALID
        try:
            value = self.loader.construct_object(node, deep=True)
        except Exception as exc:  # noqa: BLE001 - PyYAML's constructors fail in many ways on explicit tags
            self.problem(node, path, f"cannot read the value: {yamlsafe.not_built(exc, node.tag)}")
            return INVALID  # (`!foo x`, `!!int abc`, `!!timestamp x`, 5000 digits)
        if not matches(value, base):
            self.problem(node, path, f"expected {type_name(base)}, got {kind(node)} {short(value)}")
            return INVALID
        if base is float:
            try:
                return float(value)
            except OverflowError:
                self.problem(node, path, f"expected {type_name(base)}, got an integer too large for one")
                return INVALID
        return value

    def _sequence(self, node: yaml.Node, item: Any, path: str) -> Any:
        if not isinstance(node, yaml.SequenceNode):
            self.problem(node, path, f"expected a list, got {kind(node)}")
            return INVALID
        items = [self.value(child, item, f"{path}[{i}]") for i, child in enumerate(node.value)]
        if self.lenient:
            return tuple(i for i in items if i is not INVALID)
        return INVALID if any(i is INVALID for i in items) else tuple(items)

    def _dict(self, node: yaml.Node, item: Any, path: str) -> Any:
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, path, f"expected a mapping, got {kind(node)}")
            return INVALID
        try:
            self.loader.flatten_mapping(node)
        except yaml.YAMLError as exc:
            self.problem(node, path, _reason(exc))
            return INVALID
        result: dict[str, Any] = {}
        ok = True
        for key_node, value_node in node.value:
            key = scalar_key(key_node)
            if not isinstance(key_node, yaml.ScalarNode):
                self.problem(key_node, path, f"keys must be text, got {kind(key_node)}")
                ok = False
                continue
            if key in result:
                self.problem(key_node, f"{path}.{key}", "named twice")
                ok = False
                continue
            self.locations.setdefault(f"{path}.{key}", self.where(key_node))
            result[key] = self.value(value_node, item, f"{path}.{key}")
            ok = ok and result[key] is not INVALID
        if self.lenient:
            return {k: v for k, v in result.items() if v is not INVALID}
        return result if ok else INVALID


def _reason(exc: Exception) -> str:
    """A YAML construction error as a message (PyYAML's own text without its position)."""
    problem = getattr(exc, "problem", None)
    return f"cannot read the value: {problem or exc}"


@functools.cache
def _hints(schema: type) -> dict[str, Any]:
    return typing.get_type_hints(schema)


def build(schema: Any, raw: Any) -> Any:
    """Construct (nested) dataclasses from validated plain data."""
    if dataclasses.is_dataclass(schema) and isinstance(raw, dict):
        hints = _hints(typing.cast(type, schema))
        return typing.cast(Any, schema)(**{k: build(hints[k], v) if k != "where" else v for k, v in raw.items()})
    base = strip_optional(schema)
    origin = typing.get_origin(base)
    if origin is tuple and isinstance(raw, tuple):
        return tuple(build(typing.get_args(base)[0], item) for item in raw)
    if origin is dict and isinstance(raw, dict):
        return {k: build(typing.get_args(base)[1], v) for k, v in raw.items()}
    return raw


def scalar_key(node: yaml.Node) -> str:
    """A mapping key as text; a list or mapping as a key is named by its kind."""
    return str(node.value) if isinstance(node, yaml.ScalarNode) else f"({kind(node)} as a key)"


def is_null(node: yaml.Node) -> bool:
    """Whether a node is YAML null."""
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _union_args(hint: Any) -> tuple[Any, ...] | None:
    return typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else None


def is_optional(hint: Any) -> bool:
    """Whether a hint admits None (`str | None`, and `Literal[...] | None`, a typing.Union)."""
    return type(None) in (_union_args(hint) or ())


def strip_optional(hint: Any) -> Any:
    """The hint without None (a union of several scalars stays a union)."""
    args = _union_args(hint)
    if args is None:
        return hint
    rest = tuple(a for a in args if a is not type(None))
    return rest[0] if len(rest) == 1 else typing.Union[rest]  # noqa: UP007 - built dynamically


def matches(value: Any, base: Any) -> bool:
    """Whether a constructed scalar fits a scalar hint (bool is not an int; an int is a float)."""
    if typing.get_origin(base) is typing.Literal:
        return value in typing.get_args(base)
    if typing.get_origin(base) in (typing.Union, types.UnionType):
        return any(matches(value, arg) for arg in typing.get_args(base))
    if base is bool:
        return isinstance(value, bool)
    if base is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if base is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if base is str:
        return isinstance(value, str)
    return isinstance(value, base)


def type_name(base: Any) -> str:
    """How a hint reads in an error message."""
    if typing.get_origin(base) is typing.Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(base))
    if typing.get_origin(base) in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(base))
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            datetime.date: "a date (YYYY-MM-DD)"}.get(base, str(base))


def kind(node: yaml.Node) -> str:
    """How a node reads in an error message."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return node.tag.rsplit(":", 1)[-1]


def short(value: Any) -> str:
    """A value's repr, cut to 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def did_you_mean(key: str, known: list[str]) -> str:
    """A suggestion for a mistyped key."""
    import difflib  # only for a config with a mistake

    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"


def load_node(text: str, shown: str, problems: list[str]) -> tuple[yaml.SafeLoader | None, yaml.Node | None]:
    """Compose YAML text into a node tree within yamlsafe's bounds; a problem becomes one `file:line` line."""
    try:
        return yamlsafe.compose(text)
    except yamlsafe.YamlProblem as exc:
        problems.append(f"{shown}:{exc.line}: {exc.message}")
        return None, None
