"""YAML from files anyone can commit (mlci.yaml, suites, dvc.yaml, dvc.lock), read with bounds: nesting
depth, nodes after alias expansion ("billion laughs"), recursive aliases, control characters and unknown
tags each become one `file:line: message` problem, never a crash, a hang or a memory blow-up."""
from __future__ import annotations

from typing import Any

import yaml

# Deeper than any real config (mlci.yaml needs about 8 levels), shallow enough that nothing recurses far.
MAX_DEPTH = 64
# Nodes once every alias is expanded: a big suite has some 20,000; beyond this the work (validation,
# `config show`) would grow without bound, so the file is refused.
MAX_NODES = 100_000


class YamlProblem(Exception):
    """The text cannot be read as bounded YAML; `line` is 1-based."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line, self.message = line, message


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses, while composing, nesting deeper than MAX_DEPTH (PyYAML's composer recurses) and
    more than MAX_NODES nodes (each alias counted once here; check_size counts them expanded)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = self._composed = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self._depth >= MAX_DEPTH:
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise YamlProblem(mark.line + 1, f"nested deeper than {MAX_DEPTH} levels")
        self._composed += 1  # stopped here, not once millions are composed (minutes of a runner's CPU)
        if self._composed > MAX_NODES:
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise YamlProblem(mark.line + 1, f"more than {MAX_NODES} values; mlci reads no file that holds more")
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def compose(text: str) -> tuple[yaml.SafeLoader | None, yaml.Node | None]:
    """The node tree of a one-document YAML text (None for an empty one), checked against the bounds.
    Raises YamlProblem. The loader constructs scalars later; dispose() it when done."""
    try:
        loader = _BoundedLoader(text)
    except yaml.YAMLError as exc:  # the reader refuses NUL and other control characters up front
        raise _problem(exc, text) from None
    try:
        node = loader.get_single_node()
    except yaml.YAMLError as exc:
        loader.dispose()
        raise _problem(exc, text) from None
    except YamlProblem:
        loader.dispose()
        raise
    if node is not None:
        check_size(node)
    return loader, node


def load(text: str) -> Any:
    """Plain data from a one-document YAML text, within the bounds. Raises YamlProblem."""
    loader, node = compose(text)
    if loader is None or node is None:
        return None
    try:
        return loader.construct_document(node)
    except Exception as exc:  # noqa: BLE001 - PyYAML's constructors fail in many ways on explicit tags
        raise _problem(exc, text, node) from None  # (`!foo x`, `!!int abc`, `!!timestamp x`, 5000 digits)
    finally:
        loader.dispose()


def check_size(root: yaml.Node) -> None:
    """Refuse a recursive alias, or a tree that has more than MAX_NODES nodes once aliases are expanded.
    Each distinct node is visited once (sizes are memoised), so the check is linear in the file."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            size = 1 + sum(sizes[id(c)] for c in _children(node))
            if size > MAX_NODES:
                raise YamlProblem(node.start_mark.line + 1, f"more than {MAX_NODES} values once its aliases "
                                  "are expanded; use fewer nested aliases (`*name`)")
            sizes[key] = size
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise YamlProblem(node.start_mark.line + 1, "recursive alias: an anchor (`&name`) is used inside itself")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _problem(exc: Exception, text: str, node: yaml.Node | None = None) -> YamlProblem:
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        character = chr(exc.character) if isinstance(exc.character, int) else exc.character
        return YamlProblem(line, f"not allowed in YAML: the control character {character!r}")
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        what = "cannot read a value" if isinstance(exc, yaml.constructor.ConstructorError) else "YAML syntax error"
        return YamlProblem(mark.line + 1 if mark else 1, f"{what}: {exc.problem or exc.context}")
    return YamlProblem(node.start_mark.line + 1 if node is not None else 1, f"cannot read a value: {not_built(exc)}")


def not_built(exc: Exception, tag: str | None = None) -> str:
    """Why PyYAML's constructor could not build a value, in words (its own error, when it is not a YAMLError, is
    a Python one: `'NoneType' object has no attribute 'groupdict'` for `!!timestamp main`)."""
    if isinstance(exc, yaml.YAMLError):
        return str(getattr(exc, "problem", None) or exc)
    if isinstance(exc, ValueError) and "int_max_str_digits" in str(exc):
        return "an integer of more than 4300 digits"
    fits = f"it is not a valid {tag.replace('tag:yaml.org,2002:', '!!')}" if tag else \
        "it does not fit its explicit tag (`!!timestamp`, `!!int`, ...)"
    return f"{fits}; remove the tag, or quote the value to have text"
