"""End to end: the example model repo's GitLab pipeline through gitlab-ci-local, with mlci's
templates pulled in by a real `include: project:` from a pre-seeded include cache."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.testing import repos
from tests.testing.gitlab_ci_local import PipelineResult, run_pipeline, seed_project_include

pytestmark = pytest.mark.e2e
TEMPLATES = repos.ROOT / ".gitlab-ci"


def _pipeline_repo(tmp_path: Path) -> Path:
    """The example repo with a local DVC remote and mlci's templates seeded as project mlci/mlci@v0.1.0."""
    repo = repos.example_repo(tmp_path / "credit-model")
    repos.dvc(repo, "remote", "add", "-d", "ci", str(tmp_path / "dvc-remote"))
    repos.commit_all(repo, "DVC remote for CI")
    seed_project_include(repo, None, "mlci/mlci", "v0.1.0",
                         {f".gitlab-ci/{p.name}": p for p in TEMPLATES.glob("*.yml")})
    return repo


def _run(repo: Path) -> PipelineResult:
    result = run_pipeline(repo, timeout=600)
    assert set(result.jobs) == {"config", "train", "data-test"}, result.describe()
    return result


def test_train_job_trains_pushes_and_the_next_pipeline_pulls(tmp_path: Path) -> None:
    repo = _pipeline_repo(tmp_path)
    first = _run(repo)
    assert first.returncode == 0, first.describe()
    assert first.job("config").status == "success"
    train = first.job("train")
    assert train.status == "success"
    summary = json.loads((first.artifacts_dir("train") / "mlci-repro.json").read_text())
    # A fresh clone with an empty remote trains; evaluate's committed outputs already match.
    assert summary["stages"] == {"generate": "ran", "prepare": "ran", "train": "ran", "evaluate": "skipped"}
    assert summary["ok"] and summary["pushed"] and summary["remote"] == "ci"
    assert (tmp_path / "dvc-remote" / "files" / "md5").is_dir()
    data_test = first.job("data-test")
    assert data_test.status == "success", data_test.log
    assert re.search(r"\n(\d+) checks: \1 passed, 0 warned, 0 failed", data_test.log), data_test.log
    junit = (first.artifacts_dir("data-test") / "mlci-data-test.xml").read_text()
    assert 'name="test"' in junit and 'name="age: drift"' in junit
    second = _run(repo)
    assert second.returncode == 0, second.describe()
    log = second.job("train").log
    assert "stages: 4 (ran 0, skipped 4" in log, log  # pulled from the remote: nothing retrained


def test_stale_dvc_lock_fails_the_pipeline_in_the_train_job(tmp_path: Path) -> None:
    repo = _pipeline_repo(tmp_path)
    params = repo / "params.yaml"
    params.write_text(re.sub(r"(?m)^(\s+learning_rate:\s*)\S+", r"\g<1>0.5", params.read_text(), count=1))
    repos.commit_all(repo, "Raise the learning rate without re-running the pipeline")
    result = _run(repo)
    assert result.returncode == 1, result.describe()
    assert result.job("config").status == "success", result.describe()
    train = result.job("train")
    assert train.status == "failed" and train.exit_code == 1, result.describe()
    assert ("mlci: stage 'train': param train.learning_rate in params.yaml modified since dvc.lock "
            "was written") in train.log
    assert "Running stage" not in train.log  # refused before anything ran
    assert result.job("data-test").status == "skipped"


def test_corrupted_data_fails_the_pipeline_in_the_data_test_job(tmp_path: Path) -> None:
    repo = _pipeline_repo(tmp_path)
    generate = repo / "src" / "generate.py"
    line = "age = np.minimum(75, cust_age0[cust] + day // 365)"
    assert line in generate.read_text()
    generate.write_text(generate.read_text().replace(line, line + " * 3"))  # ages up to 225
    repos.run_mlci(repo, "repro", "--push", check=True)  # a consistent lock, data in the remote
    repos.commit_all(repo, "Corrupt the ages")
    result = _run(repo)
    assert result.returncode == 1, result.describe()
    assert result.job("config").status == "success" and result.job("train").status == "success"
    job = result.job("data-test")
    assert job.status == "failed" and job.exit_code == 1, result.describe()
    assert re.search(r"applications\s+age: between\s+FAIL\s+out_of_range=\d+", job.log), job.log
    junit = (result.artifacts_dir("data-test") / "mlci-data-test.xml").read_text()
    assert '<failure message="observed out_of_range=' in junit
