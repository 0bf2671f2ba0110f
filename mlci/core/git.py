"""The git commands mlci runs (revision, commit time, remote URL, merge base), through core.proc."""
from __future__ import annotations

from pathlib import Path

from mlci.core import proc


def git(repo: Path, *args: str) -> proc.Result:
    """A git command in `repo` (never raises on exit code)."""
    return proc.run(("git", *args), cwd=repo, check=False)
