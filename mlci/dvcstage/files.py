"""The YAML files DVC parses when it collects a repository, found the way DVC finds them (every directory
of the workspace, not only the root), and read within yamlsafe's bounds before DVC does; and the DVC
repository a directory belongs to (a model in a subdirectory of a monorepo, `dvc init --subdir`)."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlci.core import yamlsafe
from mlci.core.errors import ConfigError

_NOT_WALKED = frozenset({".git", ".dvc"})
_YAML = (".yaml", ".yml")
_TEXT_FIELDS = ("path", "md5", "etag", "checksum", "hash")  # an entry's fields DVC reads as strings


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


def check_pipeline_files(root: Path) -> str | None:
    """Every dvc.yaml, dvc.lock, `.dvc` file and YAML params or vars file that DVC reads in the repo at
    `root`, in any directory, read within yamlsafe's bounds: a file nested too deeply or full of aliases is
    exit 2 naming it, not a crash, a hang or gigabytes of memory inside DVC (which mlci runs in-process too).
    Returns their fingerprint: a sha256 over each file's path and bytes (and every `.dvcignore`), of which
    DVC's index of stages and outputs is a function; None when a dvc.yaml names a file by template
    (`${...}`), which only DVC can resolve."""
    walk = _Walk()
    walk.run(root)
    if walk.problems:
        raise ConfigError(walk.problems)
    if walk.templated:
        return None
    digest = hashlib.sha256()
    for path, data in sorted(walk.texts.items()):
        digest.update(f"{os.path.relpath(path, root)}\0{len(data)}\0".encode() + data)
    return digest.hexdigest()


@dataclass
class _Walk:
    """One walk of the workspace as DVC does it: .git and .dvc are not walked, nor the output directories
    that dvc.lock and `.dvc` files name (datasets of a million files)."""

    texts: dict[str, bytes] = field(default_factory=dict)  # path -> bytes of each file read
    problems: list[str] = field(default_factory=list)
    templated: bool = False  # a dvc.yaml names a vars or params file by template

    def run(self, root: Path) -> None:
        """Read each pipeline file (and note each .dvcignore)."""
        outputs: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in _NOT_WALKED
                                 and os.path.normpath(os.path.join(dirpath, d)) not in outputs)
            here = Path(dirpath)
            if ".dvcignore" in filenames:
                self._bytes(here / ".dvcignore")
            names = [n for n in sorted(filenames) if n.endswith(".dvc")]
            if "dvc.yaml" in filenames:
                names += ["dvc.yaml", "dvc.lock", "params.yaml"]
            for name in names:
                data = self._read(root, here / name)
                if name == "dvc.yaml":
                    extras, templated = _referenced(data)
                    self.templated |= templated
                    for extra in extras:  # YAML is parsed within bounds; JSON, TOML or .py params only hashed
                        self._read(root, here / extra) if extra.endswith(_YAML) else self._bytes(here / extra)
                elif name == "dvc.lock" or name.endswith(".dvc"):
                    outputs.update(os.path.normpath(os.path.join(dirpath, p)) for p in _output_paths(data, name))
                    shown = Path(os.path.relpath(here / name, root)).as_posix()
                    self.problems += [f"{shown}: {problem}" for problem in _entry_problems(data, name)]

    def _bytes(self, path: Path) -> bytes | None:
        """A file's bytes, once (None when absent, unreadable or already read)."""
        key = os.path.normpath(path)
        if key in self.texts or not path.is_file():
            return None
        try:
            self.texts[key] = path.read_bytes()
        except OSError:
            return None  # DVC says why when it reads it
        return self.texts[key]

    def _read(self, root: Path, path: Path) -> Any:
        """A file's data within the bounds (None when absent, unreadable or already read); problems get one
        line."""
        data = self._bytes(path)
        if data is None:
            return None
        try:
            return yamlsafe.load(data.decode("utf-8", errors="replace"))
        except yamlsafe.YamlProblem as exc:
            shown = os.path.relpath(path, root) if path.is_relative_to(root) else str(path)
            self.problems.append(f"{Path(shown).as_posix()}:{exc.line}: {exc.message}")
            return None


def _referenced(dvc_yaml: Any) -> tuple[list[str], bool]:
    """The files a dvc.yaml names as `vars` (its own and its stages') and as params files, relative to its
    directory, and whether any name (or a stage's wdir) is a template (`${...}`): those are left to DVC."""
    if not isinstance(dvc_yaml, dict):
        return [], False
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
    names = list(dict.fromkeys(found))
    return [name for name in names if "${" not in name], any("${" in name for name in names)


def _vars_files(entries: Any, wdir: str) -> list[str]:
    """The files of a `vars` list: `file.yaml` or `file.yaml:key,...` (mappings are values, not files)."""
    names = [e.split(":", 1)[0] for e in entries if isinstance(e, str)] if isinstance(entries, list) else []
    return [os.path.join(wdir, name) for name in names]


def _entries(data: Any, name: str) -> list[tuple[str, Any]]:
    """The deps and outs entries of a dvc.lock (per stage) or a `.dvc` file, each with where it is."""
    if not isinstance(data, dict):
        return []
    found: list[tuple[str, Any]] = []
    holders = ({f"stages.{stage}": body for stage, body in data["stages"].items()}
               if name == "dvc.lock" and isinstance(data.get("stages"), dict) else {"": data} if name != "dvc.lock"
               else {})
    for where, body in holders.items():
        for kind in ("deps", "outs"):
            items = body.get(kind) if isinstance(body, dict) else None
            for index, item in enumerate(items if isinstance(items, list) else ()):
                found.append((f"{where}.{kind}[{index}]".lstrip("."), item))
    return found


def _entry_problems(data: Any, name: str) -> list[str]:
    """A hash or path that YAML read as a number (an md5 of digits only, unquoted by hand or by a merge tool)
    makes DVC crash on the file; name it instead."""
    return [f"{where}.{key}: {item[key]!r} is not text (YAML reads it as {_kind(item[key])}): quote it"
            for where, item in _entries(data, name) if isinstance(item, dict)
            for key in _TEXT_FIELDS if key in item and not isinstance(item[key], str)]


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    return "a number" if isinstance(value, int | float) else f"a {type(value).__name__}"


def _output_paths(data: Any, name: str) -> list[str]:
    """The output paths a dvc.lock (per stage) or a `.dvc` file records, relative to its directory."""
    return [str(item["path"]) for where, item in _entries(data, name)
            if ".outs[" in f".{where}" and isinstance(item, dict) and isinstance(item.get("path"), str)]
