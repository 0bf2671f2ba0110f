"""mlci.yaml: the schema (frozen dataclasses), loading with one-line `file:line: key: message` errors,
and `MLCI_<SECTION>_<KEY>` environment overrides."""
from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlci.core import schema
from mlci.core.errors import ConfigError
from mlci.datatest.spec import HOOKS as DATATEST_HOOKS
from mlci.build.settings import ImageSettings
from mlci.datatest.spec import DataTests, Suite, semantic_problems
from mlci.forge.settings import ForgeSettings, forge_problems
from mlci.report.settings import ReportSettings, gate_problems

CONFIG_NAME = "mlci.yaml"
SUPPORTED_VERSION = 1
# Top-level sections fixed by the design; each becomes supported when its stage lands.
NOT_YET_SUPPORTED = ("scan", "promote", "registries")
ENV_PREFIX = "MLCI_"
# Variables mlci writes for later jobs (mlci build --dotenv), not config overrides.
OUTPUT_VARIABLES = frozenset({"MLCI_IMAGE_DIGEST"})


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
    data_tests: DataTests = field(default_factory=DataTests, metadata=_doc("See `data_tests`."))
    train: TrainConfig = field(default_factory=TrainConfig, metadata=_doc("See `train`."))
    report: ReportSettings = field(default_factory=ReportSettings, metadata=_doc("See `report`."))
    forge: ForgeSettings = field(default_factory=ForgeSettings, metadata=_doc("See `forge`."))
    image: ImageSettings = field(default_factory=ImageSettings, metadata=_doc("See `image`."))


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
    path = Path(explicit) if explicit is not None else find_config(cwd)
    if explicit is not None and not Path(explicit).is_file():
        raise ConfigError([f"{explicit}: not found (--config)"])
    raw: dict[str, Any] = {}
    problems: list[str] = []
    shown = "(no mlci.yaml: defaults)"
    if path is not None:
        shown = _display(path, cwd)
        raw = _parse_file(path, shown, problems)
    overrides = _apply_env(raw, env, problems)
    suite = raw.get("data_tests", {})
    if suite.get("file"):
        if suite.get("datasets"):
            problems.append(f"{shown}: data_tests: give `file` or inline `datasets`, not both")
        base = path.parent if path is not None else cwd
        suite["datasets"] = _suite_file(base / suite["file"], shown, suite["file"], problems)
    if problems:
        raise ConfigError(problems)
    config: Config = schema.build(Config, raw)
    problems.extend(semantic_problems(config.data_tests.datasets))
    problems.extend(gate_problems(config.report.gates))
    problems.extend(f"{shown}: {p}" for p in forge_problems(config.forge))
    if problems:
        raise ConfigError(problems)
    return Loaded(config, path, shown, tuple(overrides))


def _display(path: Path, cwd: Path) -> str:
    try:
        return str(path.resolve().relative_to(cwd.resolve()))
    except ValueError:
        return str(path)


def _parse_file(path: Path, shown: str, problems: list[str]) -> dict[str, Any]:
    text = _read(path, shown, problems)
    if text is None:
        return {}
    loader, root = schema.load_node(text, shown, problems)
    try:
        if root is None:
            if not problems:
                problems.append(f"{shown}:1: version: missing required key (write `version: {SUPPORTED_VERSION}`)")
            return {}
        validator = schema.Validator(loader, shown, problems, DATATEST_HOOKS)
        raw = validator.mapping(root, Config, "", extra_known=NOT_YET_SUPPORTED,
                                extra_message="not supported yet (this mlci implements: data_tests, train, report, forge, image)")
        if raw is schema.INVALID:
            return {}
        _check_version(validator, root, raw)
        return dict(raw)
    finally:
        loader.dispose()


def _read(path: Path, shown: str, problems: list[str]) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{shown}: cannot read: {exc.__class__.__name__}")
        return None


def _check_version(validator: schema.Validator, root: Any, raw: dict[str, Any]) -> None:
    version_nodes = [v for k, v in root.value if schema.scalar_key(k) == "version"]
    if not version_nodes:
        validator.problem(root, "version", f"missing required key (write `version: {SUPPORTED_VERSION}`)")
    elif raw.get("version", SUPPORTED_VERSION) != SUPPORTED_VERSION:
        validator.problem(version_nodes[0], "version",
                          f"unsupported version {raw['version']!r}; this mlci reads version 1")


def _suite_file(path: Path, shown_config: str, name: str, problems: list[str]) -> Any:
    """The datasets of a suite kept in its own file (data_tests.file)."""
    shown = str(Path(shown_config).parent / name) if Path(shown_config).parent != Path(".") else name
    if not path.is_file():
        problems.append(f"{shown_config}: data_tests.file: {name} not found")
        return ()
    text = _read(path, shown, problems)
    if text is None:
        return ()
    loader, root = schema.load_node(text, shown, problems)
    try:
        if root is None:
            return ()
        raw = schema.Validator(loader, shown, problems, DATATEST_HOOKS).mapping(root, Suite, "")
        return () if raw is schema.INVALID else raw.get("datasets", ())
    finally:
        loader.dispose()


def _apply_env(raw: dict[str, Any], env: typing.Mapping[str, str], problems: list[str]) -> list[str]:
    """Apply `MLCI_<SECTION>_<KEY>` variables onto `raw`; returns the names applied."""
    applied: list[str] = []
    hints = typing.get_type_hints(Config)
    for section in (f.name for f in dataclasses.fields(Config) if dataclasses.is_dataclass(hints[f.name])):
        section_schema = hints[section]
        prefix = f"{ENV_PREFIX}{section.upper()}_"
        fields = {f.name.upper(): f.name for f in dataclasses.fields(section_schema)}
        section_hints = typing.get_type_hints(section_schema)
        for name in sorted(n for n in env if n.startswith(prefix) and n not in OUTPUT_VARIABLES):
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

    def walk(section: type, prefix: str) -> None:
        hints = typing.get_type_hints(section)
        for f in dataclasses.fields(section):
            if dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name], f"{prefix}{f.name}.")
            else:
                rows.append((prefix + f.name, str(hints[f.name]), f.metadata.get("doc", "")))
    walk(Config, "")
    return rows

