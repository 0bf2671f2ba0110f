"""Bring DVC-tracked files into the workspace before a job uses them (a CI job starts without them):
datasets for data tests, model weights for the image; and what DVC recorded for the weights, so that the
image build can tell whether their layer exists before it pulls them."""
from __future__ import annotations

import fnmatch
import glob
import os
import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from mlci.core.errors import EnvironmentProblem
from mlci.core.log import logger
from mlci.dvcstage.dvc import Tracked, dvc, last_error, stage_outputs
from mlci.dvcstage.files import dvc_root
from mlci.dvcstage.lock import read_lock


def pull_missing(paths: Iterable[str], base: Path) -> list[str]:
    """`dvc pull` what the local paths (relative to `base`, a directory of a DVC repo: its root or a
    model's subdirectory) need and the workspace lacks: a missing DVC-tracked file, the missing outputs
    under a directory (one that exists only for DVC's .gitignore), the outputs a glob can match, a file
    inside a directory output. Returns what was pulled, relative to the DVC repo's root."""
    root = dvc_root(base)
    if root is None:
        return []
    inside = [_in_repo(root, base, p) for p in dict.fromkeys(paths)
              if not p.startswith("s3://") and not os.path.isabs(p)]
    wanted = [w for w in inside if w is not None and not (root / w).is_file()]  # a file on disk needs nothing
    if not wanted:
        return []
    missing = needed(wanted, stage_outputs(root)[0], root)
    if missing:
        logger.info("mlci: pulling %s from the DVC remote", ", ".join(missing))
        result = dvc(root, "pull", "--", *missing, stream=True)
        if result.returncode != 0:
            raise EnvironmentProblem(f"cannot pull {', '.join(missing)} with DVC: {last_error(result)}")
    return missing


def _in_repo(root: Path, base: Path, path: str) -> str | None:
    """`path` (relative to `base`) relative to the DVC root, or None when it leaves the repository."""
    rel = Path(os.path.relpath(os.path.abspath(base / path), root)).as_posix()
    return None if rel == ".." or rel.startswith("../") else rel


def needed(wanted: Sequence[str], outputs: Iterable[Tracked], root: Path) -> list[str]:
    """What to pull for the repo paths `wanted` (files, directories or globs): each missing cached output
    that is one of them, lies under one, or can hold a glob's matches, and each wanted path that lies inside
    a directory output and is missing (DVC pulls a file of a directory output on its own)."""
    found: list[str] = []
    for want in wanted:
        pattern = glob.has_magic(want) and not os.path.lexists(root / want)  # `data[1].csv` may be a name
        parts = PurePosixPath(want).parts
        for out in (o for o in outputs if o.cached):
            out_parts = PurePosixPath(out.path).parts
            if _covers(parts, out_parts, out.is_dir, pattern):
                if not os.path.lexists(root / out.path):
                    found.append(out.path)
            elif out.is_dir and parts[:len(out_parts)] == out_parts and not os.path.lexists(root / want):
                found.append(want)
    return list(dict.fromkeys(found))


def _covers(want: tuple[str, ...], out: tuple[str, ...], out_is_dir: bool, pattern: bool) -> bool:
    """Whether an output is what `want` names: the path itself or under it; for a glob, a match, a file under
    a matching directory, or a directory output that may hold matches (`**` matches any depth)."""
    if out[:len(want)] == want or not pattern:
        return out[:len(want)] == want
    for index, part in enumerate(want):
        if part == "**":
            return True
        if index == len(out):
            return out_is_dir  # the output is a directory above the rest of the pattern
        if not fnmatch.fnmatchcase(out[index], part):
            return False
    return True


@dataclass(frozen=True)
class Recorded:
    """A DVC output under (or holding) a configured path, with the hash DVC recorded for it (dvc.lock, or
    the `.dvc` file of `dvc add`ed data): what the output holds, known without its bytes."""

    artifact: str  # the configured path it serves, relative to `base`
    path: str  # the output (or, inside a directory output, the configured path itself), relative to `base`
    output: str  # the DVC output, relative to the DVC root
    is_dir: bool
    recorded: dict[str, Any]  # md5 (`.dir` for a directory), size, nfiles, isexec, hash, as DVC wrote them
    inside: bool = False  # `path` lies inside the directory output `output` (keyed by the directory's hash)


def recorded_outputs(paths: Iterable[str], base: Path) -> list[Recorded] | None:
    """The cached DVC outputs that the local paths (relative to `base`) name, hold, or lie inside, each with
    the hash DVC recorded; None outside a DVC repo. An output DVC has not recorded yet (never run) is left
    out: its files are fingerprinted by content, as untracked files are."""
    root = dvc_root(base)
    if root is None:
        return None
    outputs, wdirs = stage_outputs(root)
    stages = read_lock(root, wdirs)
    found: list[Recorded] = []
    for path in dict.fromkeys(paths):
        want = _in_repo(root, base, path)
        if want is None:
            continue
        parts = PurePosixPath(want).parts
        for out in (o for o in outputs if o.cached):
            out_parts = PurePosixPath(out.path).parts
            under = out_parts[:len(parts)] == parts
            inside = not under and out.is_dir and parts[:len(out_parts)] == out_parts
            if not (under or inside):
                continue
            entry = _recorded_entry(root, out, stages)
            if entry is None:
                continue
            local = path if inside else Path(os.path.relpath(root / out.path, base)).as_posix()
            found.append(Recorded(path, local, out.path, out.is_dir, entry, inside))
    return found


def _recorded_entry(root: Path, out: Tracked, stages: dict[str, Any]) -> dict[str, Any] | None:
    """The lock's (or the `.dvc` file's) entry for an output: only its hash fields, None when not recorded."""
    if out.stage.endswith(".dvc"):
        entries = _dvc_file_outs(root, out.stage)
    else:
        outs = stages.get(out.stage, {}).get("outs") if isinstance(stages.get(out.stage), dict) else None
        entries = [e for e in outs if isinstance(e, dict)] if isinstance(outs, list) else []
    for entry in entries:
        if isinstance(entry.get("path"), str) and posixpath.normpath(str(entry["path"])) == out.path \
                and isinstance(entry.get("md5"), str):
            return {k: entry[k] for k in HASH_FIELDS if k in entry}
    return None


HASH_FIELDS = ("md5", "size", "nfiles", "isexec", "hash")


def _dvc_file_outs(root: Path, address: str) -> list[dict[str, Any]]:
    """The outs of a `.dvc` file, their paths made relative to the DVC root."""
    from mlci.core import yamlsafe

    where = posixpath.dirname(address)
    try:
        data = yamlsafe.load((root / address).read_text(encoding="utf-8", errors="replace")) or {}
    except (OSError, yamlsafe.YamlProblem):
        return []  # DVC itself read it a moment ago; what it cannot be read for here is content-keyed
    outs = data.get("outs") if isinstance(data, dict) else None
    return [{**e, "path": posixpath.normpath(posixpath.join(where, str(e.get("path"))))}
            for e in outs if isinstance(e, dict)] if isinstance(outs, list) else []
