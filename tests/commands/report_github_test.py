"""`mlci report` as a GitHub Actions pull_request job runs it: the GITHUB_* variables of such a run, the event
payload at GITHUB_EVENT_PATH, a checkout made the way actions/checkout makes it (the PR's merge commit at
depth 1), and Actions' GITHUB_TOKEN, an installation token that gets 403 on GET /user. Against the GitHub
stand-in: the first run creates one comment (surviving a 429 on its first POST), the next run updates it."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.testing import installed, repos
from tests.testing.forge import ForgeServer

TOKEN = "ghs_16C7e42F292c6912E7710c838347Ae178B4a"  # the shape of an installation token
MARKER = "<!-- mlci-report:metrics -->"
PR = 5


@pytest.fixture
def mlci(installed_mlci: Path) -> Path:
    """The mlci under test: the built wheel installed in a fresh venv (its bin directory)."""
    return installed_mlci


@pytest.fixture
def upstream(tmp_path: Path) -> Path:
    """The repository on GitHub: main, and PR #5's head and merge refs as GitHub keeps them."""
    repo = repos.example_repo(tmp_path / "upstream")
    repos.git(repo, "remote", "remove", "origin")
    (repo / "README.md").write_text("# credit model\n")
    repos.commit_all(repo, "docs on main")  # main moved on: the PR's merge commit is a real merge
    repos.git(repo, "checkout", "-q", "-b", "faster-learning", "HEAD~1")
    _push(repo, lr="0.2", auc=0.781)
    return repo


def _push(repo: Path, lr: str, auc: float) -> None:
    """A push to the PR branch: a commit, then GitHub's refs/pull/5/head and test merge refs/pull/5/merge."""
    repos.git(repo, "checkout", "-q", "faster-learning")
    repos.commit_model_change(repo, lr, auc)
    repos.git(repo, "update-ref", f"refs/pull/{PR}/head", "HEAD")
    repos.git(repo, "checkout", "-q", "--detach", "main")
    repos.git(repo, "merge", "-q", "--no-ff", "-m", f"Merge {lr} into main", "faster-learning")
    repos.git(repo, "update-ref", f"refs/pull/{PR}/merge", "HEAD")
    repos.git(repo, "checkout", "-q", "main")


def _checkout(upstream: Path, workspace: Path) -> str:
    """What actions/checkout does for a pull_request event: fetch the merge ref at depth 1, check it out."""
    workspace.mkdir()
    repos.git(workspace, "init", "-q")
    repos.git(workspace, "remote", "add", "origin", f"file://{upstream}")
    repos.git(workspace, "fetch", "-q", "--no-tags", "--depth=1", "origin",
              f"+refs/pull/{PR}/merge:refs/remotes/pull/{PR}/merge")
    repos.git(workspace, "checkout", "-q", "--force", f"refs/remotes/pull/{PR}/merge")
    return repos.git(workspace, "rev-parse", "HEAD").strip()


def _actions_env(forge: ForgeServer, workspace: Path, sha: str, runner: Path, run_id: int,
                 event_name: str = "pull_request") -> dict[str, str]:
    """The variables GitHub Actions sets in a pull_request job (and the step's GITHUB_TOKEN)."""
    event = runner / f"event-{run_id}.json"
    event.write_text(json.dumps({
        "action": "synchronize", "number": PR,
        "pull_request": {"number": PR, "state": "open", "draft": False,
                         "head": {"ref": "faster-learning", "sha": "0" * 40},
                         "base": {"ref": "main", "sha": "1" * 40}},
        "repository": {"full_name": "bank/credit-model", "default_branch": "main"},
        "sender": {"login": "alice", "type": "User"}}))
    base = {key: value for key, value in os.environ.items()
            if not key.startswith(("CI_", "GITLAB_", "GITHUB_", "RUNNER_", "MLCI_"))}
    ref = f"refs/pull/{PR}/merge" if event_name == "pull_request" else "refs/heads/main"
    return {**base, "CI": "true", "GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": event_name,
            "GITHUB_EVENT_PATH": str(event), "GITHUB_REF": ref, "GITHUB_REF_NAME": ref.rsplit("/", 2)[-2],
            "GITHUB_REF_TYPE": "branch", "GITHUB_HEAD_REF": "faster-learning", "GITHUB_BASE_REF": "main",
            "GITHUB_SHA": sha, "GITHUB_REPOSITORY": "bank/credit-model", "GITHUB_REPOSITORY_OWNER": "bank",
            "GITHUB_SERVER_URL": forge.url, "GITHUB_API_URL": forge.github_api,
            "GITHUB_GRAPHQL_URL": f"{forge.github_api}/graphql", "GITHUB_RUN_ID": str(run_id),
            "GITHUB_RUN_NUMBER": "1", "GITHUB_RUN_ATTEMPT": "1", "GITHUB_WORKFLOW": "mlci", "GITHUB_JOB": "report",
            "GITHUB_ACTOR": "alice", "GITHUB_WORKSPACE": str(workspace),
            "GITHUB_STEP_SUMMARY": str(runner / f"summary-{run_id}.md"), "GITHUB_OUTPUT": str(runner / "output"),
            "GITHUB_ENV": str(runner / "env"), "RUNNER_OS": "Linux", "RUNNER_TEMP": str(runner),
            "GITHUB_TOKEN": TOKEN}


def _run(mlci: Path, workspace: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    runner = installed.env(mlci)  # the installed venv first on PATH, the dev venv gone
    job = {**{k: v for k, v in env.items() if k not in ("PYTHONPATH", "PYTHONHOME")},
           "PATH": runner["PATH"], "VIRTUAL_ENV": runner["VIRTUAL_ENV"]}
    return subprocess.run([str(mlci / "mlci"), "report", "--out", "mlci-report.md", *args], cwd=workspace, env=job,
                          capture_output=True, text=True, check=False)


@pytest.fixture
def github(forge: ForgeServer) -> ForgeServer:
    """PR #5 on the stand-in; a reviewer quotes the report and another bot posts one with the same marker."""
    forge.add_installation_token(TOKEN)  # Actions' GITHUB_TOKEN: github-actions[bot], 403 on GET /user
    forge.add_pull_request("bank", "credit-model", PR)
    forge.add_user(None, "renovate[bot]", type="Bot")
    forge.add_comments("bank", "credit-model", PR, [f"review {i}" for i in range(120)], author="alice")
    forge.add_comments("bank", "credit-model", PR, [f"> {MARKER}\n> why did auc drop?"], author="alice")
    forge.add_comments("bank", "credit-model", PR, [f"{MARKER}\nnot mlci's"], author="renovate[bot]")
    return forge


def _by(forge: ForgeServer, login: str) -> list[dict[str, object]]:
    return [c for c in forge.comments("bank", "credit-model", PR) if c["user"]["login"] == login]


def test_installation_token_creates_then_updates_one_comment_and_survives_a_429(
        mlci: Path, github: ForgeServer, upstream: Path, tmp_path: Path) -> None:
    runner = tmp_path / "runner"
    runner.mkdir()
    github.fail_next("POST", rf"/issues/{PR}/comments$", 429, rate_limit="github-secondary", retry_after=1)
    first_sha = _checkout(upstream, tmp_path / "run1")
    first = _run(mlci, tmp_path / "run1", _actions_env(github, tmp_path / "run1", first_sha, runner, 1001))
    assert first.returncode == 0, first.stderr
    assert "rate limited; looking again in 1.0 s" in first.stderr
    assert "created report comment" in first.stderr
    (comment,) = _by(github, "github-actions[bot]")
    user = comment["user"]
    assert isinstance(user, dict) and (user["id"], user["type"]) == (41898282, "Bot")
    body = str(comment["body"])
    assert body.startswith(MARKER) and "| `params.yaml:train.learning_rate` | 0.1 | 0.2 |" in body
    assert github.request_count("GET", r"^/user$", status=403) == 1
    assert github.request_count("POST", rf"/issues/{PR}/comments$", status=201) == 1
    assert (runner / "summary-1001.md").read_text().startswith("## ")

    _push(upstream, lr="0.3", auc=0.779)  # the next push runs the job again in a fresh workspace
    second_sha = _checkout(upstream, tmp_path / "run2")
    second = _run(mlci, tmp_path / "run2", _actions_env(github, tmp_path / "run2", second_sha, runner, 1002))
    assert second.returncode == 0, second.stderr
    assert f"updated report comment {comment['id']}" in second.stderr
    (updated,) = _by(github, "github-actions[bot]")
    assert "| `params.yaml:train.learning_rate` | 0.1 | 0.3 |" in str(updated["body"])
    assert github.request_count("POST", rf"/issues/{PR}/comments$", status=201) == 1  # no duplicate
    assert [c["body"] for c in _by(github, "renovate[bot]")] == [f"{MARKER}\nnot mlci's"]
    assert f"> {MARKER}\n> why did auc drop?" in [c["body"] for c in _by(github, "alice")]
    for done in (first, second):
        assert TOKEN not in done.stdout + done.stderr
    assert all(r.header("Authorization") == f"Bearer {TOKEN}" for r in github.requests)


def test_a_broken_event_payload_is_one_line_exit_3_naming_it(
        mlci: Path, github: ForgeServer, upstream: Path, tmp_path: Path) -> None:
    runner = tmp_path / "runner"
    runner.mkdir()
    sha = _checkout(upstream, tmp_path / "run")
    env = _actions_env(github, tmp_path / "run", sha, runner, 7, event_name="pull_request_target")
    Path(env["GITHUB_EVENT_PATH"]).write_text('{"pull_request": {"number": 5,')
    done = _run(mlci, tmp_path / "run", env)
    assert done.returncode == 3 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines()[-1].startswith(f"mlci: error: GITHUB_EVENT_PATH {env['GITHUB_EVENT_PATH']}: "
                                                   "not valid JSON")
    assert github.request_count("POST") == 0


def test_a_pull_request_from_a_fork_fails_clearly_and_keeps_the_report_and_the_gates(
        mlci: Path, forge: ForgeServer, upstream: Path, tmp_path: Path) -> None:
    """A pull_request run from a fork gets a read-only GITHUB_TOKEN: the POST is 403 "Resource not accessible by
    integration". Exit 3 with what it means; the failed gate is still logged; the report is in the step
    summary and --out."""
    forge.add_installation_token(TOKEN, read_only=True)
    forge.add_pull_request("bank", "credit-model", PR)
    runner = tmp_path / "runner"
    runner.mkdir()
    sha = _checkout(upstream, tmp_path / "run")
    config = tmp_path / "run" / "mlci.yaml"
    config.write_text(config.read_text().replace("max_drop: 0.01", "max_drop: 0.0001"))
    done = _run(mlci, tmp_path / "run", _actions_env(forge, tmp_path / "run", sha, runner, 9))
    assert done.returncode == 3, done.stderr
    lines = done.stderr.splitlines()
    assert lines[-1] == ("mlci: error: GitHub 403 on POST /repos/bank/credit-model/issues/5/comments: Resource not "
                         "accessible by integration (the token needs `pull-requests: write` (or `issues: write`) "
                         "permission; a pull request from a fork gets a read-only GITHUB_TOKEN)")
    assert "mlci: gate failed: metrics.json:roc_auc max drop 0.0001 (observed 0.785338 → 0.781 (-0.004338))" in lines
    assert "mlci: the report was not posted; it is in mlci-report.md and the step summary" in lines
    assert (tmp_path / "run" / "mlci-report.md").read_text() == (runner / "summary-9.md").read_text()
    assert forge.comments("bank", "credit-model", PR) == []
