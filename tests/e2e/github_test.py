"""End to end: the example model repo calls mlci's reusable workflow through act (no Docker, offline).

The caller is what a model repo commits: `uses: mlci/mlci/.github/workflows/mlci.yml@v0.1.0`; act's
`--local-repository` maps mlci/mlci@v0.1.0 to this checkout, so the workflow under test is the shipped file.
The standard actions it uses (actions/checkout, upload-artifact, download-artifact, cache,
github/codeql-action/upload-sarif) cannot be cloned offline: tests/testing/act.py maps each to a small local
stand-in in tests/testing/actions/ that does the real minimal thing (checkout fetches the run's commit from the
repository; artifacts and caches move through directories). The workflow's own steps, the `mlci` commands, run
as they are, on this host (`-P ubuntu-latest=-self-hosted`, the input `ci-image: ''`: no job container).
GitHub's API is tests/testing/forge.py; the run's GITHUB_TOKEN is an installation token (no GET /user)."""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.sign.support import p256
from tests.testing import repos
from tests.testing.act import ROOT, RunResult, run_workflow
from tests.testing.forge import ForgeServer
from tests.testing.images import BASE_TAG, base_layout, wheelhouse
from tests.testing.registry import Registry, plain_http
from tests.testing.trivydb import make_db

pytestmark = pytest.mark.e2e
OWNER, NAME = "bank", "credit-model"
TOKEN = "ghs_e2eInstallationToken0123456789"
CALLER = """\
name: ml
on:
  push: {branches: [main], tags: ['v*']}
  pull_request: {}
jobs:
  mlci:
    uses: mlci/mlci/.github/workflows/mlci.yml@v0.1.0
    with:
      ci-image: ''  # this runner has mlci installed (a self-hosted runner)
    secrets: inherit
"""


def _repo(tmp_path: Path) -> Path:
    """The example repo with a local DVC remote, its data pushed, and the one-line caller workflow on main."""
    repo = repos.example_repo(tmp_path / NAME)
    repos.dvc(repo, "remote", "add", "-d", "ci", str(tmp_path / "dvc-remote"))
    (repo / ".github" / "workflows").mkdir(parents=True)
    (repo / ".github" / "workflows" / "ml.yml").write_text(CALLER)
    repos.commit_all(repo, "DVC remote and the mlci workflow")
    repos.run_mlci(repo, "repro", "--push", check=True)  # the data and run-cache in the remote: CI pulls
    return repo


def _runner_env(tmp_path: Path, forge: ForgeServer, **extra: str) -> dict[str, str]:
    """What the self-hosted runner's environment gives every job: mlci on PATH, the API, the repository."""
    return {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
            "DVC_SITE_CACHE_DIR": str(tmp_path / "dvc-site"), "GITHUB_API_URL": forge.github_api,
            "GITHUB_REPOSITORY": f"{OWNER}/{NAME}", "GITHUB_RUN_ID": "9100000042", **extra}


def _run(repo: Path, tmp_path: Path, event: str, payload: dict[str, Any], env: dict[str, str],
         actor: str = "octo-dev", secrets: dict[str, str] | None = None) -> RunResult:
    return run_workflow(repo, event, payload, workdir=tmp_path / f"act-{event}", local={"mlci/mlci@v0.1.0": ROOT},
                        env=env, secrets={"GITHUB_TOKEN": TOKEN, **(secrets or {})}, timeout=420, actor=actor)


def _pull_request(repo: Path, number: int) -> dict[str, Any]:
    """GitHub's pull_request payload for the checked-out branch against main; its merge ref in the origin."""
    head = repos.git(repo, "rev-parse", "HEAD").strip()
    repos.git(repo, "update-ref", f"refs/pull/{number}/merge", head)  # up to date with main: the head itself
    branch = repos.git(repo, "branch", "--show-current").strip()
    return {"action": "synchronize", "number": number,
            "pull_request": {"number": number, "head": {"ref": branch, "sha": head},
                             "base": {"ref": "main", "sha": repos.git(repo, "rev-parse", "main").strip()}},
            "repository": {"full_name": f"{OWNER}/{NAME}", "default_branch": "main"}}


def _statuses(result: RunResult) -> dict[str, str]:
    return {name: result.job(name).status for name in
            ("config-check", "train", "data-test", "build", "scan", "report", "promote-stage", "promote-prod")}


def test_a_pull_request_run_tests_builds_scans_and_posts_one_comment(
        tmp_path: Path, forge: ForgeServer, registry: Registry) -> None:
    repo = _repo(tmp_path)
    repos.git(repo, "checkout", "-q", "-b", "faster-learning")
    params = repo / "params.yaml"
    params.write_text(re.sub(r"learning_rate: \S+", "learning_rate: 0.2", params.read_text()))
    repos.run_mlci(repo, "repro", "--push", check=True)
    repos.commit_all(repo, "Raise the learning rate")
    bot = forge.add_installation_token(TOKEN)
    forge.add_pull_request(OWNER, NAME, 7)
    forge.add_comments(OWNER, NAME, 7, ["looks good"], author="alice")
    clean = make_db(tmp_path / "trivy-clean", advisories=())
    env = _runner_env(tmp_path, forge, MLCI_IMAGE_NAME=f"docker://{registry.host}/ml/credit-model",
                      MLCI_IMAGE_BASE=f"oci:{base_layout()}:{BASE_TAG}",
                      MLCI_IMAGE_PIP_ARGS=f"--no-index,--find-links,{wheelhouse()}",
                      MLCI_SCAN_CACHE_DIR=str(clean.cache_dir), **plain_http(registry.host))

    result = _run(repo, tmp_path, "pull_request", _pull_request(repo, 7), env)

    assert _statuses(result) == {"config-check": "success", "train": "success", "data-test": "success",
                                 "build": "success", "scan": "success", "report": "success",
                                 "promote-stage": "skipped", "promote-prod": "skipped"}, result.describe()
    assert result.returncode == 0, result.describe()
    assert "checkout stand-in: refs/pull/7/merge" in result.job("config-check").log
    assert "stages: 4 (ran 0, skipped 4" in result.job("train").log  # pulled what the PR pushed
    assert re.search(r"(\d+) checks: \1 passed, 0 warned, 0 failed", result.job("data-test").log)
    digest = re.search(r"sha256:[0-9a-f]{64}", result.job("build").log)
    assert digest, result.job("build").log
    assert f"pass: docker://{registry.host}/ml/credit-model" in result.job("scan").log, result.job("scan").log
    assert json.loads((result.artifact("mlci-scan") / "mlci-scan-record.json").read_text())["digest"] == digest[0]
    sarif = result.artifacts / "9100000042" / "code-scanning" / "mlci-scan.sarif"
    assert json.loads(sarif.read_text())["version"] == "2.1.0"
    assert "created report comment" in result.job("report").log, result.job("report").log
    mine = [c for c in forge.comments(OWNER, NAME, 7) if c["user"]["login"] == bot.username]
    assert len(mine) == 1, forge.comments(OWNER, NAME, 7)
    body = str(mine[0]["body"])
    assert "| `params.yaml:train.learning_rate` | 0.1 | 0.2 |" in body and "### Data tests: ✅ passed" in body
    assert forge.request_count("GET", r"^/user$", status=403) <= 1  # an installation token: /user is refused
    assert TOKEN not in result.output
    assert (tmp_path / "act-pull_request" / "actions-cache").is_dir()  # the DVC and build caches were saved


def test_a_release_tag_run_promotes_the_scanned_image_into_prod(
        tmp_path: Path, forge: ForgeServer, registry: Registry, registry_stage: Registry) -> None:
    """A tag push: config-check, train, build, scan, then promote-prod into the second registry (prod here, a
    direct link: no `via: bundle`), behind the prod environment's reviewers as the forge's review history says."""
    repo = _repo(tmp_path)
    config = repo / "mlci.yaml"
    text = config.read_text().replace("      via: bundle\n", "")
    text = text.replace("registry.prod.bank.example", registry_stage.host)
    text = text.replace("      dvc_remote: prod\n      nexus_raw: https://nexus.prod.bank.example/repository/models\n",
                        "      approval: {mode: forge, required: 1}\n")
    config.write_text(text)
    sha = repos.commit_all(repo, "prod is reached directly, after one approval")
    repos.git(repo, "tag", "-a", "v1.0.0", "-m", "release 1.0.0")
    forge.add_installation_token(TOKEN)
    run_id = forge.add_workflow_run(OWNER, NAME, actor="rel-manager")
    forge.review_run(OWNER, NAME, run_id, user="carol", environments=["prod"])
    clean = make_db(tmp_path / "trivy-clean", advisories=())
    keys = p256(tmp_path / "keys")  # promote.signing.key_env: MLCI_SIGNING_KEY, a declared secret (the PEM)
    env = _runner_env(tmp_path, forge, MLCI_IMAGE_NAME=f"docker://{registry.host}/ml/credit-model",
                      MLCI_IMAGE_BASE=f"oci:{base_layout()}:{BASE_TAG}",
                      MLCI_IMAGE_PIP_ARGS=f"--no-index,--find-links,{wheelhouse()}",
                      MLCI_SCAN_CACHE_DIR=str(clean.cache_dir), GITHUB_RUN_ID=str(run_id),
                      **plain_http(registry.host, registry_stage.host))
    payload = {"ref": "refs/tags/v1.0.0", "after": sha, "ref_type": "tag",
               "repository": {"full_name": f"{OWNER}/{NAME}", "default_branch": "main"}}

    pem = keys.private.read_text()
    result = _run(repo, tmp_path, "push", payload, env, actor="rel-manager", secrets={"MLCI_SIGNING_KEY": pem})

    assert _statuses(result) == {"config-check": "success", "train": "success", "data-test": "skipped",
                                 "build": "success", "scan": "success", "report": "skipped",
                                 "promote-stage": "skipped", "promote-prod": "success"}, result.describe()
    digest = re.search(r"sha256:[0-9a-f]{64}", result.job("build").log)
    assert digest, result.job("build").log
    promote = result.job("promote-prod").log
    assert f"docker://{registry_stage.host}/ml/credit-model:v1.0.0" in promote, promote
    promoted = repos.run_mlci(repo, "verify", f"docker://{registry_stage.host}/ml/credit-model:v1.0.0",
                              "--key", str(keys.public), "--json", env=plain_http(registry_stage.host))
    assert promoted.returncode == 0, promoted.stderr  # signed on the way in
    assert digest[0] in promoted.stdout + promoted.stderr, promoted.stdout + promoted.stderr
    audit = (result.artifact("mlci-promote") / "mlci-promote-audit.jsonl").read_text()
    assert digest[0] in audit and '"carol"' in audit, audit  # who approved, from the run's review history
    assert pem.splitlines()[1] not in result.output  # the key reached only the promote job, and never its log


def test_bad_data_fails_the_data_test_job_with_mlci_s_exit_code(tmp_path: Path, forge: ForgeServer) -> None:
    repo = _repo(tmp_path)
    repos.git(repo, "checkout", "-q", "-b", "older-customers")
    generate = repo / "src" / "generate.py"
    line = "age = np.minimum(75, cust_age0[cust] + day // 365)"
    generate.write_text(generate.read_text().replace(line, line + " * 3"))  # ages up to 225
    repos.run_mlci(repo, "repro", "--push", check=True)  # a consistent lock, data in the remote
    repos.commit_all(repo, "Corrupt the ages")
    forge.add_installation_token(TOKEN)
    forge.add_pull_request(OWNER, NAME, 8)
    env = _runner_env(tmp_path, forge)

    result = _run(repo, tmp_path, "pull_request", _pull_request(repo, 8), env)

    assert result.returncode != 0, result.describe()
    statuses = _statuses(result)
    assert statuses["config-check"] == statuses["train"] == "success", result.describe()
    job = result.job("data-test")
    assert job.status == "failure" and job.exit_code == 1, result.describe()
    assert re.search(r"applications\s+age: between\s+FAIL\s+out_of_range=\d+", job.log), job.log
    assert statuses["build"] == statuses["scan"] == "skipped", result.describe()  # nothing built on bad data
    junit = (result.artifact("mlci-data-test") / "mlci-data-test.xml").read_text()
    assert '<failure message="observed out_of_range=' in junit
