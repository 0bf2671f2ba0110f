"""The DVC command line, as mlci drives it: every DVC action is one `dvc` subprocess (see ARCHITECTURE.md)."""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlci.core import proc
from mlci.core.errors import ConfigError, EnvironmentProblem

# DVC must never phone home, and must not write its site cache under /var/tmp (see TOOLCHAIN notes).
DVC_ENV = {"DVC_NO_ANALYTICS": "1"}


def dvc(root: Path, *args: str, stream: bool = False, check: bool = False) -> proc.Result:
    """Run `dvc ARGS` in `root`."""
    return proc.run(("dvc", *args), cwd=root, env=DVC_ENV, stream=stream, check=check)


def status(root: Path, targets: Sequence[str]) -> dict[str, Any]:
    """`dvc status --json`: per stage, what changed compared with dvc.lock."""
    result = dvc(root, "status", "--json", *targets)
    if result.returncode != 0:
        raise EnvironmentProblem(f"`dvc status` failed in {root}: {_last_line(result)}")
    text = result.stdout.strip()
    return dict(json.loads(text)) if text else {}


@dataclass(frozen=True)
class RepoInfo:
    """Read-only facts about a DVC repo, from DVC's Python API (one import, no subprocess)."""

    default_remote: str | None
    remotes: tuple[str, ...]
    uncached_missing: tuple[tuple[str, str], ...]  # (stage, output) with `cache: false`, not on disk


def inspect(root: Path) -> RepoInfo:
    """Remotes (all config levels merged, as DVC sees them) and missing `cache: false` outputs."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo  # heavy: imported only when the training stage runs

    try:
        with Repo(str(root)) as repo:
            missing = tuple(
                (stage.addressing, str(out.def_path))
                for stage in repo.index.stages
                for out in stage.outs
                if not out.use_cache and not Path(out.fs_path).exists()
            )
            remote = repo.config["core"].get("remote")
            return RepoInfo(remote or None, tuple(repo.config.get("remote", {})), missing)
    except DvcException as exc:
        raise ConfigError([f"{root}: DVC cannot read this repository: {exc}"]) from None


def _last_line(result: proc.Result) -> str:
    lines = [line for line in (result.stdout + "\n" + result.stderr).splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {result.returncode}"


def last_error(result: proc.Result) -> str:
    """DVC's own last `ERROR:` line from a failed run (or its last line)."""
    errors = [line for line in result.stdout.splitlines() if line.startswith("ERROR")]
    return errors[-1] if errors else _last_line(result)
