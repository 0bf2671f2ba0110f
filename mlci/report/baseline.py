"""The baseline of a merge request: the merge base of HEAD with the target branch, found even in a
shallow CI clone by deepening it step by step (and fetching the target branch when it is missing).
When git cannot get there (no `origin`, no such branch, no network), the message says what to fetch."""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mlci.core.errors import ConfigError, EnvironmentProblem, UsageError
from mlci.core.git import git
from mlci.core.log import logger

DEEPEN_STEPS = (10, 30, 100, 300)
CI_TARGETS = ("CI_MERGE_REQUEST_TARGET_BRANCH_NAME", "GITHUB_BASE_REF")


@dataclass(frozen=True)
class Baseline:
    """The commit the report compares against, and how it was chosen."""

    sha: str
    label: str


@dataclass(frozen=True)
class _Target:
    """The target branch and where its name came from (a CI variable or report.target_branch)."""

    branch: str | None
    source: str

    @property
    def configured(self) -> bool:
        """Whether the name came from mlci.yaml (a wrong name is then a config error, exit 2)."""
        return self.source == "report.target_branch"


def resolve(repo: Path, explicit: str | None, target: str | None, env: Mapping[str, str]) -> Baseline:
    """`--base` if given; else, on GitLab, the target branch head a merged result is built on, or the MR's diff
    base; else merge-base(HEAD, origin/target)."""
    _check_checkout(repo)
    if explicit:
        # A CI checkout has no local branches: `--base main` is origin's main there (as `git checkout main`).
        sha = _commit(repo, explicit) or _commit(repo, f"refs/remotes/origin/{explicit}")
        if sha is None:
            raise UsageError(f"--base {explicit}: no such commit or ref in {repo.resolve()} (a CI clone is shallow "
                             f"and has few refs): {_fetch_hint(explicit)}, or pass --base with a ref it has")
        return Baseline(sha, explicit)
    chosen = next((_Target(env[name], name) for name in CI_TARGETS if env.get(name)),
                  _Target(target, "report.target_branch"))
    # A merged results (or merge train) pipeline checks out the MR merged into the target branch's head: the
    # baseline is that head, else the target branch's own changes since the diff base count as the MR's.
    merged_onto = env.get("CI_MERGE_REQUEST_TARGET_BRANCH_SHA", "").strip()
    if merged_onto:
        return _ci_commit(repo, merged_onto, "CI_MERGE_REQUEST_TARGET_BRANCH_SHA", chosen,
                          f"the head of {chosen.branch or 'the target branch'} this merged result is built on")
    diff_base = env.get("CI_MERGE_REQUEST_DIFF_BASE_SHA", "").strip()
    if diff_base:
        return _ci_commit(repo, diff_base, "CI_MERGE_REQUEST_DIFF_BASE_SHA", chosen,
                          f"merge base with {chosen.branch}" if chosen.branch else diff_base[:12])
    if not chosen.branch:
        raise UsageError("no baseline: not a merge request pipeline; pass --base REF or set report.target_branch")
    branch = chosen.branch
    remote_ref = f"refs/remotes/origin/{branch}"
    if _commit(repo, remote_ref) is None:
        _fetch(repo, chosen, "--depth=1" if _shallow(repo) else None)
    if _commit(repo, remote_ref) is None:
        raise EnvironmentProblem(f"the target branch {branch!r} ({chosen.source}) was fetched but origin/{branch} "
                                 f"is still missing: fetch it (git fetch origin {branch}:refs/remotes/origin/{branch})"
                                 " or pass --base REF")
    found = _deepen_until(repo, chosen, lambda: _merge_base(repo, remote_ref) is not None)
    if not found:
        raise EnvironmentProblem(f"HEAD and origin/{branch} ({chosen.source}) share no history, even with all of "
                                 "it fetched: is this the right target branch? Else pass --base REF")
    sha = _merge_base(repo, remote_ref)
    assert sha is not None
    return Baseline(sha, f"merge base with {branch}")


def _ci_commit(repo: Path, sha: str, variable: str, target: _Target, label: str) -> Baseline:
    """A commit GitLab names in `variable`, deepening the clone until it is there."""
    if not re.fullmatch(r"[0-9a-f]{7,64}", sha):
        raise EnvironmentProblem(f"{variable}={sha[:40]!r}: not a commit sha")
    if not _deepen_until(repo, target, lambda: _commit(repo, sha) is not None):
        raise EnvironmentProblem(f"the merge request's baseline {sha[:12]} ({variable}) is not in this clone, even "
                                 f"with all history fetched: fetch it (git fetch origin {sha}) or pass --base REF")
    return Baseline(sha, label)


def _deepen_until(repo: Path, target: _Target, check: Callable[[], bool]) -> bool:
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


def _fetch(repo: Path, target: _Target, depth_flag: str | None) -> None:
    """Fetch the target branch (or deepen); failures say what to fetch, never only git's line."""
    branch = target.branch
    if git(repo, "remote", "get-url", "origin").returncode != 0:
        wanted = f"the target branch {branch!r} ({target.source})" if branch else "more history"
        raise EnvironmentProblem(f"{repo}: no remote 'origin' to fetch {wanted} from: add it and fetch "
                                 f"(git remote add origin URL && git fetch origin{' ' + branch if branch else ''}), "
                                 "or pass --base REF")
    refspec = [f"+refs/heads/{branch}:refs/remotes/origin/{branch}"] if branch else []
    result = git(repo, "fetch", "--quiet", *([depth_flag] if depth_flag else []), "origin", *refspec)
    if result.returncode == 0:
        return
    output = result.tail(20)
    if branch and "couldn't find remote ref" in output.lower():
        if target.configured:
            raise ConfigError([f"report.target_branch: origin has no branch {branch!r}: check the name, or pass "
                               "--base REF"])
        raise EnvironmentProblem(f"origin has no branch {branch!r} ({target.source}): check the name, or pass "
                                 "--base REF")
    reason = _git_reason(output)
    what = f"the target branch {branch!r} ({target.source})" if branch else "more history"
    raise EnvironmentProblem(f"cannot fetch {what} from origin ({reason}): fetch it before mlci report "
                             f"(git fetch origin{' ' + branch if branch else ''}) or pass --base REF")


def _fetch_hint(ref: str) -> str:
    """The git command that brings `ref` into a CI clone."""
    if re.search(r"[~^@{:]", ref):  # relative to a commit (HEAD~1): more history is what is missing
        return "deepen the clone first (git fetch --deepen=50)"
    if re.fullmatch(r"[0-9a-f]{7,64}", ref):
        return f"fetch it first (git fetch origin {ref})"
    return f"fetch it first (git fetch origin {ref}:refs/remotes/origin/{ref})"


def _check_checkout(repo: Path) -> None:
    """The report compares git revisions: say so when `repo` is not a checkout git can read."""
    result = git(repo, "rev-parse", "--git-dir")
    if result.returncode == 0:
        return
    output = result.tail(20)
    fix = f"; fix: git config --global --add safe.directory {repo.resolve()}" if "safe.directory" in output else ""
    raise EnvironmentProblem(f"{repo}: not a git checkout mlci can read ({_git_reason(output)}){fix}")


def _git_reason(output: str) -> str:
    """git's first `fatal:`/`error:` line without the prefix, as the reason inside mlci's own message."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    first = next((line for line in lines if line.startswith(("fatal:", "error:"))), lines[0] if lines else "")
    return re.sub(r"^(fatal|error):\s*", "", first)[:300] or "git failed"


def _shallow(repo: Path) -> bool:
    return git(repo, "rev-parse", "--is-shallow-repository").stdout.strip() == "true"


def _commit(repo: Path, ref: str) -> str | None:
    if ref.startswith("-"):  # never an option to git
        return None
    result = git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    return result.stdout.strip() or None if result.returncode == 0 else None


def _merge_base(repo: Path, ref: str) -> str | None:
    result = git(repo, "merge-base", "HEAD", ref)
    return result.stdout.strip() or None if result.returncode == 0 else None
