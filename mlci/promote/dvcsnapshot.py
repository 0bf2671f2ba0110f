"""A private checkout of one revision of a DVC repository, for the DVC commands that concern that revision: its
files come from `git archive` (the user's workspace, index and .git are never written), its DVC configuration is
the workspace's (remotes, credentials and cache, as DVC resolves them where mlci runs), and it is removed on every
exit, Ctrl-C and SIGTERM included."""
from __future__ import annotations

import os
import re
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlci.core import git, log, proc
from mlci.core.errors import ConfigError, EnvironmentProblem, UsageError
from mlci.core.fsutil import atomic_write
from mlci.core.log import logger
from mlci.core.scratch import scratch_dir
from mlci.dvcstage.dvc import RepoInfo, inspect
from mlci.dvcstage.files import dvc_root

_SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
_NAMED = re.compile(r'^\s*(remote|machine)\s*"(.*)"\s*$')  # DVC's named sections (dvc/config.py: _parse_named)
_URL = re.compile(r"\w+://")
# The keys whose relative values DVC resolves against the directory of the config file (dvc/config.py: _map_dirs).
PATH_KEYS = {
    "cache": frozenset({"dir"}),
    "remote": frozenset({"url", "gdrive_user_credentials_file", "gdrive_service_account_json_file_path",
                         "credentialpath", "configpath", "keyfile", "cert_path", "key_path"}),
    "machine": frozenset({"startup_script", "setup_script"}),
}


@dataclass(frozen=True)
class Snapshot:
    """A checkout of `sha` beside the workspace, sharing its DVC cache and remotes."""

    workspace: Path  # the DVC root mlci runs in
    sha: str
    root: Path  # the checkout's DVC root
    base: Path  # the checkout's counterpart of the directory the caller named (an mlci project in a monorepo)
    cache: Path  # the DVC cache both use
    info: RepoInfo  # the checkout's remotes (the workspace's) and outputs (the revision's)


@contextmanager
def snapshot(repo: Path, revision: str) -> Iterator[Snapshot]:
    """The revision's files in a private temporary directory (removed however the block ends), configured so that
    DVC there uses the workspace's remotes, credentials and cache."""
    workspace = dvc_root(repo)
    if workspace is None:
        raise ConfigError([f"{repo}: not inside a DVC repository (no .dvc directory up to the git root)"])
    top, prefix = _where(workspace)
    sha = resolve(workspace, revision)
    cache = cache_dir(workspace)
    with scratch_dir("mlci-dvcdata-") as scratch:
        root = scratch / "checkout"
        _extract(top, sha, prefix, scratch / "tree.tar", root)
        if not (root / ".dvc").is_dir():
            raise ConfigError([f"{workspace}: there is no DVC repository here at revision {sha[:12]}"])
        adopt_config(workspace / ".dvc", root / ".dvc", cache, scratch / "dvc-site")
        base = Path(os.path.normpath(root / os.path.relpath(os.path.abspath(repo), workspace)))
        yield Snapshot(workspace, sha, root, base, cache, inspect(root))


def resolve(workspace: Path, revision: str) -> str:
    """The full sha of the commit `revision` names (a sha, tag or branch); exit 2 when there is none."""
    result = git.git(workspace, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{revision}^{{commit}}")
    sha = result.stdout.strip()
    if result.returncode != 0 or not _SHA.fullmatch(sha):
        raise UsageError(f"revision {revision!r}: no such commit in {workspace} (in a shallow clone, fetch it first: "
                         "`git fetch --depth=1 origin SHA`)")
    return sha


def cache_dir(workspace: Path) -> Path:
    """The workspace's DVC cache directory as DVC resolves it from every config level (read-only, in-process:
    `dvc cache dir` would cost a DVC start-up)."""
    from dvc.config import Config
    from dvc.exceptions import DvcException

    log.route_libraries()  # DVC's import gave its logger console handlers of its own
    try:
        cache = Config(dvc_dir=str(workspace / ".dvc"))["cache"]
    except DvcException as exc:
        raise ConfigError([f"{workspace}: DVC cannot read its config: {exc}"]) from None
    if cache.get("local"):
        raise ConfigError([f"{workspace}: cache.local (a DVC remote as the cache) is not supported by promotion; "
                           "use cache.dir"])
    return Path(os.path.realpath(cache.get("dir") or workspace / ".dvc" / "cache"))


def _where(workspace: Path) -> tuple[Path, str]:
    """The git checkout's top directory, and where the DVC root lies in it (`dvc init --subdir`): '' or 'sub/'."""
    result = git.git(workspace, "rev-parse", "--show-toplevel", "--show-prefix")
    lines = result.stdout.splitlines()
    if result.returncode != 0 or not lines:
        raise EnvironmentProblem(f"{workspace}: not a git checkout ({result.stderr.strip() or result.returncode})")
    return Path(lines[0]), lines[1] if len(lines) > 1 else ""


def _extract(top: Path, sha: str, prefix: str, tar: Path, into: Path) -> None:
    """The tree of `sha` under `prefix`, unpacked into `into` (no LFS download; links that leave it are dropped)."""
    result = proc.run(("git", "archive", "--format=tar", "-o", str(tar), f"{sha}:{prefix}"), cwd=top,
                      env={"GIT_LFS_SKIP_SMUDGE": "1"}, check=False)
    if result.returncode != 0:
        raise ConfigError([f"{top / prefix}: cannot read revision {sha[:12]} from git: "
                           f"{result.stderr.strip().splitlines()[-1] if result.stderr.strip() else result.returncode}"])
    with tarfile.open(tar) as archive:
        archive.extractall(into, filter=_safe_member)
    tar.unlink()


def _safe_member(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    """tarfile's `data` filter; a member it refuses (a link out of the checkout) is left out, not an error."""
    try:
        return tarfile.data_filter(member, dest)
    except tarfile.FilterError as exc:
        logger.debug("mlci: %s left out of the checkout (%s)", member.name, exc)
        return None


def adopt_config(source: Path, dest: Path, cache: Path, site_cache: Path) -> None:
    """Give the checkout's .dvc (`dest`) the workspace's DVC config (`source`): its `config` with relative paths
    made absolute, git switched off (`core.no_scm`: the checkout has no .git), the workspace's cache dir and a
    private site cache; its `config.local`, which holds credentials, linked in place, not copied, unless it holds
    relative paths (then a copy with them made absolute, inside the private directory)."""
    project = _load(source / "config")
    _rebase(project, source)
    _section(project, "core").update({"no_scm": "true", "site_cache_dir": str(site_cache)})
    _section(project, "cache")["dir"] = str(cache)
    _save(project, dest / "config")
    local, linked = source / "config.local", dest / "config.local"
    if linked.is_symlink() or linked.exists():
        linked.unlink()  # committed by mistake at that revision: never the workspace's
    if not local.is_file():
        return
    settings = _load(local)
    if _rebase(settings, source):
        _save(settings, linked)
    else:
        os.symlink(os.path.abspath(local), linked)


def _load(path: Path) -> Any:
    """A DVC config file as DVC parses it (configobj), values raw (no interpolation); empty when absent."""
    from configobj import ConfigObj, ConfigObjError

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ConfigObj(interpolation=False)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: DVC cannot read it either ({exc.__class__.__name__})"]) from None
    try:
        return ConfigObj(text.splitlines(), interpolation=False)
    except ConfigObjError as exc:
        raise ConfigError([f"{path}: not a valid DVC config ({str(exc).splitlines()[0]})"]) from None


def _save(config: Any, path: Path) -> None:
    config.filename = None
    lines: list[str] = config.write()
    atomic_write(path, ("\n".join(lines) + "\n").encode("utf-8"))  # bytes: credentials are written as they are


def _section(config: Any, name: str) -> Any:
    """The section `name` (DVC lower-cases section names), made when absent."""
    for existing in config.sections:
        if existing.strip().lower() == name:
            return config[existing]
    config[name] = {}
    return config[name]


def _rebase(config: Any, conf_dir: Path) -> bool:
    """Make each relative path value absolute, as DVC resolves it against `conf_dir`; whether any was."""
    changed = False
    for name in config.sections:
        named = _NAMED.match(name.lower())
        kind = named[1] if named else name.strip().lower()
        keys = PATH_KEYS.get(kind, frozenset())
        section = config[name]
        for key in section.scalars:
            value = section[key]
            if key.lower() in keys and isinstance(value, str) and value and not _absolute(value):
                section[key] = os.path.abspath(os.path.join(os.path.abspath(conf_dir), value))
                changed = True
    return changed


def _absolute(value: str) -> bool:
    return bool(_URL.match(value)) or os.path.isabs(value) or os.path.isabs(os.path.expanduser(value))
