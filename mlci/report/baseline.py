"""The baseline of a merge request: the merge base of HEAD with the target branch, found even in a
shallow CI clone by deepening it step by step (and fetching the target branch when it is missing)."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mlci.core.errors import EnvironmentProblem, UsageError
from mlci.core.git import git
from mlci.core.log import logger

DEEPEN_STEPS = (10, 30, 100, 300)


@dataclass(frozen=True)
class Baseline:
    """The commit the report compares against, and how it was chosen."""

    sha: str
    label: str


def resolve(repo: Path, explicit: str | None, target: str | None, env: Mapping[str, str]) -> Baseline:
    """`--base` if given; else the MR's diff base (GitLab); else merge-base(HEAD, origin/target)."""
    if explicit:
        sha = _commit(repo, explicit)
        if sha is None:
            raise UsageError(f"--base {explicit}: no such commit or ref in {repo}")
        return Baseline(sha, explicit)
    target = env.get("CI_MERGE_REQUEST_TARGET_BRANCH_NAME") or env.get("GITHUB_BASE_REF") or target
    diff_base = env.get("CI_MERGE_REQUEST_DIFF_BASE_SHA")
    if diff_base:
        _deepen_until(repo, target, lambda: _commit(repo, diff_base) is not None)
        return Baseline(diff_base, f"merge base with {target}" if target else diff_base[:12])
    if not target:
        raise UsageError("no baseline: not a merge request pipeline; pass --base REF or set report.target_branch")
    remote_ref = f"refs/remotes/origin/{target}"
    if _commit(repo, remote_ref) is None:
        _fetch(repo, target, "--depth=1" if _shallow(repo) else None)
    if _commit(repo, remote_ref) is None:
        raise EnvironmentProblem(f"target branch {target!r} is not on the remote 'origin'")
    found = _deepen_until(repo, target, lambda: _merge_base(repo, remote_ref) is not None)
    if not found:
        raise EnvironmentProblem(f"HEAD and {target!r} share no history")
    sha = _merge_base(repo, remote_ref)
    assert sha is not None
    return Baseline(sha, f"merge base with {target}")


def _deepen_until(repo: Path, target: str | None, check: Callable[[], bool]) -> bool:
    """Deepen a shallow clone until `check()` holds; False if the full history does not satisfy it."""
    if check():
        return True
    for step in DEEPEN_STEPS:
        if not _shallow(repo):
            return check()
        logger.info("mlci: shallow clone: fetching %d more commits to find the baseline", step)
        _fetch(repo, target, f"--deepen={step}")
        if check():
            return True
    if _shallow(repo):
        _fetch(repo, target, "--unshallow")
    return check()


def _fetch(repo: Path, target: str | None, depth_flag: str | None) -> None:
    refspec = [f"+refs/heads/{target}:refs/remotes/origin/{target}"] if target else []
    result = git(repo, "fetch", "--quiet", *([depth_flag] if depth_flag else []), "origin", *refspec)
    if result.returncode != 0:
        raise EnvironmentProblem(f"cannot fetch from origin: {result.tail(1)}")


def _shallow(repo: Path) -> bool:
    return git(repo, "rev-parse", "--is-shallow-repository").stdout.strip() == "true"


def _commit(repo: Path, ref: str) -> str | None:
    result = git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    return result.stdout.strip() or None if result.returncode == 0 else None


def _merge_base(repo: Path, ref: str) -> str | None:
    result = git(repo, "merge-base", "HEAD", ref)
    return result.stdout.strip() or None if result.returncode == 0 else None
