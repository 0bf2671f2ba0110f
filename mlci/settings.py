"""mlci.yaml as a whole: where every stage's section meets, loaded through core.config (file, then
`MLCI_*` overrides, then defaults) with the sections' own cross-field rules."""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlci.bundle.settings import BundleSettings, bundle_problems
from mlci.core import config as core_config
from mlci.core import log, schema
from mlci.core.errors import ConfigError
from mlci.core.fsutil import outside
from mlci.datatest.spec import HOOKS as DATATEST_HOOKS
from mlci.datatest.spec import DataTests, Suite, override_problems
from mlci.dvcstage.settings import TrainConfig
from mlci.forge.settings import ForgeSettings, forge_problems
from mlci.image.settings import ImageSettings, image_problems
from mlci.oci.settings import RegistrySettings, deprecations, registries_problems
from mlci.promote.settings import Approval, Environment, GitOps, PromoteSettings, Signing, promote_problems
from mlci.report.settings import ReportSettings, report_problems
from mlci.scan.settings import ScanSettings, scan_problems

SUPPORTED_VERSION = 1
# Variables mlci writes for later jobs (mlci build --dotenv), not config overrides.
OUTPUT_VARIABLES = frozenset({"MLCI_IMAGE_DIGEST"})
# The `registries` section from one variable (a YAML/JSON flow mapping), merged host by host, key by key, over
# mlci.yaml's: a job can trust a registry's CA or name its credentials' variables without editing the file.
REGISTRIES_VARIABLE = "MLCI_REGISTRIES"


def _see(section: str) -> dict[str, Any]:
    return {"doc": f"See `{section}`."}


@dataclass(frozen=True)
class Config:
    """The whole effective configuration."""

    version: int = field(default=SUPPORTED_VERSION, metadata={"doc": "Schema version: required, must be 1."})
    data_tests: DataTests = field(default_factory=DataTests, metadata=_see("data_tests"))
    train: TrainConfig = field(default_factory=TrainConfig, metadata=_see("train"))
    report: ReportSettings = field(default_factory=ReportSettings, metadata=_see("report"))
    forge: ForgeSettings = field(default_factory=ForgeSettings, metadata=_see("forge"))
    image: ImageSettings = field(default_factory=ImageSettings, metadata=_see("image"))
    scan: ScanSettings = field(default_factory=ScanSettings, metadata=_see("scan"))
    promote: PromoteSettings = field(default_factory=PromoteSettings, metadata=_see("promote"))
    bundle: BundleSettings = field(default_factory=BundleSettings, metadata=_see("bundle"))
    registries: dict[str, RegistrySettings] = field(default_factory=dict, metadata={"doc": (
        "Per registry host (`HOST[:PORT]`): credentials, TLS, mirrors, chunk size, concurrency; see `registries`.")})


@dataclass(frozen=True)
class Loaded:
    """A validated config and where it came from (`path` is None when no mlci.yaml exists)."""

    config: Config
    path: Path | None
    source: str
    overrides: tuple[str, ...] = ()


def load(explicit: str | None, cwd: Path, environ: Mapping[str, str] | None = None) -> Loaded:
    """Load and validate the config: `--config` if given, else the nearest mlci.yaml, else defaults.
    Registers the value of every variable a `*_env` key names as a secret (masked in all output)."""
    env = os.environ if environ is None else environ
    path = Path(explicit) if explicit is not None else core_config.find_config(cwd)
    if explicit is not None and not os.path.lexists(explicit):
        raise ConfigError([f"{explicit}: not found (--config)"])
    raw: dict[str, Any] = {}
    problems: list[str] = []
    locations: dict[str, str] = {}
    shown = "(no mlci.yaml: defaults)"
    if path is not None:
        shown = core_config.display(path, cwd)
        target = None if explicit is not None else outside(core_config.repository_root(path.parent), path)
        if target is not None and target.exists():  # its content would be quoted in the problems: not read
            raise ConfigError([f"{shown}: a symlink out of the repository (to {target}); mlci reads the mlci.yaml "
                               "of the repository only (another file: --config PATH)"])
        raw = _parse_file(path, shown, problems, locations)
    overrides = core_config.apply_env(raw, Config, env, problems, ignore=OUTPUT_VARIABLES)
    if REGISTRIES_VARIABLE in env:
        overrides.append(REGISTRIES_VARIABLE)
        _registries_from_env(raw, env[REGISTRIES_VARIABLE], problems, locations)
    suite = raw.get("data_tests", {})
    if suite.get("file"):
        at = _where("data_tests.file", overrides, locations, shown)
        if suite.get("datasets"):
            problems.append(f"{at}: data_tests: give `file` or inline `datasets`, not both")
        base = path.parent if path is not None else cwd
        suite["datasets"] = _suite_file(base, suite["file"], at, core_config.display(base / suite["file"], cwd),
                                        problems)
    # The suite's own rules run while it is parsed (datatest/spec.py HOOKS); values from MLCI_* are checked here.
    problems.extend(override_problems(raw.get("data_tests", {}), overrides))
    # `raw` holds what is right (the file is read leniently): the checks across fields run on it too, so that one
    # run names every problem, not the first kind found
    try:
        config: Config = schema.build(Config, raw)
    except (TypeError, ValueError):  # what is right does not make a config (a required part is wrong)
        raise ConfigError(problems) from None
    problems.extend(_located(p, shown, overrides, locations) for p in report_problems(config.report, shown))
    problems.extend(f"{_where(p.split(':', 1)[0], overrides, locations, shown)}: {p}"
                    for p in forge_problems(config.forge))
    problems.extend(f"{_where(key, overrides, locations, shown)}: {text}"
                    for key, text in registries_problems(config.registries))
    problems.extend(f"{_where(p.split(':', 1)[0], overrides, locations, shown)}: {p}" if p.startswith("scan.") else p
                    for p in scan_problems(config.scan))
    problems.extend(f"{_where(p.split(':', 1)[0], overrides, locations, shown)}: {p}" for p in
                    image_problems(config.image))
    problems.extend(f"{_where(p.split(':', 1)[0], overrides, locations, shown)}: {p}" for p in
                    promote_problems(config.promote))
    problems.extend(f"{_where(p.split(':', 1)[0], overrides, locations, shown)}: {p}" for p in
                    bundle_problems(config.bundle))
    if problems:
        raise ConfigError(problems)
    for message in deprecations(config.image.plain_http, config.image.ca_bundle):
        log.logger.warning("mlci: %s: %s", shown, message)
    for _key, name in core_config.env_references(config):
        log.add_secret(env.get(name))
    return Loaded(config, path, shown, tuple(overrides))


def _registries_from_env(raw: dict[str, Any], text: str, problems: list[str], locations: dict[str, str]) -> None:
    value = core_config.parse_env_structure(REGISTRIES_VARIABLE, text, dict[str, RegistrySettings], "registries",
                                            problems)
    if value is None:
        return
    merged = dict(raw.get("registries") or {})
    for host, entry in value.items():
        merged[host] = {**merged.get(host, {}), **entry}
        locations.update({f"registries.{host}": REGISTRIES_VARIABLE,
                          **{f"registries.{host}.{key}": REGISTRIES_VARIABLE for key in entry}})
    raw["registries"] = merged


def _located(problem: str, shown: str, overrides: list[str], locations: dict[str, str]) -> str:
    """A problem `SHOWN: key ...` with the line of its key (or the variable that set it) instead of SHOWN."""
    prefix = f"{shown}: "
    key = re.match(r"[\w.]+", problem[len(prefix):]) if problem.startswith(prefix) else None
    if key is None:
        return problem
    return f"{_where(key[0], overrides, locations, shown)}: {problem[len(prefix):]}"


def _where(key: str, overrides: list[str], locations: dict[str, str], shown: str) -> str:
    """Where a key's value came from: its override variable, its `file:line`, or the file."""
    variable = core_config.ENV_PREFIX + key.replace(".", "_").upper()
    if variable in overrides:
        return variable
    return locations.get(key, shown)


def _parse_file(path: Path, shown: str, problems: list[str], locations: dict[str, str]) -> dict[str, Any]:
    text = core_config.read_text(path, shown, problems)
    if text is None:
        return {}
    raw = core_config.parse_mapping(text, shown, Config, problems, hooks=DATATEST_HOOKS, check=_check_version,
                                    locations=locations, lenient=True)
    if raw is None and not problems:
        problems.append(f"{shown}:1: version: missing required key (write `version: {SUPPORTED_VERSION}`)")
    return raw or {}


def _check_version(validator: schema.Validator, root: Any, raw: dict[str, Any]) -> None:
    pairs = root.value if isinstance(root, yaml.MappingNode) else []  # a null document validates as {}
    version_nodes = [v for k, v in pairs if schema.scalar_key(k) == "version"]
    if not version_nodes:
        validator.problem(root, "version", f"missing required key (write `version: {SUPPORTED_VERSION}`)")
    elif raw.get("version", SUPPORTED_VERSION) != SUPPORTED_VERSION:
        validator.problem(version_nodes[0], "version",
                          f"unsupported version {raw['version']!r}; this mlci reads version 1")


def _suite_file(base: Path, name: str, at: str, shown: str, problems: list[str]) -> Any:
    """The datasets of a suite kept in its own file (data_tests.file, inside `base`); `at` is where the
    key is set. A file outside the repository is refused: its content would end up in error messages."""
    path = base / name
    if not os.path.lexists(path):
        problems.append(f"{at}: data_tests.file: {name} not found")
        return ()
    if not path.resolve().is_relative_to(base.resolve()):
        problems.append(f"{at}: data_tests.file: {name} is outside the directory of the config; "
                        "keep the suite inside the repository")
        return ()
    text = core_config.read_text(path, shown, problems)
    if text is None:
        return ()
    raw = core_config.parse_mapping(text, shown, Suite, problems, hooks=DATATEST_HOOKS)
    return (raw or {}).get("datasets", ())


def schema_keys() -> list[tuple[str, str, str]]:
    """Every documented key of mlci.yaml as (dotted path, type, doc), for docs/config.md."""
    return core_config.schema_keys(Config)



def key_tables() -> dict[str, str]:
    """docs/config.md's table of each section's keys (the top level under "top"), generated from the schema."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(Config)
    tables = {"top": core_config.key_table(Config, "")}
    for spec in dataclasses.fields(Config):
        if dataclasses.is_dataclass(hints[spec.name]):
            tables[spec.name] = core_config.key_table(hints[spec.name], f"{spec.name}.")
    tables["registries"] = core_config.key_table(RegistrySettings, "registries.HOST.")
    tables["promote"] = "\n\n".join(core_config.key_table(section, prefix) for section, prefix in (
        (PromoteSettings, "promote."), (Environment, "promote.environments.NAME."),
        (Approval, "promote.environments.NAME.approval."), (Signing, "promote.signing."), (GitOps, "promote.gitops.")))
    return tables
