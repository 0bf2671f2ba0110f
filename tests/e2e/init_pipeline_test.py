"""End to end: a model repo that has never seen mlci (git, DVC, a dataset, one training stage) gets its CI from
`mlci init`, and its first merge request pipeline passes through gitlab-ci-local with the one-line include
resolved as a real `include: project` from a pre-seeded include cache."""
from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

from tests.testing import repos
from tests.testing.forge import ForgeServer
from tests.testing.gitlab_ci_local import make_git_repo, run_pipeline, seed_project_include

pytestmark = pytest.mark.e2e
TEMPLATES = repos.ROOT / ".gitlab-ci"
TRAIN = """import json, statistics
rows = list(__import__("csv").DictReader(open("data/train.csv")))
income = [float(r["income"]) for r in rows]
json.dump({"mean_income": round(statistics.fmean(income), 6)}, open("model.json", "w"))
json.dump({"rows": len(rows)}, open("metrics.json", "w"))
"""
DVC_YAML = """stages:
  train:
    cmd: python train.py
    deps: [data/train.csv, train.py]
    outs: [model.json]
    metrics:
      - metrics.json:
          cache: false
"""


def _user_repo(root: Path) -> Path:
    """What a team has before mlci: a git repo with a DVC-tracked dataset, a stage, its lock, a DVC remote."""
    repo = make_git_repo(root / "churn-model", remote_url="https://gitlab.example.com/bank/churn-model.git")
    (repo / "data").mkdir()
    rng = random.Random(7)
    with (repo / "data" / "train.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["customer", "income", "segment", "churned"])
        for i in range(400):
            writer.writerow([f"c{i:05d}", round(rng.lognormvariate(10, 0.4), 2), rng.choice("ABC"),
                             rng.random() < 0.2])
    (repo / "train.py").write_text(TRAIN)
    (repo / "dvc.yaml").write_text(DVC_YAML)
    repos.dvc(repo, "init", "-q")
    repos.dvc(repo, "add", "-q", "data/train.csv")
    repos.dvc(repo, "remote", "add", "-d", "ci", str(root / "dvc-remote"))
    repos.dvc(repo, "repro", "-q")
    repos.dvc(repo, "push", "-q")
    repos.commit_all(repo, "churn model: data, a training stage, its lock")
    return repo


def test_a_repo_scaffolded_by_mlci_init_passes_its_first_merge_request_pipeline(
        tmp_path: Path, forge: ForgeServer) -> None:
    repo = _user_repo(tmp_path)
    base = repos.git(repo, "rev-parse", "HEAD").strip()
    repos.git(repo, "update-ref", "refs/remotes/origin/main", base)
    repos.git(repo, "checkout", "-q", "-b", "adopt-mlci")
    done = repos.run_mlci(repo, "init", "--from-data", "data/train.csv")
    assert done.returncode == 0, done.stderr
    assert (repo / ".gitlab-ci.yml").is_file() and (repo / "data-tests.yaml").is_file()
    repos.commit_all(repo, "CI by mlci init")
    seed_project_include(repo, None, "mlci/mlci", "v0.1.0",
                         {f".gitlab-ci/{p.name}": p for p in TEMPLATES.glob("*.yml")})
    forge.add_user("glpat-init-token", "mlci-bot")
    forge.add_merge_request("bank/churn-model", 1)
    mr = {"CI_PIPELINE_SOURCE": "merge_request_event", "CI_COMMIT_BRANCH": "", "CI_MERGE_REQUEST_IID": "1",
          "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main", "CI_MERGE_REQUEST_DIFF_BASE_SHA": base,
          "CI_API_V4_URL": forge.gitlab_api, "CI_PROJECT_ID": "bank/churn-model", "GITLAB_TOKEN": "glpat-init-token"}
    # gitlab-ci-local sets CI_COMMIT_BRANCH from git; in an MR pipeline GitLab leaves it unset.
    result = run_pipeline(repo, variables=mr, env={"GCL_IGNORE_PREDEFINED_VARS": ",".join(mr)}, timeout=600)
    assert result.returncode == 0, result.describe()
    ran = {name for name, job in result.jobs.items() if job.started}
    assert ran == {"mlci-config-check", "mlci-train", "mlci-data-test", "mlci-build", "mlci-scan", "mlci-report"}, (
        result.describe())
    assert "skipped: no image.name" in result.job("mlci-build").log
    assert "skipped: no image" in result.job("mlci-scan").log
    data_test = result.job("mlci-data-test").log
    assert "0 failed" in data_test and "skipped" not in data_test.splitlines()[-1], data_test
    assert "stages: 1 (ran 0" in result.job("mlci-train").log  # pulled: nothing retrained
    notes = [n for n in forge.notes("bank/churn-model", 1) if str(n["body"]).startswith("<!-- mlci-report")]
    assert len(notes) == 1 and "### Data tests: ✅ passed" in str(notes[0]["body"])
    assert "glpat-init-token" not in result.output
