"""mlci.yaml: the schema (frozen dataclasses), loading with one-line `file:line: key: message` errors,
and `MLCI_<SECTION>_<KEY>` environment overrides."""
from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlci.core.errors import ConfigError

CONFIG_NAME = "mlci.yaml"
SUPPORTED_VERSION = 1
# Top-level sections fixed by the design; each becomes supported when its stage lands.
NOT_YET_SUPPORTED = ("data_tests", "report", "image", "scan", "promote", "registries", "forge")
ENV_PREFIX = "MLCI_"


def _doc(text: str) -> dict[str, Any]:
    """Field metadata: the line that docs/config.md shows for the key."""
    return {"doc": text}


@dataclass(frozen=True)
class TrainConfig:
    """`train`: how `mlci repro` reproduces the repo's DVC stages."""

    remote: str | None = field(default=None, metadata=_doc(
        "DVC remote to pull from and push to; default: the repo's default remote (`core.remote`)."))
    pull: bool = field(default=True, metadata=_doc(
        "Pull data and the run-cache from the remote before `dvc repro` (when a remote is configured)."))
    push: bool = field(default=False, metadata=_doc("Push outputs and the run-cache after a successful run."))
    check_lock: bool | None = field(default=None, metadata=_doc(
        "Refuse a stale `dvc.lock` before and after running; default (null): on when `CI=true`."))
    check_determinism: bool = field(default=False, metadata=_doc(
        "Re-run every stage forced in a scratch copy and compare output hashes."))
    targets: tuple[str, ...] = field(default=(), metadata=_doc(
        "Stages or `dvc.yaml` files to reproduce; default: every stage of the repo."))
    output_tail: int = field(default=40, metadata=_doc(
        "Lines of a failed stage's output repeated in the error message."))


@dataclass(frozen=True)
class Config:
    """The whole effective configuration."""

    version: int = field(default=SUPPORTED_VERSION, metadata=_doc("Schema version; must be 1."))
    train: TrainConfig = field(default_factory=TrainConfig, metadata=_doc("See `train`."))


@dataclass(frozen=True)
class Loaded:
    """A validated config and where it came from (`path` is None when no mlci.yaml exists)."""

    config: Config
    path: Path | None
    source: str
    overrides: tuple[str, ...] = ()


def find_config(start: Path) -> Path | None:
    """The nearest mlci.yaml from `start` up to the enclosing git repository's root."""
    for directory in (start, *start.parents):
        candidate = directory / CONFIG_NAME
        if candidate.is_file():
            return candidate
        if (directory / ".git").exists():
            return None
    return None


def load(explicit: str | None, cwd: Path, environ: typing.Mapping[str, str] | None = None) -> Loaded:
    """Load and validate the config: `--config` if given, else the nearest mlci.yaml, else defaults."""
    env = os.environ if environ is None else environ
    if explicit is not None:
        path: Path | None = Path(explicit)
        if not path.is_file():
            raise ConfigError([f"{explicit}: not found (--config)"])
    else:
        path = find_config(cwd)
    raw: dict[str, Any] = {}
    problems: list[str] = []
    shown = "(no mlci.yaml: defaults)"
    if path is not None:
        shown = _display(path, cwd)
        raw = _parse_file(path, shown, problems)
    overrides = _apply_env(raw, env, problems)
    if problems:
        raise ConfigError(problems)
    return Loaded(_build(Config, raw), path, shown, tuple(overrides))


def _display(path: Path, cwd: Path) -> str:
    try:
        return str(path.resolve().relative_to(cwd.resolve()))
    except ValueError:
        return str(path)


def _parse_file(path: Path, shown: str, problems: list[str]) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{shown}: cannot read: {exc.__class__.__name__}")
        return {}
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problems.append(f"{shown}:{line}: YAML syntax error: {exc.problem or exc.context}")
        return {}
    finally:
        loader.dispose()
    if root is None:
        problems.append(f"{shown}:1: version: missing required key (write `version: {SUPPORTED_VERSION}`)")
        return {}
    return _Validator(loader, shown, problems).top(root)


class _Validator:
    """Walks the YAML node tree against the dataclass schema, collecting one line per problem."""

    def __init__(self, loader: yaml.SafeLoader, shown: str, problems: list[str]) -> None:
        self.loader, self.shown, self.problems = loader, shown, problems

    def problem(self, node: yaml.Node, path: str, message: str) -> None:
        self.problems.append(f"{self.shown}:{node.start_mark.line + 1}: {path}: {message}")

    def top(self, root: yaml.Node) -> dict[str, Any]:
        if not isinstance(root, yaml.MappingNode):
            self.problem(root, "(top level)", f"expected a mapping of sections, got {_kind(root)}")
            return {}
        result = self.mapping(root, Config, "", extra_known=NOT_YET_SUPPORTED)
        if "version" not in result and not any(_key(k) == "version" for k, _ in root.value):
            self.problem(root, "version", f"missing required key (write `version: {SUPPORTED_VERSION}`)")
        elif result.get("version", SUPPORTED_VERSION) != SUPPORTED_VERSION:
            node = next(v for k, v in root.value if _key(k) == "version")
            self.problem(node, "version", f"unsupported version {result['version']!r}; this mlci reads version 1")
        return result

    def mapping(
        self, node: yaml.MappingNode, schema: type, prefix: str, extra_known: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        hints = typing.get_type_hints(schema)
        names = [f.name for f in dataclasses.fields(schema)]
        result: dict[str, Any] = {}
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = _key(key_node)
            path = f"{prefix}{key}"
            if key in seen:
                self.problem(key_node, path, "duplicate key")
                continue
            seen.add(key)
            if key in extra_known:
                self.problem(key_node, path, f"not supported yet (this mlci implements: {', '.join(names[1:])})")
            elif key not in names:
                self.problem(key_node, path, "unknown key" + _did_you_mean(key, [*names, *extra_known]))
            else:
                value = self.value(value_node, hints[key], path)
                if value is not _INVALID:
                    result[key] = value
        return result

    def value(self, node: yaml.Node, hint: Any, path: str) -> Any:
        if dataclasses.is_dataclass(hint):
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, hint, path + ".")
            if _is_null(node):
                return {}
            self.problem(node, path, f"expected a mapping, got {_kind(node)}")
            return _INVALID
        optional = _is_optional(hint)
        base = _strip_optional(hint)
        if optional and _is_null(node):
            return None
        if typing.get_origin(base) is tuple:
            if not isinstance(node, yaml.SequenceNode):
                self.problem(node, path, f"expected a list of strings, got {_kind(node)}")
                return _INVALID
            items = [self.value(item, str, f"{path}[{i}]") for i, item in enumerate(node.value)]
            return _INVALID if _INVALID in items else tuple(items)
        if not isinstance(node, yaml.ScalarNode) or _is_null(node):
            self.problem(node, path, f"expected {_type_name(base)}, got {_kind(node)}")
            return _INVALID
        value = self.loader.construct_object(node, deep=True)
        if not _matches(value, base):
            self.problem(node, path, f"expected {_type_name(base)}, got {_kind(node)} {_short(value)}")
            return _INVALID
        return value


_INVALID = object()


def _key(node: yaml.Node) -> str:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else repr(node)


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _is_optional(hint: Any) -> bool:
    return isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)


def _strip_optional(hint: Any) -> Any:
    if isinstance(hint, types.UnionType):
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        return rest[0]
    return hint


def _matches(value: Any, base: Any) -> bool:
    if base is bool:
        return isinstance(value, bool)
    if base is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if base is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, base)


def _type_name(base: Any) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(base, str(base))


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    tag = node.tag.rsplit(":", 1)[-1]
    return {"str": "str", "int": "int", "float": "float", "bool": "bool", "null": "null"}.get(tag, tag)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _did_you_mean(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"


def _apply_env(raw: dict[str, Any], env: typing.Mapping[str, str], problems: list[str]) -> list[str]:
    """Apply `MLCI_<SECTION>_<KEY>` variables onto `raw`; returns the names applied."""
    applied: list[str] = []
    hints = typing.get_type_hints(Config)
    for section in (f.name for f in dataclasses.fields(Config) if dataclasses.is_dataclass(hints[f.name])):
        schema = hints[section]
        prefix = f"{ENV_PREFIX}{section.upper()}_"
        fields = {f.name.upper(): f.name for f in dataclasses.fields(schema)}
        section_hints = typing.get_type_hints(schema)
        for name in sorted(n for n in env if n.startswith(prefix)):
            key = fields.get(name[len(prefix):])
            if key is None:
                problems.append(f"{name}: {section}.{name[len(prefix):].lower()}: unknown key"
                                + _did_you_mean(name[len(prefix):].lower(), list(fields.values())))
                continue
            try:
                value = _parse_env(env[name], section_hints[key])
            except ValueError as exc:
                problems.append(f"{name}: {section}.{key}: {exc}")
                continue
            raw.setdefault(section, {})[key] = value
            applied.append(name)
    return applied


def _parse_env(text: str, hint: Any) -> Any:
    base = _strip_optional(hint)
    if _is_optional(hint) and text.strip().lower() in ("", "null", "none"):
        return None
    if base is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true or false, got {_short(text)}")
    if base is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"expected an integer, got {_short(text)}") from None
    if typing.get_origin(base) is tuple:
        return tuple(part.strip() for part in text.split(",") if part.strip())
    return text


def _build(schema: type, raw: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(schema)
    kwargs = {
        key: _build(hints[key], value) if dataclasses.is_dataclass(hints[key]) else value
        for key, value in raw.items()
    }
    return schema(**kwargs)


def as_dict(config: Config) -> dict[str, Any]:
    """The config as plain data (tuples as lists), for `config show` and JSON."""
    def plain(value: Any) -> Any:
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value
    return typing.cast(dict[str, Any], plain(dataclasses.asdict(config)))


def schema_keys() -> list[tuple[str, str, str]]:
    """Every documented key as (dotted path, type, doc) — the source for docs/config.md's tables."""
    rows: list[tuple[str, str, str]] = []

    def walk(schema: type, prefix: str) -> None:
        hints = typing.get_type_hints(schema)
        for f in dataclasses.fields(schema):
            if dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name], f"{prefix}{f.name}.")
            else:
                rows.append((prefix + f.name, str(hints[f.name]), f.metadata.get("doc", "")))
    walk(Config, "")
    return rows

