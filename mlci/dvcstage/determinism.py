"""Prove a pipeline deterministic: re-run every stage forced in a scratch copy and compare output hashes."""
from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlci.core.errors import PipelineFailed
from mlci.core.scratch import scratch_dir
from mlci.dvcstage import lock
from mlci.dvcstage.dvc import RepoInfo, dvc, last_error

# Files at least this large are hard-linked into the scratch copy, not copied (datasets, weights).
LINK_THRESHOLD = 1 << 20
# Written in place by DVC or git: always copied, never hard-linked, so the workspace is never touched.
_ALWAYS_COPY = {"dvc.lock", "dvc.yaml", ".gitignore", "params.yaml"}
_SKIP_DIRS = {".dvc/cache", ".dvc/tmp"}


@dataclass(frozen=True)
class Difference:
    """An output whose forced re-run gave other bytes than the workspace run."""

    stage: str
    path: str
    expected: str
    got: str


@dataclass(frozen=True)
class Proof:
    """What a forced re-run showed: the outputs whose hashes were compared, and those that differed."""

    compared: tuple[str, ...]
    differences: tuple[Difference, ...]


def check(root: Path, targets: Sequence[str], tail_lines: int, info: RepoInfo) -> Proof:
    """Re-run the pipeline forced in a scratch copy of `root` and compare its outputs' hashes with the lock's.
    Outputs the re-run needs are kept: a frozen stage's (verified, never made) and persistent ones, which
    are real copies (their stage writes them in place) and not compared."""
    recorded = lock.read_lock(root, info.wdirs)
    kept = {o.path for o in info.outputs if o.frozen or o.persist}
    persistent = frozenset(o.path for o in info.outputs if o.persist)
    scratch_parent = root / ".dvc" / "tmp"
    scratch_parent.mkdir(parents=True, exist_ok=True)
    with scratch_dir("mlci-determinism-", scratch_parent) as scratch:
        outputs = {o.path for o in lock.outputs(recorded)} | {o.path for o in info.outputs if o.stage in info.wdirs}
        scratch_copy(root, scratch / "ws", skip=outputs - kept, copied=persistent)
        result = dvc(scratch / "ws", "repro", "--force", "--no-commit", "--no-run-cache", "--", *targets)
        if result.returncode != 0:
            raise PipelineFailed(
                f"determinism re-run failed: {last_error(result)}\n{result.tail(tail_lines)}"
            )
        rerun = lock.read_lock(scratch / "ws", info.wdirs)
    before = {(o.stage, o.path) for o in lock.outputs(recorded) if o.path not in persistent}
    compared = tuple(sorted(o.path for o in lock.outputs(rerun) if (o.stage, o.path) in before))
    return Proof(compared, tuple(d for d in compare(recorded, rerun) if d.path not in persistent))


def unprovable(info: RepoInfo) -> list[str]:
    """Warnings for the outputs a forced re-run cannot judge: persistent ones start from their last content."""
    return [f"stage '{o.stage}': output {o.path} has `persist: true` (its stage starts from its last content), so "
            "a re-run cannot show it deterministic: not compared" for o in info.outputs if o.persist]


def compare(recorded: Mapping[str, Any], rerun: Mapping[str, Any]) -> list[Difference]:
    """Outputs whose hash in the re-run lock differs from the recorded lock."""
    before = {(o.stage, o.path): o.md5 for o in lock.outputs(recorded)}
    return [
        Difference(o.stage, o.path, before[(o.stage, o.path)], o.md5)
        for o in lock.outputs(rerun)
        if (o.stage, o.path) in before and before[(o.stage, o.path)] != o.md5
    ]


def scratch_copy(src: Path, dst: Path, skip: set[str], copied: frozenset[str] = frozenset()) -> None:
    """Copy a workspace cheaply: large data files are hard-linked, outputs and DVC's cache are skipped;
    the files in (or under) `copied` are real copies, whatever their size."""
    skip_paths = {os.path.normpath(p) for p in skip} | _SKIP_DIRS
    copy_paths = {os.path.normpath(p) for p in copied}
    for dirpath, dirnames, filenames in os.walk(src):
        rel_dir = os.path.relpath(dirpath, src)
        target_dir = dst / rel_dir
        target_dir.mkdir(parents=True, exist_ok=True)
        dirnames[:] = [d for d in dirnames if os.path.normpath(os.path.join(rel_dir, d)) not in skip_paths]
        for name in filenames:
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if rel in skip_paths:
                continue
            private = any(rel == p or rel.startswith(p + os.sep) for p in copy_paths)
            _place(Path(dirpath) / name, target_dir / name, linkable=not private and _linkable(rel, name))


def _linkable(rel: str, name: str) -> bool:
    """Whether the file is safe to share by hard link: never written in place by DVC or git."""
    parts = rel.split(os.sep)
    if parts[0] == ".git":
        return len(parts) > 2 and parts[1] == "objects"
    return parts[0] != ".dvc" and name not in _ALWAYS_COPY and not name.endswith(".dvc")


def _place(source: Path, target: Path, linkable: bool) -> None:
    if source.is_symlink():
        os.symlink(os.readlink(source), target)
        return
    if linkable and source.stat().st_size >= LINK_THRESHOLD:
        try:
            os.link(source, target)
            return
        except OSError:
            pass  # another filesystem or no permission: fall back to a copy
    shutil.copy2(source, target)
