"""Bring DVC-tracked files into the workspace before a job uses them (a CI job starts without them):
datasets for data tests, model weights for the image."""
from __future__ import annotations

import fnmatch
import glob
import os
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

from mlci.core.errors import EnvironmentProblem
from mlci.core.log import logger
from mlci.dvcstage.dvc import Tracked, dvc, inspect, last_error
from mlci.dvcstage.files import dvc_root


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
    missing = needed(wanted, inspect(root).outputs, root)
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
