"""The DVC command line, as mlci drives it: every DVC action is one `dvc` subprocess (see ARCHITECTURE.md)."""
from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlci.core import proc, yamlsafe
from mlci.core.errors import ConfigError, EnvironmentProblem
from mlci.core.fsutil import cache_dir

# DVC's words when another DVC process holds the repository lock (dvc/lock.py, after a 3 s wait) or the
# lock on a stage's outputs (dvc/rwlock.py: `dvc repro` holds it while the stage runs), and whom it names.
_LOCKED = ("Unable to acquire lock", "is busy, it is being blocked by:")
_HOLDER = re.compile(r"^\s*\(PID (?P<pid>\d+)\): (?P<cmd>.+)$", re.MULTILINE)
_SITE_CACHE_KEY = re.compile(r"^\s*site_cache_dir\s*=", re.MULTILINE)


def dvc_env(root: Path) -> dict[str, str]:
    """What every DVC call gets: no analytics, and a site cache under mlci's own cache dir instead of
    /var/tmp/dvc (DVC's default, outside the repo and shared by every user), unless the environment or a
    DVC config file (`core.site_cache_dir`) says where it goes."""
    env = {"DVC_NO_ANALYTICS": "1"}
    if not os.environ.get("DVC_SITE_CACHE_DIR") and not _site_cache_configured(root):
        env["DVC_SITE_CACHE_DIR"] = str(cache_dir() / "dvc-site")
    return env


def _site_cache_configured(root: Path) -> bool:
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    files = (root / ".dvc" / "config", root / ".dvc" / "config.local", config_home / "dvc" / "config",
             Path("/etc/xdg/dvc/config"))
    for path in files:
        try:
            if _SITE_CACHE_KEY.search(path.read_text(encoding="utf-8", errors="replace")):
                return True
        except OSError:
            continue
    return False


def dvc(root: Path, *args: str, stream: bool = False, check: bool = False) -> proc.Result:
    """Run `dvc ARGS` in `root`. Positional arguments that users name (targets, paths) must come after a
    `--` in `args`, so a name starting with `-` is never an option. A repository locked by another DVC
    process is an environment problem (exit 3), whatever the command."""
    result = proc.run(("dvc", *args), cwd=root, env=dvc_env(root), stream=stream, check=False)
    output = result.stdout + result.stderr
    if result.returncode != 0 and any(words in output for words in _LOCKED):
        holder = _HOLDER.search(output)
        raise locked(root, f"PID {holder['pid']}: {holder['cmd'].strip()}" if holder else None)
    if check and result.returncode != 0:
        raise proc.CommandFailed(result)
    return result


def locked(root: Path, holder: str | None = None) -> EnvironmentProblem:
    """The error for a repository whose lock another DVC process holds."""
    who = f" ({holder})" if holder else ""  # redacted where it is printed
    return EnvironmentProblem(f"the DVC repository {root.resolve()} is locked by another DVC process{who}; wait for "
                              "it to finish (if none is running, remove .dvc/tmp/lock and .dvc/tmp/rwlock)")


def check_pipeline_files(root: Path) -> None:
    """Read dvc.yaml and dvc.lock within yamlsafe's bounds before DVC does: a file nested too deeply or
    full of aliases is exit 2 naming it, not a crash or a hang inside DVC."""
    problems = []
    for name in ("dvc.yaml", "dvc.lock"):
        path = root / name
        if not path.is_file():
            continue
        try:
            yamlsafe.load(path.read_text(encoding="utf-8", errors="replace"))
        except yamlsafe.YamlProblem as exc:
            problems.append(f"{name}:{exc.line}: {exc.message}")
    if problems:
        raise ConfigError(problems)


def status(root: Path, targets: Sequence[str]) -> dict[str, Any]:
    """`dvc status --json`: per stage, what changed compared with dvc.lock."""
    result = dvc(root, "status", "--json", "--", *targets)
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
    check_pipeline_files(root)
    for name, value in dvc_env(root).items():  # the API in this process: the same site cache as the CLI
        os.environ.setdefault(name, value)
    from dvc.exceptions import DvcException
    from dvc.lock import LockError
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
    except LockError:
        raise locked(root) from None
    except DvcException as exc:
        raise ConfigError([f"{root}: DVC cannot read this repository: {exc}"]) from None


def _last_line(result: proc.Result) -> str:
    lines = [line for line in (result.stdout + "\n" + result.stderr).splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {result.returncode}"


def last_error(result: proc.Result) -> str:
    """DVC's own last `ERROR:` line from a failed run (or its last line). DVC writes it to stderr, which a
    streamed run folds into stdout: both are read."""
    errors = [line for line in (result.stdout + "\n" + result.stderr).splitlines() if line.startswith("ERROR")]
    return errors[-1] if errors else _last_line(result)
