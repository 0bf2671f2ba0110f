"""Bring DVC-tracked files into the workspace before a job uses them (a CI job starts without them):
datasets for data tests, model weights for the image."""
from __future__ import annotations

import glob
from collections.abc import Iterable
from pathlib import Path

from mlci.core.errors import EnvironmentProblem
from mlci.core.log import logger
from mlci.dvcstage import lock
from mlci.dvcstage.dvc import check_pipeline_files, dvc, last_error


def pull_missing(paths: Iterable[str], base: Path) -> list[str]:
    """`dvc pull` the local paths (relative to the DVC repo at `base`) that are not on disk; returns them."""
    if not (base / ".dvc").is_dir():
        return []
    missing = [p for p in dict.fromkeys(paths)
               if not p.startswith("s3://") and not Path(p).is_absolute() and not (base / p).exists()
               and (not glob.has_magic(p) or _tracked(base, p))]
    if missing:
        check_pipeline_files(base)
        logger.info("mlci: pulling %s from the DVC remote", ", ".join(missing))
        result = dvc(base, "pull", "--", *missing, stream=True)
        if result.returncode != 0:
            raise EnvironmentProblem(f"cannot pull {', '.join(missing)} with DVC: {last_error(result)}")
    return missing


def _tracked(base: Path, path: str) -> bool:
    """Whether a name that looks like a glob (`data[1].csv`) is itself a DVC-tracked file: a `.dvc` file
    beside it, or an output in dvc.lock (the file or a directory above it)."""
    if (base / f"{path}.dvc").is_file():
        return True
    wanted = Path(path)
    return any(wanted == Path(o.path) or Path(o.path) in wanted.parents for o in lock.outputs(lock.read_lock(base)))
