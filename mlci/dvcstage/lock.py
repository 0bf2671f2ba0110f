"""dvc.lock: reading recorded hashes, finding a stale lock before running, and diffing two locks."""
from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlci.core import yamlsafe
from mlci.core.errors import ConfigError

LOCK_NAME = "dvc.lock"


@dataclass(frozen=True)
class Output:
    """One stage output as dvc.lock records it."""

    stage: str
    path: str
    md5: str


def read_lock(root: Path, wdirs: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The `stages` of the repo's dvc.lock files ({} when there is none yet): the root's, and, for each
    nested dvc.yaml that `wdirs` names, the lock beside it. Keyed by the stage's address from the root, as
    `dvc status` and `dvc repro` name it (`name`, `sub/dvc.yaml:name`); each dep and out path made relative
    to the root from the stage's wdir (`wdirs`: address -> wdir; default: the lock's directory)."""
    wdirs = wdirs or {}
    dirs = dict.fromkeys(["", *(a.rsplit(":", 1)[0].rpartition("/")[0] for a in wdirs if ":" in a)])
    stages: dict[str, Any] = {}
    for where in dirs:
        for name, stage in _stages(root, where).items():
            address = f"{where}/dvc.yaml:{name}" if where else name
            stages[address] = _rebased(stage, wdirs.get(address, where or "."))
    return stages


def _stages(root: Path, where: str) -> dict[str, Any]:
    shown = f"{where}/{LOCK_NAME}" if where else LOCK_NAME
    path = root / shown
    if not path.is_file():
        return {}
    try:
        data = yamlsafe.load(path.read_text(encoding="utf-8", errors="replace")) or {}
    except yamlsafe.YamlProblem as exc:
        raise ConfigError([f"{shown}:{exc.line}: {exc.message}; regenerate it with `dvc repro`"]) from None
    stages = data.get("stages", {}) if isinstance(data, dict) else {}
    return {str(k): v for k, v in stages.items() if isinstance(v, dict)} if isinstance(stages, dict) else {}


def _rebased(stage: dict[str, Any], wdir: str) -> dict[str, Any]:
    """A lock stage whose deps and outs paths are relative to the repo root instead of the stage's wdir."""
    if wdir in ("", "."):
        return stage
    rebased = dict(stage)
    for kind in ("deps", "outs"):
        if isinstance(stage.get(kind), list):
            rebased[kind] = [{**e, "path": posixpath.normpath(posixpath.join(wdir, e["path"]))}
                             if isinstance(e, Mapping) and isinstance(e.get("path"), str) else e
                             for e in stage[kind]]
    return rebased


def outputs(stages: Mapping[str, Any]) -> list[Output]:
    """Every output recorded in a lock, in stage order."""
    found: list[Output] = []
    for name, stage in stages.items():
        for out in _entries(stage, "outs"):
            found.append(Output(name, str(out.get("path")), _hash(out)))
    return found


def _entries(stage: Mapping[str, Any], kind: str) -> list[Mapping[str, Any]]:
    """A stage's `deps` or `outs` entries (a hand-edited lock may hold anything else: it is skipped)."""
    entries = stage.get(kind) if isinstance(stage, Mapping) else None
    return [e for e in entries if isinstance(e, Mapping)] if isinstance(entries, list) else []


def _hash(entry: Mapping[str, Any]) -> str:
    return str(entry.get("md5") or entry.get("etag") or entry.get("checksum") or "")


def stale_reasons(dvc_status: Mapping[str, Any], stages: Mapping[str, Any], root: Path | None = None) -> list[str]:
    """Why the committed dvc.lock does not match the committed deps, params and commands.

    Missing files are not staleness (a fresh CI clone has no outputs): only modified or new deps and
    params, changed commands, stages absent from the lock, and a lock whose stages disagree with each
    other about a file (an upstream stage re-run without its downstream stages). With the workspace `root`,
    a directory dep that DVC calls modified because outputs recorded under it are missing (a `models/`
    that holds only DVC's .gitignore) is not stale either: their stages make them, and the lock-changed
    gate judges what comes out.
    """
    absent = [o.path for o in outputs(stages) if root is not None and not os.path.lexists(root / o.path)]
    reasons: list[str] = []
    for name, entries in dvc_status.items():
        if name.endswith(".dvc"):
            continue  # `dvc add`ed data: not a pipeline stage
        if name not in stages:
            reasons.append(f"stage '{name}': not recorded in {LOCK_NAME}")
            continue
        for entry in entries:
            if entry == "changed command":
                reasons.append(f"stage '{name}': command changed since {LOCK_NAME} was written")
            elif isinstance(entry, dict):
                reasons.extend(_changed_deps(name, entry.get("changed deps", {}), absent))
    reasons.extend(_inconsistencies(stages))
    return reasons


def _changed_deps(stage: str, deps: Mapping[str, Any], absent: list[str]) -> list[str]:
    reasons = []
    for path, change in deps.items():
        if isinstance(change, dict):  # a params file: {param: "modified"|"new"|"deleted"}
            for param, how in change.items():
                reasons.append(f"stage '{stage}': param {param} in {path} {how} since {LOCK_NAME} was written")
        elif change == "modified" and any(out.startswith(f"{path.rstrip('/')}/") for out in absent):
            continue  # a directory whose recorded outputs are missing: made again by their stages
        elif change != "deleted":
            reasons.append(f"stage '{stage}': dependency {path} {change} since {LOCK_NAME} was written")
    return reasons


def _inconsistencies(stages: Mapping[str, Any]) -> list[str]:
    produced = {o.path: o for o in outputs(stages)}
    reasons = []
    for name, stage in stages.items():
        for dep in _entries(stage, "deps"):
            out = produced.get(str(dep.get("path")))
            if out is not None and out.stage != name and _hash(dep) != out.md5:
                reasons.append(
                    f"stage '{name}': dependency {out.path} was recorded before stage '{out.stage}' last "
                    f"changed it (re-run the pipeline, not just '{out.stage}')"
                )
    return reasons


def changed_outputs(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """The differences between two locks, one line each (stage entries, output hashes)."""
    lines = []
    for name in sorted(set(before) | set(after)):
        if name not in before:
            lines.append(f"stage '{name}': added to {LOCK_NAME}")
        elif name not in after:
            lines.append(f"stage '{name}': removed from {LOCK_NAME}")
        elif before[name] != after[name]:
            old = {o.path: o.md5 for o in outputs({name: before[name]})}
            new = {o.path: o.md5 for o in outputs({name: after[name]})}
            paths = sorted(p for p in set(old) | set(new) if old.get(p) != new.get(p))
            detail = f"outputs {', '.join(paths)} changed" if paths else "deps or params recorded differently"
            lines.append(f"stage '{name}': {detail}")
    return lines
