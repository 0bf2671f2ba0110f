"""The DVC command line, as mlci drives it: every DVC action is one `dvc` subprocess (see ARCHITECTURE.md)."""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlci.core import proc
from mlci.core.errors import EnvironmentProblem

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


def default_remote(root: Path) -> str | None:
    """The repo's default DVC remote (`core.remote`), or None when it has none."""
    result = dvc(root, "config", "core.remote")
    name = result.stdout.strip()
    return name if result.returncode == 0 and name else None


def remote_names(root: Path) -> list[str]:
    """The names of the DVC remotes the repo defines."""
    result = dvc(root, "remote", "list")
    return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]


def _last_line(result: proc.Result) -> str:
    lines = [line for line in (result.stdout + "\n" + result.stderr).splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {result.returncode}"


def last_error(result: proc.Result) -> str:
    """DVC's own last `ERROR:` line from a failed run (or its last line)."""
    errors = [line for line in result.stdout.splitlines() if line.startswith("ERROR")]
    return errors[-1] if errors else _last_line(result)
