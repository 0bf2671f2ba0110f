"""Loading a config file against a dataclass schema: finding mlci.yaml, one-line `file:line: key: message`
problems, and `MLCI_<SECTION>_<KEY>` environment overrides. Which sections exist is not known here
(mlci/settings.py assembles them)."""
from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from mlci.core import schema
from mlci.core.bounded import Unreadable, read_bounded

CONFIG_NAME = "mlci.yaml"
ENV_PREFIX = "MLCI_"
MAX_CONFIG_BYTES = 8 << 20  # a config or suite file larger than this is refused, not read


def find_config(start: Path) -> Path | None:
    """The nearest mlci.yaml from `start` up to the enclosing git repository's root. Anything by that
    name counts (a directory, a FIFO, a dangling link): reading it then says what is wrong with it."""
    for directory in (start, *start.parents):
        candidate = directory / CONFIG_NAME
        if os.path.lexists(candidate):
            return candidate
        if (directory / ".git").exists():
            return None
    return None


def repository_root(start: Path) -> Path:
    """The enclosing git repository's root (the nearest directory with `.git`), else `start` itself."""
    for directory in (start, *start.parents):
        if (directory / ".git").exists():
            return directory
    return start


def display(path: Path, cwd: Path) -> str:
    """A path as error messages show it: relative to `cwd` when inside it."""
    try:  # the file's own name is kept: a symlink is shown as the link, not as its target
        return str((path.parent.resolve() / path.name).relative_to(cwd.resolve()))
    except ValueError:
        return str(path)


def read_text(path: Path, shown: str, problems: list[str]) -> str | None:
    """A config file's text, or None with one problem line. Only a regular file of at most
    MAX_CONFIG_BYTES of UTF-8 is read; a FIFO is opened without blocking and refused, never waited on."""
    try:
        data = read_bounded(path, MAX_CONFIG_BYTES, shown)
    except Unreadable as exc:
        problems.append(str(exc))
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        problems.append(f"{shown}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x})")
        return None


def parse_mapping(text: str, shown: str, root: type, problems: list[str], *,
                  hooks: dict[Any, schema.Hook] | None = None,
                  check: Callable[[schema.Validator, Any, dict[str, Any]], None] | None = None,
                  locations: dict[str, str] | None = None, lenient: bool = False) -> dict[str, Any] | None:
    """Validate YAML text against dataclass `root`: the raw values, or None when nothing could be read.
    `check(validator, root_node, raw)` adds cross-field problems with line numbers; `locations` receives
    `file:line` of every dotted key seen; `lenient`: the values that are right, beside the problems of the rest
    (schema.Validator)."""
    loader, node = schema.load_node(text, shown, problems)
    if loader is None:
        return None
    try:
        if node is None:
            return None
        validator = schema.Validator(loader, shown, problems, hooks, lenient=lenient)
        raw = validator.mapping(node, root, "")
        if locations is not None:
            locations.update(validator.locations)
        if raw is schema.INVALID:
            return {}
        if check is not None:
            check(validator, node, raw)
        return dict(raw)
    finally:
        loader.dispose()


def apply_env(raw: dict[str, Any], root: type, env: Mapping[str, str], problems: list[str],
              ignore: frozenset[str] = frozenset()) -> list[str]:
    """Apply `MLCI_<SECTION>_<KEY>` variables of every dataclass section of `root` onto `raw`;
    returns the names applied. Names in `ignore` are not overrides (variables mlci writes itself)."""
    applied: list[str] = []
    hints = typing.get_type_hints(root)
    for section in (f.name for f in dataclasses.fields(root) if dataclasses.is_dataclass(hints[f.name])):
        section_schema = hints[section]
        prefix = f"{ENV_PREFIX}{section.upper()}_"
        fields = {f.name.upper(): f.name for f in dataclasses.fields(section_schema) if f.name != "where"}
        section_hints = typing.get_type_hints(section_schema)
        for name in sorted(n for n in env if n.startswith(prefix) and n not in ignore):
            key = fields.get(name[len(prefix):])
            if key is None:
                problems.append(f"{name}: {section}.{name[len(prefix):].lower()}: unknown key"
                                + schema.did_you_mean(name[len(prefix):].lower(), list(fields.values())))
                continue
            if not env_settable(section_hints[key]):
                problems.append(f"{name}: {section}.{key}: cannot be set from the environment; use mlci.yaml")
                continue
            try:
                value = parse_env(env[name], section_hints[key])
            except ValueError as exc:
                problems.append(f"{name}: {section}.{key}: {exc}")
                continue
            if not isinstance(raw.get(section), dict):
                raw[section] = {}
            raw[section][key] = value
            applied.append(name)
    return applied


def parse_env_structure(name: str, text: str, hint: Any, key: str, problems: list[str]) -> Any:
    """A structure (a YAML or JSON flow mapping such as `{HOST: {plain_http: true}}`) from the variable `name`,
    validated against `hint` like the file's `key`; None when it is invalid (problems name the variable)."""
    loader, node = schema.load_node(text, name, problems)
    if loader is None:
        return None
    try:
        if node is None:
            problems.append(f"{name}: {key}: empty; give a mapping or unset the variable")
            return None
        value = schema.Validator(loader, name, problems).value(node, hint, key)
        return None if value is schema.INVALID else value
    finally:
        loader.dispose()


def env_settable(hint: Any) -> bool:
    """Scalars (bool, int, float, str, a Literal choice, unions of them) and lists of scalars can come from
    the environment; structures (mappings, datasets) cannot."""
    base = schema.strip_optional(hint)
    if typing.get_origin(base) is tuple:
        return _scalar(typing.get_args(base)[0])
    return _scalar(base)


def _scalar(hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return True
    if origin in (typing.Union, types.UnionType):
        return all(_scalar(arg) for arg in typing.get_args(hint))
    return hint in (bool, int, float, str)


def parse_env(text: str, hint: Any) -> Any:
    """An environment variable's text as a value of `hint`: `null`/empty for None where allowed, lists
    comma-separated; raises ValueError with the expected type."""
    base = schema.strip_optional(hint)
    if schema.is_optional(hint) and text.strip().lower() in ("", "null", "none"):
        return None
    if typing.get_origin(base) is tuple:
        item = typing.get_args(base)[0]
        return tuple(_parse_scalar(part.strip(), item) for part in text.split(",") if part.strip())
    return _parse_scalar(text, base)


def _parse_scalar(text: str, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    wrong = ValueError(f"expected {schema.type_name(hint)}, got {schema.short(text)}")
    if origin is typing.Literal:
        for choice in typing.get_args(hint):
            if str(choice).lower() == text.strip().lower():
                return choice
        raise wrong
    if origin in (typing.Union, types.UnionType):
        for arg in sorted(typing.get_args(hint), key=lambda a: a is str):  # text is the last resort
            try:
                return _parse_scalar(text, arg)
            except ValueError:
                continue
        raise wrong
    if hint is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true or false, got {schema.short(text)}")
    if hint is int:
        try:
            return int(text.strip())
        except ValueError:
            raise ValueError(f"expected an integer, got {schema.short(text)}") from None
    if hint is float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(f"expected a number, got {schema.short(text)}") from None
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {schema.short(text)}")
        return value
    return text


def env_references(config: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every `*_env` setting in a config tree, as (dotted key, variable name): the variables that hold
    secrets (forge.token_env, each dataset's dsn_env, and any such key added later)."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        for f in dataclasses.fields(config):
            value = getattr(config, f.name)
            key = f"{path}.{f.name}" if path else f.name
            if f.name.endswith("_env") and isinstance(value, str):
                yield key, value
            else:
                yield from env_references(value, key)
    elif isinstance(config, (tuple, list)):
        for i, item in enumerate(config):
            yield from env_references(item, f"{path}[{i}]")
    elif isinstance(config, dict):
        for name, item in config.items():
            yield from env_references(item, f"{path}.{name}")


def as_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as plain data (tuples as lists), for `config show` and JSON."""
    def plain(value: Any) -> Any:
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value
    return typing.cast(dict[str, Any], plain(dataclasses.asdict(config)))


def schema_keys(root: type) -> list[tuple[str, str, str]]:
    """Every documented key as (dotted path, type, doc) — the source for docs/config.md's tables."""
    rows: list[tuple[str, str, str]] = []

    def walk(section: type, prefix: str) -> None:
        hints = typing.get_type_hints(section)
        for f in dataclasses.fields(section):
            if dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name], f"{prefix}{f.name}.")
            else:
                rows.append((prefix + f.name, str(hints[f.name]), f.metadata.get("doc", "")))
    walk(root, "")
    return rows


def type_text(hint: Any) -> str:
    """How a key's type reads in docs/config.md."""
    base = schema.strip_optional(hint)
    text: str
    if typing.get_origin(base) is typing.Literal:
        choices = [f"`{a}`" for a in typing.get_args(base)]
        text = " or ".join(choices) if len(choices) < 3 else ", ".join(choices[:-1]) + " or " + choices[-1]
    elif typing.get_origin(base) is tuple:
        item = typing.get_args(base)[0]
        names = {str: "strings", int: "integers", float: "numbers"}
        text = f"list of {names[item] if item in names else _plural(item)}"
    elif typing.get_origin(base) is dict:
        text = "mapping"
    else:
        text = {bool: "bool", int: "int", float: "number", str: "string"}.get(base, schema.type_name(base))
    return f"{text} or null" if schema.is_optional(hint) else text


def _plural(item: Any) -> str:
    name = getattr(item, "__name__", str(item)).lower()
    return name if name.endswith("s") else name + "s"


def default_text(spec: dataclasses.Field[Any]) -> str:
    """How a key's default reads in docs/config.md (YAML spelling)."""
    if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
        return "— (required)"
    value = spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()  # type: ignore[operator]
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{}" if not value else str(value)
    return str(value)


def key_table(section: type, prefix: str) -> str:
    """The Markdown table of one section's keys (key, type, default, meaning), from the schema itself."""
    hints = typing.get_type_hints(section)
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for spec in dataclasses.fields(section):
        if spec.name == "where" or dataclasses.is_dataclass(hints[spec.name]):
            continue
        doc = str(spec.metadata.get("doc", "")).replace("|", "\\|")
        rows.append(f"| `{prefix}{spec.name}` | {type_text(hints[spec.name])} | {default_text(spec)} | {doc} |")
    return "\n".join(rows)
