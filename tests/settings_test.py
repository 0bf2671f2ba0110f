from __future__ import annotations

from pathlib import Path

import pytest

from mlci import settings as cfg
from mlci.core import config as core_config
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
        "scan: {}\n"
        "trian: {}\n"
    ))
    assert problems == [
        "mlci.yaml:3: train.pul: unknown key (did you mean 'pull'?)",
        "mlci.yaml:4: train.push: expected true or false, got str 'yes'",
        "mlci.yaml:5: train.targets: expected a list, got str",
        "mlci.yaml:6: train.output_tail: expected an integer, got float 3.5",
        "mlci.yaml:7: scan: not supported yet (this mlci implements: data_tests, train, report, forge, image)",
        "mlci.yaml:8: trian: unknown key (did you mean 'train'?)",
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


def test_no_config_file_means_defaults(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    loaded = cfg.load(None, tmp_path, environ={})
    assert loaded.path is None and loaded.config == cfg.Config()


def test_explicit_missing_config_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        cfg.load(str(tmp_path / "nope.yaml"), tmp_path, environ={})
    assert caught.value.problems == [f"{tmp_path / 'nope.yaml'}: not found (--config)"]


def test_docs_describe_every_key() -> None:
    docs = (Path(__file__).parents[1] / "docs" / "config.md").read_text()
    for key, _type, doc in cfg.schema_keys():
        assert f"`{key}`" in docs, key
        assert doc
    for section in cfg.NOT_YET_SUPPORTED:
        assert f"`{section}`" in docs
