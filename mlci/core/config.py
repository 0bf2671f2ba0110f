"""Loading a config file against a dataclass schema: finding mlci.yaml, one-line `file:line: key: message`
problems, and `MLCI_<SECTION>_<KEY>` environment overrides. Which sections exist is not known here
(mlci/settings.py assembles them)."""
from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mlci.core import schema

CONFIG_NAME = "mlci.yaml"
ENV_PREFIX = "MLCI_"


def find_config(start: Path) -> Path | None:
    """The nearest mlci.yaml from `start` up to the enclosing git repository's root."""
    for directory in (start, *start.parents):
        candidate = directory / CONFIG_NAME
        if candidate.is_file():
            return candidate
        if (directory / ".git").exists():
            return None
    return None


def display(path: Path, cwd: Path) -> str:
    """A path as error messages show it: relative to `cwd` when inside it."""
    try:
        return str(path.resolve().relative_to(cwd.resolve()))
    except ValueError:
        return str(path)


def read_text(path: Path, shown: str, problems: list[str]) -> str | None:
    """A config file's text, or None with one problem line."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{shown}: cannot read: {exc.__class__.__name__}")
        return None


def parse_mapping(text: str, shown: str, root: type, problems: list[str], *,
                  hooks: dict[Any, schema.Hook] | None = None,
                  check: Callable[[schema.Validator, Any, dict[str, Any]], None] | None = None,
                  **mapping_options: Any) -> dict[str, Any] | None:
    """Validate YAML text against dataclass `root`: the raw values, or None when nothing could be read.
    `check(validator, root_node, raw)` adds cross-field problems with line numbers."""
    loader, node = schema.load_node(text, shown, problems)
    try:
        if node is None:
            return None
        validator = schema.Validator(loader, shown, problems, hooks)
        raw = validator.mapping(node, root, "", **mapping_options)
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
        fields = {f.name.upper(): f.name for f in dataclasses.fields(section_schema)}
        section_hints = typing.get_type_hints(section_schema)
        for name in sorted(n for n in env if n.startswith(prefix) and n not in ignore):
            key = fields.get(name[len(prefix):])
            if key is None:
                problems.append(f"{name}: {section}.{name[len(prefix):].lower()}: unknown key"
                                + schema.did_you_mean(name[len(prefix):].lower(), list(fields.values())))
                continue
            if not _env_settable(section_hints[key]):
                problems.append(f"{name}: {section}.{key}: cannot be set from the environment; use mlci.yaml")
                continue
            try:
                value = _parse_env(env[name], section_hints[key])
            except ValueError as exc:
                problems.append(f"{name}: {section}.{key}: {exc}")
                continue
            raw.setdefault(section, {})[key] = value
            applied.append(name)
    return applied


def _env_settable(hint: Any) -> bool:
    """Scalars and lists of strings can come from the environment; structures cannot."""
    base = schema.strip_optional(hint)
    return base in (bool, int, float, str) or base == tuple[str, ...]


def _parse_env(text: str, hint: Any) -> Any:
    base = schema.strip_optional(hint)
    if schema.is_optional(hint) and text.strip().lower() in ("", "null", "none"):
        return None
    if base is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true or false, got {schema.short(text)}")
    if base is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"expected an integer, got {schema.short(text)}") from None
    if typing.get_origin(base) is tuple:
        return tuple(part.strip() for part in text.split(",") if part.strip())
    return text


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
