"""`mlci report` against the forge stand-in over real HTTP(S): one sticky comment, pagination,
retries, limits, TLS with a test CA, and tokens that never show."""
from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.testing import repos
from tests.testing.forge import ForgeServer

TOKEN = "glpat-secret-token-0042"
MARKER = "<!-- mlci-report:metrics -->"


@pytest.fixture
def mr_repo(tmp_path: Path) -> Path:
    """The example repo with an MR branch that changes a param and the committed metrics."""
    repo = repos.example_repo(tmp_path / "credit-model")
    repos.git(repo, "checkout", "-q", "-b", "faster-learning")
    repos.commit_model_change(repo, lr="0.2", auc=0.781)
    return repo


def _gitlab_env(forge: ForgeServer, **extra: str) -> dict[str, str]:
    return {"GITLAB_CI": "true", "CI_API_V4_URL": forge.gitlab_api, "CI_PROJECT_ID": "bank/credit-model",
            "CI_MERGE_REQUEST_IID": "7", "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main", "GITLAB_TOKEN": TOKEN,
            **extra}


def _mine(forge: ForgeServer) -> list[dict[str, object]]:
    return [n for n in forge.notes("bank/credit-model", 7)
            if n["author"]["username"] == "mlci-bot" and str(n["body"]).startswith(MARKER)]


@pytest.fixture
def gitlab(forge: ForgeServer) -> ForgeServer:
    forge.add_user(TOKEN, "mlci-bot")
    forge.add_merge_request("bank/credit-model", 7)
    return forge


def test_one_comment_found_among_hundreds_and_updated_in_place(mr_repo: Path, gitlab: ForgeServer) -> None:
    gitlab.add_notes("bank/credit-model", 7, [f"review {i}" for i in range(120)], author="alice")
    gitlab.add_notes("bank/credit-model", 7, [f"> {MARKER}\n> quoted by a reviewer"], author="alice")
    gitlab.add_notes("bank/credit-model", 7, [f"{MARKER} changed the description"], author="bob", system=True)
    first = repos.run_mlci(mr_repo, "report", env=_gitlab_env(gitlab))
    assert first.returncode == 0, first.stderr
    assert "created report comment" in first.stderr
    gitlab.add_notes("bank/credit-model", 7, [f"more review {i}" for i in range(250)], author="carol")
    repos.commit_model_change(mr_repo, lr="0.3", auc=0.779)
    second = repos.run_mlci(mr_repo, "report", env=_gitlab_env(gitlab))
    assert second.returncode == 0, second.stderr
    assert "updated report comment" in second.stderr
    (note,) = _mine(gitlab)
    body = str(note["body"])
    assert "| `params.yaml:train.learning_rate` | 0.1 | 0.3 |" in body
    assert "| `metrics.json:roc_auc` | 0.7853 | 0.779 |" in body and "```mermaid" in body
    pages = [r for r in gitlab.requests if r.method == "GET" and r.path.endswith("/notes")]
    assert {r.query.get("per_page", [""])[0] for r in pages} == {"100"}
    third = repos.run_mlci(mr_repo, "report", env=_gitlab_env(gitlab))
    assert "unchanged report comment" in third.stderr and len(_mine(gitlab)) == 1
    assert all(r.header("PRIVATE-TOKEN") == TOKEN for r in gitlab.requests if r.path.startswith("/api/v4"))
    for done in (first, second, third):
        assert TOKEN not in done.stdout + done.stderr


def test_a_502_after_the_note_was_stored_does_not_duplicate_it(mr_repo: Path, gitlab: ForgeServer) -> None:
    gitlab.fail_next("POST", r"/notes$", 502, store_first=True)
    done = repos.run_mlci(mr_repo, "report", env=_gitlab_env(gitlab))
    assert done.returncode == 0, done.stderr
    assert len(_mine(gitlab)) == 1
    assert gitlab.request_count("POST", r"/notes$") == 1


def test_429_is_retried_after_retry_after_and_a_lost_post_is_posted_again(mr_repo: Path, gitlab: ForgeServer) -> None:
    gitlab.fail_next("GET", r"/notes$", 429, retry_after=1)
    gitlab.fail_next("POST", r"/notes$", 503)  # not stored: the second look finds nothing, so post again
    done = repos.run_mlci(mr_repo, "report", env=_gitlab_env(gitlab))
    assert done.returncode == 0, done.stderr
    assert len(_mine(gitlab)) == 1 and gitlab.request_count("POST", r"/notes$") == 2


def test_failed_gate_posts_first_then_exits_1(mr_repo: Path, gitlab: ForgeServer) -> None:
    config = mr_repo / "mlci.yaml"
    config.write_text(config.read_text().replace("max_drop: 0.01", "max_drop: 0.001"))
    done = repos.run_mlci(mr_repo, "report", env=_gitlab_env(gitlab))
    assert done.returncode == 1
    assert "mlci: gate failed: metrics.json:roc_auc max drop 0.001" in done.stderr
    (note,) = _mine(gitlab)
    assert "## ❌ Model report: gates failed" in str(note["body"])


@pytest.mark.parametrize("token, project, expected", [
    ("wrong-token-123", "bank/credit-model", "GitLab 401 on GET /user: 401 Unauthorized (the token in GITLAB_TOKEN"),
    (TOKEN, "bank/other", "GitLab 404 on GET /projects/bank%2Fother/merge_requests/7/notes: 404 Project Not Found"),
])
def test_auth_and_not_found_are_one_clear_line(mr_repo: Path, gitlab: ForgeServer, token: str, project: str,
                                               expected: str) -> None:
    done = repos.run_mlci(mr_repo, "report", env=_gitlab_env(gitlab, GITLAB_TOKEN=token, CI_PROJECT_ID=project))
    assert done.returncode == 3
    assert done.stderr.splitlines()[-1].startswith(f"mlci: error: {expected}")
    assert token not in done.stderr


def test_without_a_token_it_says_which_variable(mr_repo: Path, gitlab: ForgeServer) -> None:
    env = _gitlab_env(gitlab)
    env.pop("GITLAB_TOKEN")
    done = repos.run_mlci(mr_repo, "report", env={**env, "GITLAB_TOKEN": ""})
    assert done.returncode == 3 and "set GITLAB_TOKEN" in done.stderr and "CI_JOB_TOKEN cannot" in done.stderr


def test_github_over_tls_with_a_test_ca_truncates_to_the_limit(
        mr_repo: Path, forge_tls: ForgeServer, tmp_path: Path) -> None:
    forge_tls.add_user("ghs-token-77", "github-actions[bot]", type="Bot")
    forge_tls.add_pull_request("bank", "credit-model", 5)
    forge_tls.add_comments("bank", "credit-model", 5, [f"c{i}" for i in range(130)], author="alice")
    big = tmp_path / "big.md"
    big.write_text("### A long section\n" + "x" * 70_000)
    env = {"GITHUB_ACTIONS": "true", "GITHUB_API_URL": forge_tls.github_api, "GITHUB_REPOSITORY": "bank/credit-model",
           "GITHUB_REF": "refs/pull/5/merge", "GITHUB_BASE_REF": "main", "GITHUB_TOKEN": "ghs-token-77",
           "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"), "GITHUB_RUN_ID": "99"}
    untrusted = repos.run_mlci(mr_repo, "report", env=env)
    assert untrusted.returncode == 3 and "TLS: certificate verify failed" in untrusted.stderr
    assert "set forge.ca_bundle (or REQUESTS_CA_BUNDLE)" in untrusted.stderr
    done = repos.run_mlci(mr_repo, "report", "--section", str(big),
                          env={**env, "MLCI_FORGE_CA_BUNDLE": str(forge_tls.ca_bundle)})
    assert done.returncode == 0, done.stderr
    (comment,) = [c for c in forge_tls.comments("bank", "credit-model", 5) if c["body"].startswith(MARKER)]
    assert len(comment["body"]) <= 65_536
    assert comment["body"].rstrip().endswith("/bank/credit-model/actions/runs/99")
    assert "x" * 70_000 in (tmp_path / "summary.md").read_text()  # the full report stays in the summary
    assert "ghs-token-77" not in done.stdout + done.stderr + untrusted.stderr


def test_outside_a_merge_request_it_only_writes_the_report(mr_repo: Path) -> None:
    done = repos.run_mlci(mr_repo, "report", "--base", "main", "--out", "out/report.md")
    assert done.returncode == 0, done.stderr
    assert (mr_repo / "out" / "report.md").read_text().startswith("## ✅ Model report: all gates passed")
    assert "not a merge request pipeline" in done.stderr


# --- rate limits, answers that are not the API's, --dry-run, the baseline's fetch (subprocess: exit codes) ---


def _one_error_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    """The single `mlci: error:` line of a failed run (no traceback, not exit 70)."""
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("mlci: error:")]
    return line


def test_gitlab_429_on_the_first_post_waits_looks_again_and_posts_one_note(mr_repo: Path, gitlab: ForgeServer) -> None:
    gitlab.fail_next("POST", r"/notes$", 429, rate_limit="gitlab-throttle", retry_after=1)
    done = repos.run_mlci(mr_repo, "report", env=_gitlab_env(gitlab))
    assert done.returncode == 0, done.stderr
    assert "rate limited; looking again in 1.0 s" in done.stderr and "created report comment" in done.stderr
    assert len(_mine(gitlab)) == 1 and len(gitlab.notes("bank/credit-model", 7)) == 1
    assert gitlab.request_count("POST", r"/notes$") == 2 and gitlab.request_count("POST", r"/notes$", status=201) == 1
    assert [r.method for r in gitlab.requests if r.path.endswith("/notes")] == ["GET", "POST", "GET", "POST"]


@pytest.mark.parametrize("retry_after, expected", [
    ("soon", r"GitLab 429 on POST /projects/bank%2Fcredit-model/merge_requests/7/notes: rate limited, but "
             r"Retry-After 'soon' is neither seconds nor an HTTP date"),
    ("3600", r"GitLab 429 on POST /projects/bank%2Fcredit-model/merge_requests/7/notes: rate limited for 3600 s, "
             r"longer than mlci waits \(60 s\)"),
])
def test_a_rate_limit_that_cannot_be_honoured_is_one_line_exit_3(mr_repo: Path, gitlab: ForgeServer,
                                                                 retry_after: str, expected: str) -> None:
    gitlab.fail_next("POST", r"/notes$", 429, retry_after=retry_after)
    started = time.monotonic()
    done = repos.run_mlci(mr_repo, "report", env=_gitlab_env(gitlab))
    assert re.search(expected, _one_error_line(done, 3))
    assert time.monotonic() - started < 30 and gitlab.request_count("POST", r"/notes$") == 1
    assert (mr_repo / "mlci-report.md").is_file()  # the artifact is written before posting


@pytest.mark.parametrize("fault, expected", [
    ({"status": 200, "body": "<html><title>Sign in</title></html>", "content_type": "text/html"},
     r"GitLab: GET http://127\.0\.0\.1:\d+/api/v4/user: answered 200 with text/html, not JSON; is forge\.api_url"),
    ({"status": 200, "body": {"username": "mlci-bot"}},
     r"GitLab: GET http://127\.0\.0\.1:\d+/api/v4/user: answered without an integer `id` \(no such field\)"),
])
def test_an_answer_that_is_not_the_apis_is_one_line_exit_3(mr_repo: Path, gitlab: ForgeServer,
                                                           fault: dict[str, object], expected: str) -> None:
    gitlab.fail_next("GET", r"/user$", **fault)  # type: ignore[arg-type]
    assert re.search(expected, _one_error_line(repos.run_mlci(mr_repo, "report", env=_gitlab_env(gitlab)), 3))


def test_dry_run_writes_no_file_unless_out_is_given(mr_repo: Path, tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    done = repos.run_mlci(mr_repo, "report", "--base", "main", "--dry-run", env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("## ✅ Model report")
    assert not (mr_repo / "mlci-report.md").exists() and not summary.exists()
    assert repos.git(mr_repo, "status", "--porcelain") == ""
    given = repos.run_mlci(mr_repo, "report", "--base", "main", "--dry-run", "--out", "out.md")
    assert given.returncode == 0 and (mr_repo / "out.md").read_text() == given.stdout.rstrip("\n") + "\n"


def test_no_origin_remote_says_what_to_fetch(mr_repo: Path) -> None:
    repos.git(mr_repo, "remote", "remove", "origin")
    line = _one_error_line(repos.run_mlci(mr_repo, "report", env={"GITHUB_BASE_REF": "main"}), 3)
    assert "no remote 'origin' to fetch the target branch 'main' (GITHUB_BASE_REF) from" in line
    assert "git remote add origin URL && git fetch origin main" in line and "--base REF" in line


def test_a_missing_target_branch_or_a_failed_fetch_says_what_to_fetch(mr_repo: Path, tmp_path: Path) -> None:
    upstream = tmp_path / "upstream.git"
    repos.git(tmp_path, "clone", "-q", "--bare", str(mr_repo), str(upstream))
    repos.git(mr_repo, "remote", "set-url", "origin", f"file://{upstream}")
    from_ci = _one_error_line(repos.run_mlci(mr_repo, "report", env={"GITHUB_BASE_REF": "release"}), 3)
    assert "origin has no branch 'release' (GITHUB_BASE_REF): check the name, or pass --base REF" in from_ci
    configured = repos.run_mlci(mr_repo, "report", env={"MLCI_REPORT_TARGET_BRANCH": "release"})
    assert configured.returncode == 2 and configured.stderr.splitlines() == [
        "report.target_branch: origin has no branch 'release': check the name, or pass --base REF"]
    repos.git(mr_repo, "remote", "set-url", "origin", "http://127.0.0.1:9/bank/credit-model.git")
    repos.git(mr_repo, "update-ref", "-d", "refs/remotes/origin/main")
    failed = _one_error_line(repos.run_mlci(mr_repo, "report", env={"GITHUB_BASE_REF": "main"}), 3)
    assert re.search(r"cannot fetch the target branch 'main' \(GITHUB_BASE_REF\) from origin \(unable to access "
                     r"'http://127\.0\.0\.1:9/.*'.*\): fetch it before mlci report \(git fetch origin main\)", failed)
    assert "fatal:" not in failed


def test_a_baseline_that_is_the_checkout_itself_is_said(mr_repo: Path) -> None:
    """A pull_request_target (or push) job checks out the target branch: merge base = HEAD, an empty diff."""
    repos.git(mr_repo, "checkout", "-q", "main")
    done = repos.run_mlci(mr_repo, "report", "--dry-run", env={"GITHUB_BASE_REF": "main"})
    assert done.returncode == 0, done.stderr
    assert "mlci: warning: the baseline (merge base with main) is the commit checked out: only uncommitted " \
           "changes can show; a pull_request_target or push job checks out the target branch" in done.stderr
    assert "> - the baseline (merge base with main) is the commit checked out" in done.stdout
