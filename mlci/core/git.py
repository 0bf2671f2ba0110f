"""The git commands mlci runs, through core.proc: `git()` for callers that read the exit code themselves,
and checked helpers (revision, commit time, remote URL) whose failures on CI runners become one line
with the fix (exit 3), never an empty revision or a 1970 date."""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from mlci.core import proc
from mlci.core.errors import EnvironmentProblem

_SHA = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")  # SHA-1, or SHA-256 object format


def git(repo: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float | None = None) -> proc.Result:
    """A git command in `repo` (never raises on exit code, except when git refuses the checkout itself:
    a repository owned by another user, which no git command can read). `env` adds variables; past `timeout`
    seconds the command is stopped (proc.TimedOut, exit 3)."""
    result = proc.run(("git", *args), cwd=repo, env=env, check=False, timeout=timeout)
    if result.returncode != 0 and ("dubious ownership" in result.stderr or "unsafe repository" in result.stderr):
        raise EnvironmentProblem(
            f"git refuses the checkout {repo.resolve()}: it is owned by another user (\"dubious ownership\"); "
            f"if you trust it, run `git config --global --add safe.directory {repo.resolve()}` before mlci "
            "(on a CI runner: in the job's before_script)")
    return result


def head_sha(repo: Path) -> str:
    """The full sha of HEAD (a detached HEAD, as CI checks out, is fine); exit 3 when there is none."""
    result = git(repo, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    sha = result.stdout.strip()
    if result.returncode == 0 and _SHA.match(sha):
        return sha
    inside = git(repo, "rev-parse", "--is-inside-work-tree")
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        raise EnvironmentProblem(f"{repo}: not a git checkout ({_last_line(inside)}); "
                                 "mlci labels what it builds with the commit it was built from")
    raise EnvironmentProblem(f"{repo}: the repository has no commits yet (HEAD is unborn); commit first")


def commit_time(repo: Path, sha: str) -> int:
    """The committer time of `sha` in seconds since the epoch."""
    result = git(repo, "log", "-1", "--format=%ct", sha, "--")
    text = result.stdout.strip()
    if result.returncode != 0 or not text.isdigit():
        raise EnvironmentProblem(f"{repo}: cannot read the commit time of {sha[:12]}: {_last_line(result)}")
    return int(text)


def remote_url(repo: Path, name: str = "origin") -> str | None:
    """The fetch URL of a remote exactly as configured (may hold credentials), or None without that remote."""
    result = git(repo, "remote", "get-url", name)
    return result.stdout.strip() or None if result.returncode == 0 else None


def exact_tag(repo: Path) -> str | None:
    """A tag on HEAD itself (the newest, when several), or None."""
    result = git(repo, "tag", "--points-at", "HEAD", "--sort=-creatordate")
    names = result.stdout.split() if result.returncode == 0 else []
    return names[0] if names else None


def current_branch(repo: Path) -> str | None:
    """The checked-out branch, or None on a detached HEAD."""
    result = git(repo, "symbolic-ref", "--quiet", "--short", "HEAD")
    return result.stdout.strip() or None if result.returncode == 0 else None


def _last_line(result: proc.Result) -> str:
    lines = [line for line in (result.stderr + "\n" + result.stdout).splitlines() if line.strip()]
    return lines[-1].removeprefix("fatal: ") if lines else f"git exited {result.returncode}"
