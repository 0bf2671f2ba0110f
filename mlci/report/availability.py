"""Which metrics and plot files DVC could not read, at which revision, and why.

DVC reads a revision's metrics and plots from the git tree, or, for DVC outputs (example-get-started's
`outs: [eval]`), from the local cache and else from the default remote: only the files it reads, never
the rest of an output. `dvc metrics diff --json` leaves a file it cannot read out without a word, so
mlci asks `dvc exp show` (per revision, per file, with DVC's error) and `dvc plots diff` (its `errors`).
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlci.core import jsonsafe
from mlci.dvcstage.dvc import dvc, last_error
from mlci.dvcstage.files import dvc_root

# DVC's words for a DVC output in neither the local cache nor the remote: a file of it, or its directory
NOT_STORED = "No storage files available"
NO_DIRECTORY = "DataIndexDirError"
NOT_UTF8 = "not UTF-8 text at"  # mlci's words: DVC crashes on such a file


@dataclass(frozen=True)
class Unreadable:
    """One file DVC could not read at one revision (`rev`: a commit sha, or "workspace")."""

    path: str
    rev: str
    error: str  # DVC's own "Type: message"
    not_stored: bool  # a DVC output neither in the local cache nor readable from the remote


def metrics(repo: Path, base: str, diff: Mapping[str, Any]) -> tuple[list[Unreadable], str | None]:
    """Metrics files that the workspace or `base` declares but `diff` (`dvc metrics diff --json`) has no
    value from; the second value is a problem with the check itself (None when it ran).

    `dvc exp show` lists each revision's metrics files with DVC's error for those it cannot read. It keeps
    what it once read of a commit in `.dvc/tmp/exps/cache` (and `-f` does not reach the baseline), so on a
    reused checkout a file may look fine there and still be unreadable now: the diff has the last word.
    """
    result = dvc(repo, "exp", "show", "--rev", base, "-n", "1", "--json", "--hide-queued", "--hide-failed")
    if result.returncode != 0:
        undecodable = [Unreadable(path, "workspace", f"{NOT_UTF8} byte {at}", False) for path, at in not_utf8(repo)]
        if undecodable:  # DVC crashes on such a file (its EncodingError) instead of naming it
            return undecodable, None
        return [], f"cannot check which metrics DVC could read: `dvc exp show` failed: {last_error(result)}"
    try:
        rows = jsonsafe.loads(result.stdout or "[]")
    except json.JSONDecodeError:
        return [], "cannot check which metrics DVC could read: `dvc exp show` printed no JSON"
    found: list[Unreadable] = []
    for row in rows if isinstance(rows, list) else []:
        rev = str(row.get("rev") or "") if isinstance(row, dict) else ""
        if rev not in ("workspace", base):
            continue
        side = "new" if rev == "workspace" else "old"
        if row.get("error"):
            found.append(_unreadable(f"(every metrics file: {row['error']})", rev, row["error"]))
        data = row.get("data") if isinstance(row.get("data"), dict) else {}
        files = data.get("metrics")
        for listed, entry in (files if isinstance(files, dict) else {}).items():
            path = _as_diff_names(repo, str(listed))
            if isinstance(entry, dict) and entry.get("error"):
                found.append(_unreadable(str(path), rev, entry["error"]))
            elif not _has_values(diff.get(path), side):
                found.append(Unreadable(str(path), rev, "", False))
    return found, None


def not_utf8(repo: Path) -> list[tuple[str, int]]:
    """The metrics files `repo`'s dvc.yaml declares (top-level `metrics`, stage outputs under `metrics`) whose
    workspace bytes are not UTF-8, each with the offset of its first bad byte."""
    from mlci.core import yamlsafe

    try:
        declared = yamlsafe.load((repo / "dvc.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yamlsafe.YamlProblem):
        return []
    names = _names(declared.get("metrics")) if isinstance(declared, dict) else []
    stages = declared.get("stages") if isinstance(declared, dict) else None
    for stage in stages.values() if isinstance(stages, dict) else ():
        if isinstance(stage, dict):
            names += _names(stage.get("metrics"))
    found = []
    for name in dict.fromkeys(names):
        try:
            (repo / name).read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            found.append((name, exc.start))
        except OSError:
            continue  # not there, or a directory: DVC's own message covers it
    return found


def _names(entries: Any) -> list[str]:
    """The paths of a dvc.yaml list of outputs (`- path` or `- path: {options}`)."""
    items = entries if isinstance(entries, list) else []
    return [str(next(iter(e))) if isinstance(e, dict) and e else str(e) for e in items if isinstance(e, str | dict)]


def _as_diff_names(repo: Path, path: str) -> str:
    """A file as `dvc metrics diff` names it, relative to the directory DVC runs in (`repo`, which may be a
    model's subdirectory), from the repo-root-relative name `dvc exp show` gives."""
    root = dvc_root(repo)
    if root is None or os.path.isabs(path):
        return path
    return Path(os.path.relpath(root / path, os.path.abspath(repo))).as_posix()


def _has_values(keys: Any, side: str) -> bool:
    return isinstance(keys, dict) and any(isinstance(v, dict) and v.get(side) is not None for v in keys.values())


def plots(errors: Iterable[Any]) -> list[Unreadable]:
    """The `errors` of `dvc plots diff --json` (name, rev, source, type, msg), one per file and revision."""
    found: dict[tuple[str, str], Unreadable] = {}
    for error in errors:
        if isinstance(error, dict):
            source = str(error.get("source") or error.get("name") or f"(every plot: {error.get('msg') or '?'})")
            rev = str(error.get("rev") or "workspace")
            found.setdefault((source, rev), _unreadable(source, rev, error))
    return list(found.values())


def _unreadable(path: str, rev: str, error: Any) -> Unreadable:
    if isinstance(error, dict):
        kind, message = str(error.get("type") or "Error"), str(error.get("msg") or "")
    else:
        kind, message = "Error", str(error)
    return Unreadable(path, rev, f"{kind}: {message}".strip(": "), NOT_STORED in message or kind == NO_DIRECTORY)


def default_remote(repo: Path) -> str | None:
    """The default DVC remote's name, or None when there is none."""
    result = dvc(repo, "remote", "default")
    name = result.stdout.strip()
    return name if result.returncode == 0 and name else None


def describe(items: Iterable[Unreadable], labels: Mapping[str, str], remote: Callable[[], str | None]
             ) -> list[str]:
    """One line per reason: why, what to do, and which files at which revision."""
    grouped: dict[str, dict[str, list[str]]] = {}
    for item in items:
        files = grouped.setdefault(_why(item, remote), {}).setdefault(item.rev, [])
        if item.path not in files:
            files.append(item.path)
    lines = []
    for why, by_rev in grouped.items():
        where = "; ".join(f"at {_at(rev, labels)}: " + ", ".join(p if p.startswith("(") else f"`{p}`" for p in paths)
                          for rev, paths in by_rev.items())
        lines.append(f"{why}: {where}")
    return lines


def _at(rev: str, labels: Mapping[str, str]) -> str:
    return f"{labels.get(rev, 'revision')} ({'the workspace' if rev == 'workspace' else rev[:12]})"


def _why(item: Unreadable, remote: Callable[[], str | None]) -> str:
    if item.not_stored:
        name = remote()
        where = (f"the DVC remote `{name}` has no copy or cannot be read from this job" if name else
                 "there is no default DVC remote to read them from (`dvc remote add -d`)")
        return (f"DVC outputs not in the local DVC cache, and {where} (push them from the job that trains, "
                "`dvc push`, and give this job the remote's credentials)")
    if not item.error:
        return ("DVC has no values from them now: they hold no metrics, or are DVC outputs that DVC could "
                "once read and now cannot (check the DVC remote and this job's credentials)")
    if item.error.startswith("FileNotFoundError"):
        return "missing: not committed to git at that revision and not DVC outputs"
    if item.error.startswith(NOT_UTF8):
        return f"{item.error}: metrics files are JSON, YAML or TOML in UTF-8 (DVC stops on any other byte)"
    return f"DVC cannot read them ({item.error})"
