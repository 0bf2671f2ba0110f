"""Bring DVC-tracked datasets into the workspace before testing them (a CI job starts without them)."""
from __future__ import annotations

import glob
from pathlib import Path

from mlci.core.errors import EnvironmentProblem
from mlci.core.log import logger
from mlci.datatest.spec import Dataset
from mlci.dvcstage.dvc import dvc, last_error


def pull_missing(datasets: tuple[Dataset, ...], base: Path) -> list[str]:
    """`dvc pull` the local dataset files (and reference datasets) that are not on disk; returns them."""
    if not (base / ".dvc").is_dir():
        return []
    wanted = [p for ds in datasets for p in (ds.path, ds.reference) if p and not p.startswith("s3://")]
    missing = [p for p in dict.fromkeys(wanted)
               if not Path(p).is_absolute() and not glob.has_magic(p) and not (base / p).exists()]
    if missing:
        logger.info("mlci: pulling %s from the DVC remote", ", ".join(missing))
        result = dvc(base, "pull", *missing, stream=True)
        if result.returncode != 0:
            raise EnvironmentProblem(f"cannot pull {', '.join(missing)} with DVC: {last_error(result)}")
    return missing
