"""The YAML files DVC parses when it collects a repository, found the way DVC finds them (every directory
of the workspace, not only the root), and read within yamlsafe's bounds before DVC does; and the DVC
repository a directory belongs to (a model in a subdirectory of a monorepo, `dvc init --subdir`)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mlci.core import yamlsafe
from mlci.core.errors import ConfigError

_NOT_WALKED = frozenset({".git", ".dvc"})
_YAML = (".yaml", ".yml")


def dvc_root(start: Path) -> Path | None:
    """The DVC repository `start` is in: the nearest directory from `start` up that holds `.dvc/`, as DVC
    looks for it, but never above the git root (a DVC repo around the checkout is not this one's)."""
    start = Path(os.path.abspath(start))
    for directory in (start, *start.parents):
        if (directory / ".dvc").is_dir():
            return directory
        if (directory / ".git").exists():
            return None
    return None


def check_pipeline_files(root: Path) -> None:
    """Every dvc.yaml, dvc.lock, `.dvc` file and YAML params or vars file that DVC reads in the repo at
    `root`, in any directory, read within yamlsafe's bounds: a file nested too deeply or full of aliases is
    exit 2 naming it, not a crash, a hang or gigabytes of memory inside DVC (which mlci runs in-process too)."""
    problems: list[str] = []
    _walk(root, problems)
    if problems:
        raise ConfigError(problems)


def _walk(root: Path, problems: list[str]) -> None:
    """Read each pipeline file, walking the workspace as DVC does: .git and .dvc are not walked, nor the
    output directories that dvc.lock and `.dvc` files name (datasets of a million files)."""
    outputs: set[str] = set()
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames
                             if d not in _NOT_WALKED and os.path.normpath(os.path.join(dirpath, d)) not in outputs)
        here = Path(dirpath)
        names = [n for n in sorted(filenames) if n.endswith(".dvc")]
        if "dvc.yaml" in filenames:
            names += ["dvc.yaml", "dvc.lock", "params.yaml"]
        for name in names:
            data = _read(root, here / name, seen, problems)
            if name == "dvc.yaml":
                for extra in _referenced(data):
                    _read(root, here / extra, seen, problems)
            elif name == "dvc.lock" or name.endswith(".dvc"):
                outputs.update(os.path.normpath(os.path.join(dirpath, p)) for p in _output_paths(data, name))


def _read(root: Path, path: Path, seen: set[str], problems: list[str]) -> Any:
    """A file's data within the bounds (None when absent, unreadable or already read); problems get one line."""
    key = os.path.normpath(path)
    if key in seen or not path.is_file():
        return None
    seen.add(key)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None  # DVC says why when it reads it
    try:
        return yamlsafe.load(text)
    except yamlsafe.YamlProblem as exc:
        shown = os.path.relpath(path, root) if path.is_relative_to(root) else str(path)
        problems.append(f"{Path(shown).as_posix()}:{exc.line}: {exc.message}")
        return None


def _referenced(dvc_yaml: Any) -> list[str]:
    """The YAML files a dvc.yaml names as `vars` (its own and its stages') and as params files, relative to
    its directory; templated names (`${...}`) are left to DVC."""
    if not isinstance(dvc_yaml, dict):
        return []
    found = _vars_files(dvc_yaml.get("vars"), ".")
    stages = dvc_yaml.get("stages")
    for stage in stages.values() if isinstance(stages, dict) else ():
        body = stage.get("do", stage) if isinstance(stage, dict) else None
        if not isinstance(body, dict):
            continue
        wdir = str(body["wdir"]) if isinstance(body.get("wdir"), str) else "."
        found += _vars_files(stage.get("vars"), wdir) + _vars_files(body.get("vars"), wdir)
        params = body.get("params")
        for item in params if isinstance(params, list) else ():
            if isinstance(item, dict):
                found += [os.path.join(wdir, name) for name in item if isinstance(name, str)]
    return [name for name in dict.fromkeys(found) if name.endswith(_YAML) and "${" not in name]


def _vars_files(entries: Any, wdir: str) -> list[str]:
    """The files of a `vars` list: `file.yaml` or `file.yaml:key,...` (mappings are values, not files)."""
    names = [e.split(":", 1)[0] for e in entries if isinstance(e, str)] if isinstance(entries, list) else []
    return [os.path.join(wdir, name) for name in names]


def _output_paths(data: Any, name: str) -> list[str]:
    """The output paths a dvc.lock (per stage) or a `.dvc` file records, relative to its directory."""
    if not isinstance(data, dict):
        return []
    entries: list[Any] = []
    if name == "dvc.lock":
        stages = data.get("stages")
        for stage in stages.values() if isinstance(stages, dict) else ():
            entries += stage["outs"] if isinstance(stage, dict) and isinstance(stage.get("outs"), list) else []
    elif isinstance(data.get("outs"), list):
        entries = data["outs"]
    return [str(o["path"]) for o in entries if isinstance(o, dict) and isinstance(o.get("path"), str)]
