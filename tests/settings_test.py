from __future__ import annotations

import dataclasses
import os
import time
import types
import typing
from pathlib import Path

import pytest

from mlci import settings as cfg
from mlci.core import config as core_config
from mlci.core import log, schema
from mlci.core.errors import ConfigError


def _load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> cfg.Loaded:
    (tmp_path / "mlci.yaml").write_text(text)
    return cfg.load(None, tmp_path, environ=env or {})


def _problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text, env)
    return caught.value.problems


def test_valid_file_gives_typed_values_and_defaults(tmp_path: Path) -> None:
    loaded = _load(tmp_path, "version: 1\ntrain:\n  push: true\n  targets: [train, evaluate]\n")
    assert loaded.config.train.push is True
    assert loaded.config.train.pull is True
    assert loaded.config.train.targets == ("train", "evaluate")
    assert loaded.config.train.check_lock is None


def test_every_problem_is_one_line_with_file_line_and_key(tmp_path: Path) -> None:
    problems = _problems(tmp_path, (
        "version: 1\n"
        "train:\n"
        "  pul: true\n"
        "  push: 'yes'\n"
        "  targets: train\n"
        "  output_tail: 3.5\n"
        "trian: {}\n"
    ))
    assert problems == [
        "mlci.yaml:3: train.pul: unknown key (did you mean 'pull'?)",
        "mlci.yaml:4: train.push: expected true or false, got str 'yes'",
        "mlci.yaml:5: train.targets: expected a list, got str",
        "mlci.yaml:6: train.output_tail: expected an integer, got float 3.5",
        "mlci.yaml:7: trian: unknown key (did you mean 'train'?)",
    ]


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    problems = _problems(tmp_path, "version: 1\ntrain:\n  push: true\n   pull: [\n")
    assert len(problems) == 1
    assert problems[0].startswith("mlci.yaml:4: YAML syntax error:")


@pytest.mark.parametrize("text, expected", [
    ("train: {}\n", "mlci.yaml:1: version: missing required key (write `version: 1`)"),
    ("", "mlci.yaml:1: version: missing required key (write `version: 1`)"),
    ("version: 2\n", "mlci.yaml:1: version: unsupported version 2; this mlci reads version 1"),
    ("- a\n", "mlci.yaml:1: (top level): expected a mapping, got a list"),
    ("version: 1\ntrain:\n  push: true\n  push: false\n", "mlci.yaml:4: train.push: duplicate key"),
    ("version: 1\ntrain: [a]\n", "mlci.yaml:2: train: expected a mapping, got a list"),
    ("version: 1\ntrain:\n  targets: [a, 3]\n", "mlci.yaml:3: train.targets[1]: expected a string, got int 3"),
])
def test_structural_problems(tmp_path: Path, text: str, expected: str) -> None:
    assert _problems(tmp_path, text) == [expected]


def test_env_overrides_are_typed_and_win_over_the_file(tmp_path: Path) -> None:
    loaded = _load(tmp_path, "version: 1\ntrain:\n  pull: true\n", {
        "MLCI_TRAIN_PULL": "false", "MLCI_TRAIN_TARGETS": "a, b", "MLCI_TRAIN_OUTPUT_TAIL": "7",
        "MLCI_TRAIN_CHECK_LOCK": "null", "UNRELATED": "x",
    })
    assert loaded.config.train.pull is False
    assert loaded.config.train.targets == ("a", "b")
    assert loaded.config.train.output_tail == 7
    assert loaded.config.train.check_lock is None
    assert loaded.overrides == ("MLCI_TRAIN_CHECK_LOCK", "MLCI_TRAIN_OUTPUT_TAIL", "MLCI_TRAIN_PULL",
                                "MLCI_TRAIN_TARGETS")


def test_bad_env_overrides_name_the_variable(tmp_path: Path) -> None:
    problems = _problems(tmp_path, "version: 1\n", {"MLCI_TRAIN_PUSH": "maybe", "MLCI_TRAIN_PUHS": "1"})
    assert problems == [
        "MLCI_TRAIN_PUHS: train.puhs: unknown key (did you mean 'push'?)",
        "MLCI_TRAIN_PUSH: train.push: expected true or false, got 'maybe'",
    ]


def test_config_is_searched_upwards_to_the_git_root(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "mlci.yaml").write_text("version: 1\n")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert core_config.find_config(deep) == tmp_path / "mlci.yaml"
    inner = tmp_path / "sub"
    (inner / ".git").mkdir(parents=True)
    assert core_config.find_config(inner) is None


def test_a_found_mlci_yaml_that_links_out_of_the_repository_is_refused_unread(tmp_path: Path) -> None:
    outside = tmp_path / "host-secrets.yaml"
    outside.write_text("root: $6$hash-of-a-password\n")
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "mlci.yaml").symlink_to(outside)
    with pytest.raises(ConfigError) as caught:
        cfg.load(None, repo / "src", environ={})  # found from a subdirectory, like every command does
    (problem,) = caught.value.problems
    assert problem.startswith(f"{repo / 'mlci.yaml'}: a symlink out of the repository (to {outside})")
    assert "hash-of-a-password" not in problem and "root" not in problem.replace(str(tmp_path), "")
    (repo / "config").mkdir()
    (repo / "config" / "mlci.yaml").write_text("version: 1\ntrain: {push: true}\n")
    (repo / "mlci.yaml").unlink()
    (repo / "mlci.yaml").symlink_to("config/mlci.yaml")  # a link inside the repository is read
    assert cfg.load(None, repo, environ={}).config.train.push is True
    with pytest.raises(ConfigError, match="root: unknown key"):  # named with --config: the user's own choice
        cfg.load(str(outside), repo, environ={})


def test_no_config_file_means_defaults(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    loaded = cfg.load(None, tmp_path, environ={})
    assert loaded.path is None and loaded.config == cfg.Config()


def test_explicit_missing_config_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        cfg.load(str(tmp_path / "nope.yaml"), tmp_path, environ={})
    assert caught.value.problems == [f"{tmp_path / 'nope.yaml'}: not found (--config)"]


def test_docs_config_tables_are_the_generated_ones() -> None:
    """Every key table in docs/ (docs/config.md has all; each stage's page its own) comes from the schema
    (scripts/config-docs): they cannot drift."""
    import runpy

    root = Path(__file__).parents[1] / "docs"
    render = runpy.run_path(str(Path(__file__).parents[1] / "scripts" / "config-docs"))["render"]
    assert (root / "config.md").read_text().count("<!-- keys: ") == len(cfg.key_tables())
    for page in sorted(root.glob("*.md")):
        docs = page.read_text()
        assert render(docs) == docs, f"docs/{page.name} is stale: run .venv/bin/python scripts/config-docs"


def test_docs_describe_every_key() -> None:
    docs = (Path(__file__).parents[1] / "docs" / "config.md").read_text()
    for key, _type, doc in cfg.schema_keys():
        assert f"`{key}`" in docs, key
        assert doc


def _env_text(hint: object) -> tuple[str, object]:
    """A valid environment text for a settable key's type, and the value it must give."""
    base = schema.strip_optional(hint)
    if typing.get_origin(base) is tuple:
        item_text, item = _env_text(typing.get_args(base)[0])
        return f"{item_text}, {item_text}", (item, item)
    if typing.get_origin(base) is typing.Literal:
        choice = typing.get_args(base)[-1]
        return str(choice).upper(), choice  # choices are matched without case: GitLab, NONE
    if typing.get_origin(base) in (typing.Union, types.UnionType):
        return _env_text(typing.get_args(base)[0])
    return {bool: ("on", True), int: ("7", 7), float: ("0.25", 0.25), str: ("some-text", "some-text")}[base]


def _sections() -> list[tuple[str, str, object]]:
    hints = typing.get_type_hints(cfg.Config)
    return [(section, f.name, typing.get_type_hints(hints[section])[f.name])
            for section in (f.name for f in dataclasses.fields(cfg.Config) if dataclasses.is_dataclass(hints[f.name]))
            for f in dataclasses.fields(hints[section]) if f.name != "where"]


@pytest.mark.parametrize("section, key, hint", _sections(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_settable_key_can_be_set_from_the_environment(section: str, key: str, hint: object) -> None:
    name = f"MLCI_{section.upper()}_{key.upper()}"
    raw: dict[str, object] = {}
    problems: list[str] = []
    if not core_config.env_settable(hint):
        core_config.apply_env(raw, cfg.Config, {name: "x"}, problems)
        assert problems == [f"{name}: {section}.{key}: cannot be set from the environment; use mlci.yaml"]
        return
    text, expected = _env_text(hint)
    assert core_config.apply_env(raw, cfg.Config, {name: text}, problems) == [name] and problems == []
    assert getattr(getattr(schema.build(cfg.Config, raw), section), key) == expected
    if schema.is_optional(hint):
        core_config.apply_env(raw, cfg.Config, {name: "null"}, problems)
        assert getattr(getattr(schema.build(cfg.Config, raw), section), key) is None


def test_structures_are_the_only_keys_not_settable_from_the_environment() -> None:
    unsettable = {f"{s}.{k}" for s, k, hint in _sections() if not core_config.env_settable(hint)}
    assert unsettable == {"data_tests.datasets", "report.gates", "image.build_args", "image.env",
                          "scan.exceptions", "promote.environments", "promote.signing", "promote.gitops"}
    assert schema.is_optional(typing.get_type_hints(cfg.ForgeSettings)["kind"])  # Literal | None: typing.Union


@pytest.mark.parametrize("name, text, key, expected", [
    ("MLCI_REPORT_PLOTS", "none", "report.plots", "none"),
    ("MLCI_FORGE_KIND", "github", "forge.kind", "github"),
    ("MLCI_IMAGE_BUILDER", "buildah", "image.builder", "buildah"),
])
def test_enum_valued_keys_work_from_the_environment(tmp_path: Path, name: str, text: str, key: str,
                                                    expected: str) -> None:
    loaded = _load(tmp_path, "version: 1\n", {name: text})
    section, field_name = key.split(".")
    assert getattr(getattr(loaded.config, section), field_name) == expected and loaded.overrides == (name,)


def test_an_enum_value_that_is_no_choice_names_the_choices(tmp_path: Path) -> None:
    assert _problems(tmp_path, "version: 1\n", {"MLCI_REPORT_PLOTS": "png"}) == [
        "MLCI_REPORT_PLOTS: report.plots: expected one of mermaid, none, got 'png'"]


def test_the_values_of_every_env_key_are_registered_as_secrets(tmp_path: Path) -> None:
    env = {"FORGE_ACCESS": "forge-value-1", "WAREHOUSE": "host=db password=pw-in-dsn-9", "UNUSED": "u-value-1"}
    _load(tmp_path, "version: 1\nforge: {token_env: FORGE_ACCESS}\ndata_tests:\n  datasets:\n"
                    "    - {name: w, dsn_env: WAREHOUSE, table: t}\n", env)
    assert log.registered_secrets() >= {"forge-value-1", "host=db password=pw-in-dsn-9", "pw-in-dsn-9"}
    assert "u-value-1" not in log.registered_secrets()
    found = list(core_config.env_references(cfg.load(None, tmp_path, environ=env).config))
    assert found == [("data_tests.datasets[0].dsn_env", "WAREHOUSE"), ("forge.token_env", "FORGE_ACCESS")]


def test_cross_field_problems_name_the_line_or_the_variable(tmp_path: Path) -> None:
    assert _problems(tmp_path, "version: 1\n\nforge:\n  token_env: glpat-pasted-token\n") == [
        "mlci.yaml:4: forge.token_env: must be the NAME of the environment variable holding the token, not the token"]
    assert _problems(tmp_path, "version: 1\n", {"MLCI_FORGE_TOKEN_ENV": "glpat-x"})[0].startswith(
        "MLCI_FORGE_TOKEN_ENV: forge.token_env: must be the NAME")
    assert _problems(tmp_path, "version: 1\ndata_tests:\n  file: nope.yaml\n") == [
        "mlci.yaml:3: data_tests.file: nope.yaml not found"]
    assert _problems(tmp_path, "version: 1\nreport:\n  precision: -1\n") == [
        "mlci.yaml:3: report.precision (or MLCI_REPORT_PRECISION): must be from 1 to 17, got -1"]
    # a key of a free-form mapping (an environment, a registry host) is located like a field
    for body in ("    stage: {}\n", "    stage:\n", "    stage:\n      scan_max_age_days: 3\n"):
        assert _problems(tmp_path, f"version: 1\npromote:\n  environments:\n{body}") == [
            "mlci.yaml:4: promote.environments.stage: accepts nothing: give branches, tags or both"]


def test_a_suite_file_outside_the_repository_is_refused(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (tmp_path / "secret.yaml").write_text("password: hunter2\n")
    (repo / "link.yaml").symlink_to(tmp_path / "secret.yaml")
    for name in ("../secret.yaml", "link.yaml", str(tmp_path / "secret.yaml")):
        problems = _problems(repo, f"version: 1\ndata_tests:\n  file: {name}\n")
        assert problems == [f"mlci.yaml:3: data_tests.file: {name} is outside the directory of the config; keep "
                            "the suite inside the repository"]


@pytest.mark.parametrize("kind", ["directory", "fifo", "dangling symlink", "too large"])
def test_a_config_that_is_not_a_readable_file_is_an_error_never_the_defaults(tmp_path: Path, kind: str) -> None:
    (tmp_path / ".git").mkdir()
    config = tmp_path / "mlci.yaml"
    expected = {"directory": "mlci.yaml: is a directory, not a regular file",
                "fifo": "mlci.yaml: is a FIFO, not a regular file",  # opened without blocking: never a hang
                "dangling symlink": "mlci.yaml: a dangling symlink (to gone.yaml)",
                "too large": "mlci.yaml: larger than 8 MB; not read"}[kind]
    if kind == "directory":
        config.mkdir()
    elif kind == "fifo":
        os.mkfifo(config)
    elif kind == "dangling symlink":
        config.symlink_to("gone.yaml")
    else:
        config.write_bytes(b"#" * (core_config.MAX_CONFIG_BYTES + 1))
    for explicit in (None, str(config)):
        with pytest.raises(ConfigError) as caught:
            cfg.load(explicit, tmp_path, environ={})
        assert caught.value.problems == [expected]


def test_yaml_merge_keys_and_anchors_work(tmp_path: Path) -> None:
    loaded = _load(tmp_path, "version: 1\ntrain:\n  <<: &base {push: true, pull: false}\n  output_tail: 5\n"
                             "report:\n  sections: &s [a.md, b.md]\nimage:\n  code: *s\n")
    assert (loaded.config.train.push, loaded.config.train.pull) == (True, False)
    assert loaded.config.image.code == ("a.md", "b.md")


@pytest.mark.parametrize("text, expected", [
    ("version: 1\ntrain:\n  push: !foo true\n",
     "mlci.yaml:3: train.push: cannot read the value: could not determine a constructor for the tag '!foo'"),
    ("version: 1\ntrain:\n  remote: !!python/object/apply:os.system [id]\n",
     "mlci.yaml:3: train.remote: expected a string, got a list"),
    ("version: 1\ntrain:\n  remote: !!timestamp main\n",
     "mlci.yaml:3: train.remote: cannot read the value: it is not a valid !!timestamp; remove the tag, or quote "
     "the value to have text"),  # it was PyYAML's AttributeError: 'NoneType' object has no attribute 'groupdict'
    ("version: 1\ntrain:\n  output_tail: " + "9" * 5000 + "\n",  # it ended in sys.set_int_max_str_digits()
     "mlci.yaml:3: train.output_tail: cannot read the value: an integer of more than 4300 digits"),
    ("version: 1\ntrain:\n  push: tr\x00ue\n", "mlci.yaml:3: not allowed in YAML: the control character '\\x00'"),
    ("version: 1\ntrain:\n  \"a\\nb\\e[2J\": 1\n",
     "mlci.yaml:3: train.a\\nb\\x1b[2J: unknown key (known: remote, pull, push, check_lock, check_determinism, "
     "targets, output_tail)"),
    ("~\n", "mlci.yaml:1: version: missing required key (write `version: 1`)"),
    ("version: 1\n---\nversion: 1\n", "mlci.yaml:2: YAML syntax error: but found another document"),
    ("version: 1\ntrain:\n  targets: &a [*a]\n",
     "mlci.yaml:3: recursive alias: an anchor (`&name`) is used inside itself"),
    ("version: 1\ntrain:\n  targets: " + "[" * 100 + "]" * 100 + "\n", "mlci.yaml:3: nested deeper than 64 levels"),
    (b"version: 1\n# caf\xe9\n".decode("latin-1"), None),
])
def test_hostile_yaml_is_one_problem_line(tmp_path: Path, text: str, expected: str | None) -> None:
    if expected is None:  # not UTF-8: the bytes, not the text
        (tmp_path / "mlci.yaml").write_bytes(text.encode("latin-1"))
        with pytest.raises(ConfigError) as caught:
            cfg.load(None, tmp_path, environ={})
        assert caught.value.problems == ["mlci.yaml:2: not UTF-8 text (byte 0xe9)"]
        return
    assert _problems(tmp_path, text) == [expected]


def test_billion_laughs_is_refused_in_milliseconds(tmp_path: Path) -> None:
    laughs = "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9) if i else 'x, x, x, x, x, x, x, x, x'}]\n"
                     for i in range(9))
    started = time.process_time()  # CPU time: what the work costs, not how busy the machine is
    problems = _problems(tmp_path, f"version: 1\n{laughs}train:\n  targets: *a8\n")
    assert time.process_time() - started < 1.0
    assert problems == ["mlci.yaml:7: more than 100000 values once its aliases are expanded; use fewer nested "
                        "aliases (`*name`)"]


def test_the_registries_section_comes_from_one_variable_merged_over_the_file(tmp_path: Path) -> None:
    text = "version: 1\nregistries:\n  a.example:\n    concurrency: 4\n    chunk_size: 1048576\n"
    env = {"MLCI_REGISTRIES": '{a.example: {plain_http: true, concurrency: 2}, "127.0.0.1:5000": {plain_http: true}}'}
    loaded = _load(tmp_path, text, env)
    registries = loaded.config.registries
    assert (registries["a.example"].plain_http, registries["a.example"].concurrency,
            registries["a.example"].chunk_size) == (True, 2, 1048576)
    assert registries["127.0.0.1:5000"].plain_http and "MLCI_REGISTRIES" in loaded.overrides


@pytest.mark.parametrize("value, problem", [
    ("{a.example: {plain_htp: true}}", "MLCI_REGISTRIES:1: registries.a.example.plain_htp: unknown key (did you "
                                       "mean 'plain_http'?)"),
    ("[a.example]", "MLCI_REGISTRIES:1: registries: expected a mapping, got a list"),
    ("{a.example: {", "MLCI_REGISTRIES:1: YAML syntax error: expected the node content"),
    ("", "MLCI_REGISTRIES: registries: empty; give a mapping or unset the variable"),
    ("{a.example: {chunk_size: 1}}", "MLCI_REGISTRIES: registries.a.example.chunk_size: 1: must be "
                                     "65536..268435456 bytes"),
])
def test_a_bad_registries_variable_is_named(tmp_path: Path, value: str, problem: str) -> None:
    problems = _problems(tmp_path, "version: 1\n", {"MLCI_REGISTRIES": value})
    assert len(problems) == 1 and problems[0].startswith(problem), problems


def test_one_run_names_the_problems_of_every_kind(tmp_path: Path) -> None:
    """A wrong type or an unknown key anywhere stopped the load before the checks across fields: `mlci config
    check` named `precision: four` alone, and the two other problems only once it was fixed. What is right is
    checked too, so one run names all of them."""
    problems = _problems(tmp_path, "version: 1\nreport:\n  plot_points: 1000\n  id: 'x -->'\n  precision: four\n"
                                   "  colour: red\nscan:\n  severities: [HIGH]\n  max_db_age_days: -1\n")
    assert [p.split(": ", 2)[1] for p in problems] == [
        "report.precision", "report.colour", "report.plot_points (or MLCI_REPORT_PLOT_POINTS)",
        "report.id (or MLCI_REPORT_ID)",
        "scan.max_db_age_days"], problems
    assert all(p.startswith("mlci.yaml:") for p in problems)
