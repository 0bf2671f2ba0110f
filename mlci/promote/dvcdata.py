"""The promoted model version's DVC objects, copied from the source DVC remote to the target environment's
(`promote.environments.NAME.dvc_remote`), so that `dvc pull` works there for that version.

DVC moves the bytes (its CLI knows every remote type and its credentials), in a private checkout of the promoted
revision (promote/dvcsnapshot.py) that shares the workspace's DVC cache: `dvc status -c` asks the target what it
lacks, `dvc fetch` brings only that from the source into the cache, `dvc push` sends it, and a last
`dvc status -c` proves the target has it all. By default the model's outputs travel (image.artifacts and the
metrics files dvc.yaml declares); datasets only when named (`dvc_outputs`), one by one."""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from mlci.core import jsonsafe
from mlci.core.errors import ConfigError, EnvironmentProblem
from mlci.core.log import logger
from mlci.dvcstage.dvc import dvc, last_error
from mlci.dvcstage.fetch import Recorded, needed, recorded_outputs
from mlci.image.settings import ImageSettings
from mlci.promote.dvcsnapshot import Snapshot, snapshot
from mlci.promote.settings import Environment

OID = re.compile(r"[0-9a-f]{32}(?:\.dir)?")
# What `dvc fetch` prints about an object it could not get (dvc_data's transfer), and the warning's list of those
# that are nowhere (dvc/repo/fetch.py).
_TRANSFER = re.compile(r"^ERROR: (failed to transfer '.*)$", re.MULTILINE)
_ABSENT = re.compile(r"^(?:name: .*, )?md5: ([0-9a-f]{32}(?:\.dir)?)$", re.MULTILINE)
ON_TARGET = "deleted"  # `dvc status -c`: on the remote only (not in the local cache); in sync ones are not listed


@dataclass(frozen=True)
class DataCopy:
    """What one copy did. Objects are DVC cache objects (a file's content, a directory's `.dir` manifest), each
    counted once however many paths share it."""

    revision: str  # the full git sha copied for
    source: str  # DVC remote names
    target: str
    outputs: tuple[str, ...]  # the DVC outputs copied (relative to the repo directory given)
    copied: int  # objects sent to the target
    present: int  # objects the target already had
    bytes: int  # bytes sent

    def as_dict(self) -> dict[str, Any]:
        """For --json and the promotion record."""
        return {"revision": self.revision, "source": self.source, "target": self.target,
                "outputs": list(self.outputs), "copied": self.copied, "present": self.present, "bytes": self.bytes}


def model_outputs(repo: Path, image: ImageSettings, revision: str) -> list[str]:
    """The DVC outputs that make up the model at `revision`: those image.artifacts name, hold or lie in, and the
    cached metrics files dvc.yaml declares; relative to `repo`. Artifacts kept in git have no DVC objects."""
    with snapshot(repo, revision) as snap:
        return snapshot_outputs(snap, image)


def copy_model_data(repo: Path, revision: str, outputs: Sequence[str], target_remote: str, *,
                    source_remote: str | None = None, environment: str | None = None) -> DataCopy:
    """Copy the DVC objects of `outputs` (paths relative to `repo`: outputs, directories holding outputs, paths
    inside a directory output, globs) as recorded at `revision`, from `source_remote` (default: DVC's default
    remote) to `target_remote`; `environment` names the promote keys in messages. Exit 2 for an unknown remote or
    a path no DVC output covers, 3 when a remote cannot be reached or the source lacks an object."""
    with snapshot(repo, revision) as snap:
        return _copy(snap, outputs, target_remote, source_remote, environment)


def copy_environment_data(repo: Path, image: ImageSettings, name: str, environment: Environment, revision: str,
                          *, source_remote: str | None = None) -> DataCopy | None:
    """The promotion's step: the model's outputs and the environment's opt-in `dvc_outputs` copied to its
    `dvc_remote` (one checkout for both); None when the environment names no DVC remote."""
    if environment.dvc_remote is None:
        return None
    with snapshot(repo, revision) as snap:
        outputs = [*snapshot_outputs(snap, image), *environment.dvc_outputs]
        return _copy(snap, outputs, environment.dvc_remote, source_remote, name)


def snapshot_outputs(snap: Snapshot, image: ImageSettings) -> list[str]:
    """model_outputs() in a checkout already made."""
    from mlci.image.entries import Collector
    from mlci.image.labels import metrics_files

    artifacts = [p for p in (_from_base(snap, a) for a in image.artifacts) if p is not None]
    metrics = metrics_files(snap.root, Collector(snap.root, dvc_cache=lambda: snap.cache))
    found = needed([*artifacts, *metrics], snap.info.outputs, snap.root)
    return [to_base(snap, path) for path in _whole_outputs(snap, found)]


def _copy(snap: Snapshot, outputs: Sequence[str], target: str, source: str | None,
          environment: str | None) -> DataCopy:
    at = f"promote.environments.{environment}" if environment else "promote.environments.NAME"
    source = _remotes(snap.info.remotes, snap.info.default_remote, snap.workspace, target, source, at)
    records = output_records(snap, outputs, f"{at}.dvc_outputs")
    targets = list(dict.fromkeys(r.output for r in records))
    logger.info("mlci: DVC objects of %s at %s: from DVC remote '%s' to '%s'", ", ".join(targets) or "nothing",
                snap.sha[:12], source, target)
    plan = _Plan(snap, records)
    before = _status(snap, target, targets) if targets else {}
    pending = [t for t in targets if not plan.complete(t, before)]
    copied: set[str] = set()
    if pending:
        why = fetch(snap, source, pending)
        plan = _Plan(snap, records)
        plan.check_manifests(pending, source, target, why)
        state = _status(snap, target, pending)
        plan.check_missing(state, source, target, why)
        lacking = {path for path, value in state.items() if value != ON_TARGET}
        copied = {plan.paths[path] for path in lacking if path in plan.paths}
        if lacking:  # the push is DVC's decision on DVC's own list, whatever the counting makes of it
            push_outputs(snap, target, pending)
            _verify(snap, plan, target, pending)
    sent = sum(plan.size(oid) for oid in copied)
    result = DataCopy(snap.sha, source, target, tuple(to_base(snap, t) for t in targets), len(copied),
                      len(plan.all_oids() - copied), sent)
    logger.info("mlci: DVC remote '%s': %d object(s) copied (%d bytes), %d already there", target, result.copied,
                result.bytes, result.present)
    return result


def check_remotes(repo: Path, name: str, environment: Environment, *, source_remote: str | None = None) -> None:
    """Before anything is promoted: the environment's DVC remote and the source exist in the DVC config (every
    level, as DVC merges them; read in-process, no checkout). Exit 2 naming the key."""
    if environment.dvc_remote is None:
        return
    from dvc.config import Config
    from dvc.exceptions import DvcException

    from mlci.core import log
    from mlci.dvcstage.files import dvc_root

    workspace = dvc_root(repo)
    if workspace is None:
        raise ConfigError([f"promote.environments.{name}.dvc_remote: {repo} is not inside a DVC repository"])
    log.route_libraries()  # DVC's import gave its logger console handlers of its own
    try:
        config = Config(dvc_dir=str(workspace / ".dvc"))
    except DvcException as exc:
        raise ConfigError([f"{workspace}: DVC cannot read its config: {exc}"]) from None
    _remotes(tuple(config["remote"]), config["core"].get("remote"), workspace, environment.dvc_remote,
             source_remote, f"promote.environments.{name}")


def _remotes(known: Sequence[str], default: str | None, workspace: Path, target: str, source: str | None,
             at: str) -> str:
    """The source remote's name, after both are checked against the DVC config (exit 2 naming the key)."""
    defined = f"defined: {', '.join(known)}" if known else "none is defined"
    if target not in known:
        raise ConfigError([f"{at}.dvc_remote: DVC remote {target!r} is not in the DVC config of {workspace} "
                           f"({defined}; add it with `dvc remote add`)"])
    chosen = source or default
    if chosen is None:
        raise ConfigError(["no source DVC remote to copy from: set train.remote, or DVC's default remote "
                           "(`dvc remote default NAME`)"])
    if chosen not in known:
        raise ConfigError([f"train.remote: DVC remote {chosen!r} is not in the DVC config of {workspace} "
                           f"({defined})"])
    return chosen


def output_records(snap: Snapshot, outputs: Sequence[str], key: str) -> list[Recorded]:
    """What DVC recorded at the revision for each whole output the paths name (exit 2 for a path none covers)."""
    found: list[str] = []
    for path in outputs:
        rel = _from_base(snap, path)
        covered = needed([rel], snap.info.outputs, snap.root) if rel is not None else []
        if not covered:
            raise ConfigError([f"{key}: {path!r} is not a cached DVC output at {snap.sha[:12]} (nor under or inside "
                               "one); name an output of dvc.yaml or a .dvc file"])
        found.extend(covered)
    wholes = _whole_outputs(snap, found)
    records = [r for r in recorded_outputs(wholes, snap.root) or [] if not r.inside]
    unrecorded = sorted(set(wholes) - {r.output for r in records})
    if unrecorded:
        raise ConfigError([f"{', '.join(unrecorded)}: no hash recorded at {snap.sha[:12]} (dvc.lock or the .dvc file "
                           "lacks it: run the pipeline, commit dvc.lock, build and promote again)"])
    return records


def _whole_outputs(snap: Snapshot, paths: Iterable[str]) -> list[str]:
    """Each path as the whole output it is or lies in. DVC takes a directory's `.dir` manifest on a remote as
    proof that all its files are there (it uploads the manifest last): pushing one file of a directory would
    make DVC skip the rest of that directory forever after, on that remote."""
    outputs = [o for o in snap.info.outputs if o.cached]
    wholes = []
    for path in paths:
        parts = PurePosixPath(path).parts
        holder = next((o.path for o in outputs if o.is_dir and parts[:len(PurePosixPath(o.path).parts)]
                       == PurePosixPath(o.path).parts), path)
        wholes.append(holder)
    return list(dict.fromkeys(wholes))


def _from_base(snap: Snapshot, path: str) -> str | None:
    """A path relative to the repo directory given, relative to the checkout's DVC root (None: it leaves it)."""
    if os.path.isabs(path):
        return None
    rel = Path(os.path.relpath(os.path.normpath(snap.base / path), snap.root)).as_posix()
    return None if rel == ".." or rel.startswith("../") else rel


def to_base(snap: Snapshot, path: str) -> str:
    """A path relative to the checkout's DVC root, relative to the repo directory given (the user's names)."""
    return Path(os.path.relpath(snap.root / path, snap.base)).as_posix()


@dataclass
class _Plan:
    """The objects of each output at the revision: from dvc.lock, and from the `.dir` manifests in the cache."""

    snap: Snapshot
    records: list[Recorded]
    paths: dict[str, str] = field(default_factory=dict)  # `dvc status` key (a path) -> its object
    sizes: dict[str, int] = field(default_factory=dict)
    legacy: dict[str, bool] = field(default_factory=dict)  # recorded by DVC 2 (`cache/xx/...`, not files/md5)
    unlisted: set[str] = field(default_factory=set)  # directory outputs whose manifest is not in the cache

    def __post_init__(self) -> None:
        for record in self.records:
            oid = str(record.recorded.get("md5", ""))
            if not OID.fullmatch(oid):
                raise ConfigError([f"{record.output}: the md5 recorded for it at {self.snap.sha[:12]} is not one "
                                   f"({oid[:40]!r})"])
            legacy = record.recorded.get("hash") != "md5"
            self._add(record.output, oid, legacy, record.recorded.get("size"))
            if record.is_dir:
                entries = self._manifest(record.output, oid, legacy)
                if entries is None:
                    self.unlisted.add(record.output)
                for relpath, entry in entries or ():
                    self._add(f"{record.output}/{relpath}", entry, legacy, None)

    def _add(self, path: str, oid: str, legacy: bool, size: Any) -> None:
        self.paths[path] = oid
        self.legacy[oid] = legacy
        if isinstance(size, int) and not oid.endswith(".dir"):
            self.sizes[oid] = size

    def object_path(self, oid: str) -> Path:
        where = self.snap.cache if self.legacy.get(oid) else self.snap.cache / "files" / "md5"
        return where / oid[:2] / oid[2:]

    def _manifest(self, output: str, oid: str, legacy: bool) -> list[tuple[str, str]] | None:
        self.legacy[oid] = legacy
        path = self.object_path(oid)
        try:
            data = jsonsafe.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise EnvironmentProblem(f"{output}: its directory manifest {path} in the DVC cache cannot be read "
                                     f"({exc.__class__.__name__}); remove it and run again") from None
        entries = data if isinstance(data, list) else []
        return [(str(e["relpath"]), str(e["md5"])) for e in entries if isinstance(e, dict)
                and isinstance(e.get("relpath"), str) and isinstance(e.get("md5"), str) and OID.fullmatch(e["md5"])]

    def size(self, oid: str) -> int:
        if oid not in self.sizes:
            try:
                self.sizes[oid] = self.object_path(oid).stat().st_size
            except OSError:
                self.sizes[oid] = 0
        return self.sizes[oid]

    def all_oids(self) -> set[str]:
        return set(self.paths.values())

    def keys(self, output: str, state: Mapping[str, str]) -> dict[str, str]:
        """The status entries of one output (itself and the files of a directory)."""
        return {k: v for k, v in state.items() if k == output or k.startswith(f"{output}/")}

    def complete(self, output: str, state: Mapping[str, str]) -> bool:
        """Whether `dvc status -c` shows the target holding the whole output (a directory needs its manifest in
        the cache: without it DVC cannot tell)."""
        return output not in self.unlisted and all(v == ON_TARGET for v in self.keys(output, state).values())

    def check_manifests(self, outputs: Sequence[str], source: str, target: str, why: str | None) -> None:
        """Exit 3 for a directory output whose manifest the fetch did not bring (DVC leaves it out when any of
        the directory's files is missing, and calls a missing manifest a warning)."""
        for output in outputs:
            if output in self.unlisted:
                raise _missing(self.snap, output, source, target, why)

    def check_missing(self, state: Mapping[str, str], source: str, target: str, why: str | None) -> None:
        """Exit 3 for an object neither in the cache nor on the target: the source did not give it."""
        for record in self.records:
            lost = sorted({self.paths.get(k, k) for k, v in self.keys(record.output, state).items()
                           if v == "missing"})
            if lost:
                raise _missing(self.snap, record.output, source, target, why, lost)


def _missing(snap: Snapshot, output: str, source: str, target: str, why: str | None, lost: Sequence[str] = ()
             ) -> EnvironmentProblem:
    what = f"{len(lost)} of its DVC objects (md5 {lost[0]}{', ...' if len(lost) > 1 else ''})" if lost else \
        "all of its DVC objects"
    return EnvironmentProblem(
        f"{to_base(snap, output)} at {snap.sha[:12]}: DVC remote '{source}' did not provide {what}, and DVC remote "
        f"'{target}' does not have them either ({why or 'they are not there'}); push them from where the model was "
        f"trained (`dvc push -r {source}`)")


def _status(snap: Snapshot, remote: str, targets: Sequence[str]) -> dict[str, str]:
    """`dvc status -c --json` against `remote`: path -> new (cache only), deleted (remote only), missing (neither);
    a path in both is not listed. Exit 3 when the remote cannot be reached."""
    result = dvc(snap.root, "status", "--cloud", f"--remote={remote}", "--json", "--", *targets)
    if result.returncode != 0:
        raise EnvironmentProblem(f"cannot reach DVC remote '{remote}': {_dvc_said(result)}")
    try:
        data = jsonsafe.loads(result.stdout.strip() or "{}")
    except ValueError:
        raise EnvironmentProblem(f"`dvc status -c -r {remote}` printed no JSON: {_dvc_said(result)}") from None
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def fetch(snap: Snapshot, source: str, targets: Sequence[str]) -> str | None:
    """`dvc fetch` from the source into the cache; what DVC said went wrong, if anything (what is missing is judged
    from the cache and the target after: DVC exits 0 when an object is simply not there)."""
    result = dvc(snap.root, "fetch", f"--remote={source}", "--", *targets, stream=True)
    output = f"{result.stdout}\n{result.stderr}"
    failed = _TRANSFER.search(output)
    if failed:
        return failed[1]
    absent = _ABSENT.findall(output) if "Missing cache files:" in output else []
    if absent:
        return f"DVC found no {', '.join(absent[:3])}{', ...' if len(absent) > 3 else ''} there"
    return _dvc_said(result) if result.returncode != 0 else None


def push_outputs(snap: Snapshot, target: str, targets: Sequence[str]) -> None:
    """`dvc push` of the outputs to `target` (DVC sends what it lacks, each directory's manifest last); exit 3."""
    result = dvc(snap.root, "push", f"--remote={target}", "--", *targets, stream=True)
    if result.returncode != 0:
        raise EnvironmentProblem(f"cannot push to DVC remote '{target}': {_dvc_said(result)}")


def _verify(snap: Snapshot, plan: _Plan, target: str, targets: Sequence[str]) -> None:
    """After the push, `dvc status -c` must list nothing the target lacks."""
    state = _status(snap, target, targets)
    lacking = sorted(k for k, v in state.items() if v != ON_TARGET)
    if lacking:
        raise EnvironmentProblem(f"DVC remote '{target}' still lacks {len(lacking)} object(s) after `dvc push` "
                                 f"(first: {lacking[0]}, md5 {plan.paths.get(lacking[0], '?')})")


def _dvc_said(result: Any) -> str:
    return last_error(result).removeprefix("ERROR: ").strip()
