"""`mlci repro` against real DVC on small repos: pull/push, failures, the cache:false trap."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.testing import repos

TWO_STAGES = """\
stages:
  make:
    cmd: python make.py
    deps: [make.py, params.yaml]
    params: [n]
    outs: [out.txt]
  report:
    cmd: python report.py
    deps: [out.txt, report.py]
    metrics:
      - metrics.json:
          cache: false
"""
FILES = {
    "params.yaml": "n: 3\n",
    "make.py": "import yaml\nn = yaml.safe_load(open('params.yaml'))['n']\nopen('out.txt', 'w').write('x' * n)\n",
    "report.py": "import json\njson.dump({'size': len(open('out.txt').read())}, open('metrics.json', 'w'))\n",
}


def _repo(tmp_path: Path, files: dict[str, str] | None = None) -> Path:
    return repos.tiny_dvc_repo(tmp_path / "repo", TWO_STAGES, {**FILES, **(files or {})})


def test_push_then_a_fresh_clone_pulls_instead_of_running(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    repos.dvc(repo, "remote", "add", "-d", "store", str(tmp_path / "remote"))
    first = repos.run_mlci(repo, "repro", "--push", "--json")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["stages"] == {"make": "ran", "report": "ran"} and summary["pushed"] is True
    repos.commit_all(repo, "trained")
    clone = tmp_path / "clone"
    repos.git(tmp_path, "clone", "-q", str(repo), str(clone))
    second = repos.run_mlci(clone, "repro", "--check-lock", "--json")
    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout)
    assert summary["pulled"] is True and summary["remote"] == "store"
    assert summary["stages"] == {"make": "skipped", "report": "skipped"}
    assert (clone / "out.txt").read_text() == "xxx"


def test_cache_false_output_missing_warns_about_the_trap(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    repos.run_mlci(repo, "repro", check=True)
    (repo / "metrics.json").unlink()
    done = repos.run_mlci(repo, "repro")
    assert done.returncode == 0
    assert ("stage 'report': output metrics.json has `cache: false` and is missing; DVC does not restore "
            "such outputs") in done.stderr


def test_failing_stage_exits_4_naming_the_stage_with_its_output_tail(tmp_path: Path) -> None:
    repo = _repo(tmp_path, {"report.py": "print('computing the report')\nraise SystemExit('disk on fire')\n"})
    done = repos.run_mlci(repo, "repro")
    assert done.returncode == 4
    first = done.stderr.split("mlci: error: ", 1)[1].splitlines()[0]
    assert first.startswith("stage 'report' failed: ERROR: failed to reproduce 'report'")
    assert "disk on fire" in done.stderr.split("mlci: error: ", 1)[1]
    assert "Traceback" not in done.stderr.split("mlci: error: ", 1)[1]


def test_stale_lock_is_refused_before_running(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    repos.run_mlci(repo, "repro", check=True)
    (repo / "params.yaml").write_text("n: 4\n")
    done = repos.run_mlci(repo, "repro", "--check-lock", "--json")
    assert done.returncode == 1
    assert "mlci: stage 'make': param n in params.yaml modified since dvc.lock was written" in done.stderr
    assert json.loads(done.stdout)["stages"] == {}
    assert (repo / "out.txt").read_text() == "xxx"  # nothing ran


def test_unknown_remote_is_an_environment_error(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    done = repos.run_mlci(repo, "repro", "--remote", "nowhere")
    assert done.returncode == 3
    assert "DVC remote 'nowhere' (train.remote) is not defined" in done.stderr


def test_not_a_dvc_repo_is_a_usage_error(tmp_path: Path) -> None:
    done = repos.run_mlci(tmp_path, "repro")
    assert done.returncode == 2 and "not a DVC repository" in done.stderr


def test_summary_out_is_written(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    done = repos.run_mlci(repo, "repro", "--summary-out", "out/summary.json")
    assert done.returncode == 0
    summary = json.loads((repo / "out" / "summary.json").read_text())
    assert summary["ok"] is True
    assert {o["path"] for o in summary["outputs"]} == {"out.txt", "metrics.json"}


def test_lock_changed_by_the_run_fails_the_check(tmp_path: Path) -> None:
    unseeded = "import random\nopen('out.txt', 'w').write(str(random.random()))\n"
    repo = _repo(tmp_path, {"make.py": unseeded})
    repos.run_mlci(repo, "repro", check=True)
    repos.commit_all(repo, "lock")
    (repo / "out.txt").unlink()  # as in a fresh clone: missing outputs are not staleness, so it runs
    shutil.rmtree(repo / ".dvc" / "cache")
    done = repos.run_mlci(repo, "repro", "--check-lock", "--no-pull")
    assert done.returncode == 1
    assert "mlci: stage 'make': outputs out.txt changed by this run: commit the updated dvc.lock" in done.stderr
