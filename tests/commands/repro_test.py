"""`mlci repro` on the real example model repo: the issue's acceptance behaviours."""
from __future__ import annotations

import json
import re
from pathlib import Path

from tests.testing import repos


def test_first_run_trains_and_reproduces_the_committed_lock_byte_for_byte(trained_example: Path) -> None:
    assert (trained_example / "dvc.lock").read_bytes() == (repos.EXAMPLE / "dvc.lock").read_bytes()
    assert (trained_example / "metrics.json").read_bytes() == (repos.EXAMPLE / "metrics.json").read_bytes()
    assert repos.git(trained_example, "status", "--porcelain") == ""


def test_second_run_skips_every_stage(example: Path) -> None:
    done = repos.run_mlci(example, "repro", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["stages"] == {s: "skipped" for s in ("generate", "prepare", "train", "evaluate")}
    assert {o["path"] for o in summary["outputs"]} >= {"model/model.pkl", "metrics.json"}


def test_edited_params_without_rerun_is_a_stale_lock(example: Path) -> None:
    params = example / "params.yaml"
    params.write_text(re.sub(r"(?m)^(\s+learning_rate:\s*)\S+", r"\g<1>0.5", params.read_text(), count=1))
    done = repos.run_mlci(example, "repro", "--check-lock")
    assert done.returncode == 1
    assert ("mlci: stage 'train': param train.learning_rate in params.yaml modified since dvc.lock was written"
            in done.stderr)


def test_stale_lock_is_default_in_ci(example: Path) -> None:
    (example / "src" / "train.py").write_text((example / "src" / "train.py").read_text() + "\n# changed\n")
    done = repos.run_mlci(example, "repro", env={"CI": "true"})
    assert done.returncode == 1
    assert "mlci: stage 'train': dependency src/train.py modified since dvc.lock was written" in done.stderr
    assert done.stderr.rstrip().endswith("mlci: the committed dvc.lock does not describe this commit: run `dvc repro` "
                                         "where you changed it and commit dvc.lock with the change")
    assert done.stdout.startswith("stages: 0 (ran 0,")  # refused before anything ran


def test_determinism_passes_on_the_example(example: Path) -> None:
    done = repos.run_mlci(example, "repro", "--check-determinism")
    assert done.returncode == 0, done.stderr
    # the summary says the proof ran and what it compared (every output of the four stages)
    assert "determinism: 7 output(s) re-made by a forced re-run in a scratch copy, all identical" in done.stdout
    assert list((example / ".dvc" / "tmp").glob("mlci-determinism-*")) == []  # scratch copy removed


def test_determinism_fails_naming_the_output_of_an_unseeded_variant(example: Path) -> None:
    train = example / "src" / "train.py"
    text = train.read_text()
    assert text.count('random_state=params["seed"]') == 1
    train.write_text(text.replace('random_state=params["seed"]', "random_state=None"))
    repos.run_mlci(example, "repro", check=True)  # record the unseeded variant's own lock
    done = repos.run_mlci(example, "repro", "--check-determinism", "--json")
    assert done.returncode == 1
    assert re.search(r"mlci: stage 'train': output model/model.pkl is not deterministic", done.stderr)
    proof = json.loads(done.stdout)["determinism"]
    assert "model/model.pkl" in proof["compared"] and "data/prepared/train.csv" in proof["compared"]
    # the unseeded model and what the evaluation made of it; the data stages' outputs came out the same
    assert sorted(d["path"] for d in proof["differences"]) == ["metrics.json", "model/model.pkl", "plots/lift.json",
                                                                 "plots/roc.json"]
