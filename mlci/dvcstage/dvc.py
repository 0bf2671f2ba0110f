"""The DVC command line, as mlci drives it: every DVC action is one `dvc` subprocess (see ARCHITECTURE.md)."""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlci.core import jsonsafe, log, proc
from mlci.core.errors import ConfigError, EnvironmentProblem, MlciError
from mlci.core.fsutil import atomic_write, cache_dir
from mlci.core.log import logger
from mlci.dvcstage.files import check_pipeline_files

# DVC's words when another DVC process holds the repository lock (dvc/lock.py, after a 3 s wait) or the
# lock on a stage's outputs (dvc/rwlock.py: `dvc repro` holds it while the stage runs), and whom it names.
_LOCKED = ("Unable to acquire lock", "is busy, it is being blocked by:")
_HOLDER = re.compile(r"^\s*\(PID (?P<pid>\d+)\): (?P<cmd>.+)$", re.MULTILINE)
_SITE_CACHE_KEY = re.compile(r"^\s*site_cache_dir\s*=", re.MULTILINE)


def dvc_env(root: Path) -> dict[str, str]:
    """What every DVC call gets: no analytics, and a site cache under mlci's own cache dir instead of
    /var/tmp/dvc (DVC's default, outside the repo and shared by every user), unless the environment or a
    DVC config file (`core.site_cache_dir`) says where it goes, or mlci's cache dir cannot be written (a
    read-only HOME on a runner: DVC's default then, with one warning)."""
    env = {"DVC_NO_ANALYTICS": "1"}
    if not os.environ.get("DVC_SITE_CACHE_DIR") and not _site_cache_configured(root):
        site = cache_dir() / "dvc-site"
        if _writable(str(site)):
            env["DVC_SITE_CACHE_DIR"] = str(site)
    return env


@functools.cache
def _writable(directory: str) -> bool:
    """Whether `directory` exists or can be made, and can be written (warns once when not)."""
    try:
        os.makedirs(directory, exist_ok=True)
        if os.access(directory, os.W_OK):
            return True
        reason = "permission denied"
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
    logger.warning("mlci: warning: cannot write mlci's cache dir %s (%s): DVC's site cache stays in its "
                   "default place; set MLCI_CACHE_DIR to a writable directory", directory, reason.lower())
    return False


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


def status(root: Path, targets: Sequence[str]) -> dict[str, Any]:
    """`dvc status --json`: per stage, what changed compared with dvc.lock."""
    result = dvc(root, "status", "--json", "--", *targets)
    if result.returncode != 0:
        raise EnvironmentProblem(f"`dvc status` failed in {root}: {_last_line(result)}")
    text = result.stdout.strip()
    return dict(jsonsafe.loads(text)) if text else {}


@dataclass(frozen=True)
class Tracked:
    """One output DVC knows in the repo (a stage's, or a `.dvc` file's), as the index resolves it."""

    stage: str  # its address from the repo root: `name`, `sub/dvc.yaml:name`, `data.csv.dvc`
    path: str  # relative to the repo root (posix)
    cached: bool  # False for `cache: false`: never pushed, so never pulled
    is_dir: bool
    persist: bool
    frozen: bool  # of a frozen stage: `dvc repro` verifies it and never makes it


@dataclass(frozen=True)
class RepoInfo:
    """Read-only facts about a DVC repo, from DVC's Python API (one import, no subprocess)."""

    default_remote: str | None
    remotes: tuple[str, ...]
    uncached_missing: tuple[tuple[str, str], ...]  # (stage, output) with `cache: false`, not on disk
    outputs: tuple[Tracked, ...] = ()
    wdirs: dict[str, str] = field(default_factory=dict)  # pipeline stage address -> its wdir from the root


def inspect(root: Path) -> RepoInfo:
    """Remotes (all config levels merged, as DVC sees them), every output with its stage (each dvc.yaml in
    any directory, templating and `wdir` resolved by DVC) and missing `cache: false` outputs."""
    check_pipeline_files(root)
    return _repo_info(root)


def stage_outputs(root: Path) -> tuple[tuple[Tracked, ...], dict[str, str]]:
    """Every output with its stage, and each pipeline stage's wdir, as DVC's index resolves them; remembered
    in mlci's cache dir by the fingerprint of the pipeline files and DVC's version (a hint), so a warm runner
    does not import DVC to know them (a build that reuses every layer takes well under a second). A changed
    pipeline file, another DVC, or a file name only DVC can resolve (a template) asks DVC again."""
    fingerprint = check_pipeline_files(root)
    if fingerprint is None:
        info = _repo_info(root)
        return info.outputs, info.wdirs
    key = hashlib.sha256(f"{importlib.metadata.version('dvc')}\0{fingerprint}".encode()).hexdigest()
    remembered = cache_dir() / "dvc-index" / f"{key}.json"
    try:
        data = jsonsafe.loads(remembered.read_text(encoding="utf-8"))
        return tuple(Tracked(*row) for row in data["outputs"]), dict(data["wdirs"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    info = _repo_info(root)
    try:
        atomic_write(remembered, json.dumps({"outputs": [list(vars(o).values()) for o in info.outputs],
                                             "wdirs": info.wdirs}))
    except MlciError as exc:  # a hint: a cache dir that cannot be written costs a DVC import next time
        logger.debug("mlci: DVC index not remembered (%s)", exc)
    return info.outputs, info.wdirs


def _repo_info(root: Path) -> RepoInfo:
    """inspect() after the pipeline files were checked."""
    for name, value in dvc_env(root).items():  # the API in this process: the same site cache as the CLI
        os.environ.setdefault(name, value)
    from dvc.exceptions import DvcException
    from dvc.lock import LockError
    from dvc.repo import Repo  # heavy: imported only when the training stage runs

    log.route_libraries()  # DVC's import gave its logger console handlers of its own

    try:
        with Repo(str(root)) as repo:
            outputs, wdirs = _index(repo, root)
            remote = repo.config["core"].get("remote")
            remotes = tuple(repo.config.get("remote", {}))
    except LockError:
        raise locked(root) from None
    except DvcException as exc:
        raise ConfigError([f"{root}: DVC cannot read this repository: {exc}"]) from None
    except OSError as exc:  # DVC making its site cache or tmp dir
        raise EnvironmentProblem(f"DVC cannot open {root}: {exc.strerror or exc} ({exc.filename})") from None
    missing = tuple((o.stage, o.path) for o in outputs if not o.cached and not os.path.lexists(root / o.path))
    return RepoInfo(remote or None, remotes, missing, outputs, wdirs)


def _index(repo: Any, root: Path) -> tuple[tuple[Tracked, ...], dict[str, str]]:
    outputs: list[Tracked] = []
    wdirs: dict[str, str] = {}
    for stage in repo.index.stages:
        where = Path(os.path.relpath(stage.path, root)).as_posix()
        name = getattr(stage, "name", None)
        address = where if not name else name if where == "dvc.yaml" else f"{where}:{name}"
        if name:
            wdirs[address] = Path(os.path.relpath(stage.wdir, root)).as_posix()
        outputs.extend(
            Tracked(address, Path(os.path.relpath(out.fs_path, root)).as_posix(), bool(out.use_cache),
                    bool(out.hash_info and out.hash_info.isdir), bool(out.persist), bool(stage.frozen))
            for out in stage.outs)
    return tuple(outputs), wdirs


def _last_line(result: proc.Result) -> str:
    lines = [line for line in (result.stdout + "\n" + result.stderr).splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {result.returncode}"


def last_error(result: proc.Result) -> str:
    """DVC's own last `ERROR:` line from a failed run (or its last line). DVC writes it to stderr, which a
    streamed run folds into stdout: both are read."""
    errors = [line for line in (result.stdout + "\n" + result.stderr).splitlines() if line.startswith("ERROR")]
    return errors[-1] if errors else _last_line(result)
