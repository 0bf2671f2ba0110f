"""The baseline in real git repos, including a `git clone --depth 1` whose merge base is 30 commits back."""
from __future__ import annotations

from pathlib import Path

import pytest

from mlci.core.errors import UsageError
from mlci.report.baseline import resolve
from tests.testing.repos import git


def _commits(repo: Path, prefix: str, n: int) -> None:
    for i in range(n):
        git(repo, "commit", "-q", "--allow-empty", "-m", f"{prefix}{i}")


@pytest.fixture
def upstream(tmp_path: Path) -> tuple[Path, str]:
    repo = tmp_path / "upstream"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    _commits(repo, "base", 3)
    fork_point = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "checkout", "-q", "-b", "feature")
    _commits(repo, "feature", 30)
    git(repo, "checkout", "-q", "main")
    _commits(repo, "main", 5)
    return repo, fork_point


def test_shallow_clone_deepens_until_the_merge_base(tmp_path: Path, upstream: tuple[Path, str]) -> None:
    repo, fork_point = upstream
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--depth", "1", "--branch", "feature", f"file://{repo}", str(clone))
    found = resolve(clone, None, None, {"CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main"})
    assert found.sha == fork_point and found.label == "merge base with main"


def test_gitlab_diff_base_sha_is_fetched_into_a_shallow_clone(tmp_path: Path, upstream: tuple[Path, str]) -> None:
    repo, fork_point = upstream
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--depth", "1", "--branch", "feature", f"file://{repo}", str(clone))
    found = resolve(clone, None, None, {"CI_MERGE_REQUEST_DIFF_BASE_SHA": fork_point,
                                        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main"})
    assert found.sha == fork_point
    assert git(clone, "cat-file", "-t", fork_point).strip() == "commit"


def test_github_base_ref_and_explicit_base(upstream: tuple[Path, str]) -> None:
    repo, fork_point = upstream
    git(repo, "checkout", "-q", "feature")
    git(repo, "remote", "add", "origin", f"file://{repo}")
    git(repo, "fetch", "-q", "origin")
    assert resolve(repo, None, None, {"GITHUB_BASE_REF": "main"}).sha == fork_point
    assert resolve(repo, "main~5", None, {}).sha == fork_point
    with pytest.raises(UsageError, match="--base nope: no such commit"):
        resolve(repo, "nope", None, {})
    with pytest.raises(UsageError, match="not a merge request pipeline"):
        resolve(repo, None, None, {})


def test_explicit_base_is_origins_branch_in_a_ci_clone_and_a_missing_one_says_what_to_fetch(
        tmp_path: Path, upstream: tuple[Path, str]) -> None:
    repo, _ = upstream
    main = git(repo, "rev-parse", "main").strip()
    clone = tmp_path / "clone"  # as a runner checks out: one branch, shallow, detached, no local `main`
    git(tmp_path, "clone", "-q", "--depth", "1", "--branch", "feature", f"file://{repo}", str(clone))
    git(clone, "checkout", "-q", "--detach")
    with pytest.raises(UsageError) as missing:
        resolve(clone, "main", None, {})
    assert "git fetch origin main:refs/remotes/origin/main" in str(missing.value)
    git(clone, "fetch", "-q", "--depth", "1", "origin", "main:refs/remotes/origin/main")  # what it said
    assert resolve(clone, "main", None, {}).sha == main
    with pytest.raises(UsageError, match=r"HEAD~3: .*git fetch --deepen=50"):
        resolve(clone, "HEAD~3", None, {})


def test_a_merged_results_pipeline_compares_with_the_target_head_it_is_built_on(
        tmp_path: Path, upstream: tuple[Path, str]) -> None:
    """GitLab checks out the MR merged into the target branch's head (refs/merge-requests/7/merge), in a
    depth-1 clone; the diff base is older, and main's own changes since then are not the MR's."""
    repo, fork_point = upstream
    target_head = git(repo, "rev-parse", "main").strip()
    git(repo, "checkout", "-q", "--detach", "main")
    git(repo, "merge", "-q", "--no-ff", "-m", "merged result", "feature")
    git(repo, "update-ref", "refs/merge-requests/7/merge", "HEAD")
    clone = tmp_path / "clone"
    clone.mkdir()
    git(clone, "init", "-q")
    git(clone, "remote", "add", "origin", f"file://{repo}")
    git(clone, "fetch", "-q", "--depth", "1", "origin", "refs/merge-requests/7/merge")
    git(clone, "checkout", "-q", "FETCH_HEAD")
    env = {"CI_MERGE_REQUEST_EVENT_TYPE": "merged_result", "CI_MERGE_REQUEST_DIFF_BASE_SHA": fork_point,
           "CI_MERGE_REQUEST_TARGET_BRANCH_SHA": target_head, "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main"}
    found = resolve(clone, None, None, env)
    assert found.sha == target_head != fork_point
    assert found.label == "the head of main this merged result is built on"
    detached = {k: v for k, v in env.items() if k != "CI_MERGE_REQUEST_TARGET_BRANCH_SHA"}  # "detached": empty
    assert resolve(clone, None, None, {**detached, "CI_MERGE_REQUEST_TARGET_BRANCH_SHA": ""}).sha == fork_point
