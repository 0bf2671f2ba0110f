from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlci.core.errors import ConfigError
from mlci.dvcstage import lock

LOCK: dict[str, Any] = {
    "prepare": {"cmd": "p", "deps": [{"path": "raw.csv", "md5": "r1"}],
                "outs": [{"path": "train.csv", "md5": "t1"}]},
    "train": {"cmd": "t", "deps": [{"path": "train.csv", "md5": "t1"}],
              "params": {"params.yaml": {"train.lr": 0.1}}, "outs": [{"path": "model.pkl", "md5": "m1"}]},
}


def test_missing_files_are_not_staleness() -> None:
    status = {"prepare": [{"changed outs": {"train.csv": "deleted"}}],
              "train": [{"changed deps": {"train.csv": "deleted"}}, {"changed outs": {"model.pkl": "deleted"}}]}
    assert lock.stale_reasons(status, LOCK) == []


def test_changed_params_deps_and_commands_are_named_per_stage() -> None:
    status = {
        "prepare": ["changed command", {"changed deps": {"raw.csv": "modified"}}],
        "train": [{"changed deps": {"params.yaml": {"train.lr": "modified", "train.depth": "new"}}}],
    }
    assert lock.stale_reasons(status, LOCK) == [
        "stage 'prepare': command changed since dvc.lock was written",
        "stage 'prepare': dependency raw.csv modified since dvc.lock was written",
        "stage 'train': param train.lr in params.yaml modified since dvc.lock was written",
        "stage 'train': param train.depth in params.yaml new since dvc.lock was written",
    ]


def test_stage_absent_from_lock_is_stale_and_dvc_files_are_ignored() -> None:
    status = {"evaluate": [{"changed deps": {"model.pkl": "modified"}}],
              "data.csv.dvc": [{"changed outs": {"data.csv": "modified"}}]}
    assert lock.stale_reasons(status, LOCK) == ["stage 'evaluate': not recorded in dvc.lock"]


def test_upstream_rerun_without_downstream_is_stale_even_with_no_files() -> None:
    partial = {**LOCK, "prepare": {**LOCK["prepare"], "outs": [{"path": "train.csv", "md5": "t2"}]}}
    assert lock.stale_reasons({}, partial) == [
        "stage 'train': dependency train.csv was recorded before stage 'prepare' last changed it "
        "(re-run the pipeline, not just 'prepare')"
    ]


def test_changed_outputs_lists_each_stage_and_path() -> None:
    after = {"train": {**LOCK["train"], "outs": [{"path": "model.pkl", "md5": "m2"}]},
             "evaluate": {"cmd": "e"}}
    assert lock.changed_outputs(LOCK, after) == [
        "stage 'evaluate': added to dvc.lock",
        "stage 'prepare': removed from dvc.lock",
        "stage 'train': outputs model.pkl changed",
    ]


def test_read_lock(tmp_path: Path) -> None:
    assert lock.read_lock(tmp_path) == {}
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages:\n  a:\n    outs:\n    - path: x\n      md5: abc\n")
    assert lock.outputs(lock.read_lock(tmp_path)) == [lock.Output("a", "x", "abc")]
    (tmp_path / "dvc.lock").write_text("stages: [\n")
    with pytest.raises(ConfigError, match=r"dvc.lock:2: YAML syntax error: .*; regenerate it with `dvc repro`"):
        lock.read_lock(tmp_path)
