"""The model's DVC objects in a bundle: gathered on the connected side (the promoted revision's model outputs, as
promote/dvcdata.py chooses them; fetched into the DVC cache when missing; each object read once, its md5 checked
against its name and its sha256 computed in the same read), and, inside, put into the environment's DVC remote
so that `dvc pull` of that revision works there.

The transfers are DVC's CLI (`dvc fetch`, `dvc push`) in a private checkout of the revision (promote/dvcsnapshot.py).
Two things are asked of DVC's remote object database in-process instead (`repo.cloud.get_remote_odb`, the one DVC's
commands use): whether a remote holds given object ids (`oids_exist`: exact, one answer per id; `dvc status -c`
takes a directory's `.dir` manifest on a remote for all of its files, and only warns about a `.dir` it cannot
find), and a directory's lone `.dir` manifest (`dvc fetch` of an output brings all of its files, when an
incremental bundle needs only the list). docs/airgap.md tells the whole story."""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from mlci.bundle.manifest import dvc_path
from mlci.core import jsonsafe
from mlci.core.errors import ConfigError, EnvironmentProblem, MlciError, UsageError
from mlci.core.log import logger, one_line

if TYPE_CHECKING:
    from mlci.bundle.manifest import DvcData
    from mlci.dvcstage.fetch import Recorded
    from mlci.image.settings import ImageSettings
    from mlci.promote.dvcsnapshot import Snapshot
    from mlci.promote.settings import Environment

CHUNK = 1 << 20
MAX_DIR_MANIFEST = 64 << 20  # a `.dir` of ~600,000 files; json.loads makes ~10x its size in objects
_FILE_OID = re.compile(r"[0-9a-f]{32}")
_REVISION = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
_TARGETS_PER_FETCH = 256  # `dvc fetch` targets per call (files inside a directory output), far below ARG_MAX
_CACHE_MODE = 0o444  # DVC's own for cache files (dvc_data LocalHashFileDB.CACHE_MODE)





def object_path(cache: Path, oid: str) -> Path:
    """Where DVC 3 keeps object `oid` in the cache directory `cache` (and on a remote, below its URL)."""
    return cache / "files" / "md5" / oid[:2] / oid[2:]


@dataclass(frozen=True)
class ObjectFile:
    """One DVC object ready to be carried: where it is (the DVC cache), its size, md5 checked, sha256."""

    oid: str
    path: Path
    size: int
    sha256: str


def dir_entries(data: bytes) -> list[tuple[str, str]]:
    """A directory's `.dir` manifest as (relpath, md5) pairs, strictly: DVC 3 writes a JSON list of objects, each
    with the file's `relpath` (POSIX, relative, inside the directory; unique) and its `md5` (a file object's id);
    ValueError saying what is wrong otherwise."""
    if len(data) > MAX_DIR_MANIFEST:
        raise ValueError(f"larger than {MAX_DIR_MANIFEST >> 20} MiB")
    try:
        entries = jsonsafe.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ValueError(f"not JSON ({exc.__class__.__name__})") from None
    if not isinstance(entries, list):
        raise ValueError("not a JSON list")
    seen: set[str] = set()
    pairs = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"entry {index} is not an object")
        relpath, md5 = entry.get("relpath"), entry.get("md5")
        if not isinstance(md5, str) or not _FILE_OID.fullmatch(md5):
            raise ValueError(f"entry {index}: md5 {str(md5)[:80]!r} is not a file object's id")
        if not isinstance(relpath, str) or not _inside(relpath):
            raise ValueError(f"entry {index}: relpath {str(relpath)[:80]!r} is not a path inside the directory")
        if relpath in seen:
            raise ValueError(f"entry {index}: relpath {relpath[:80]!r} is listed twice")
        seen.add(relpath)
        pairs.append((relpath, md5))
    return pairs


def _inside(relpath: str) -> bool:
    try:
        size = len(relpath.encode("utf-8"))  # a lone surrogate is no file name
    except UnicodeEncodeError:
        return False
    return 0 < size <= 4096 and "\0" not in relpath and all(part not in ("", ".", "..") for part in relpath.split("/"))


@dataclass
class _Output:
    """One whole DVC output at the revision: its object, and for a directory the files its manifest lists."""

    record: Recorded
    name: str  # relative to the repo directory given (as DvcData.outputs names it)
    oid: str
    entries: list[tuple[str, str]] | None = None  # a directory's (relpath, md5), once its manifest is read
    manifest: bytes | None = None  # the `.dir` object's bytes, md5 checked

    def oids(self) -> list[str]:
        return [self.oid, *(md5 for _, md5 in self.entries or ())]


def _outputs(snap: Snapshot, paths: Sequence[str], key: str) -> list[_Output]:
    """The whole outputs `paths` name at the snapshot's revision, with what DVC recorded for them (exit 2 for a path
    no cached output covers, an output without a recorded hash, or one recorded by DVC 2)."""
    from mlci.promote.dvcdata import OID, output_records, to_base

    found = []
    for record in output_records(snap, paths, key):
        name, oid = to_base(snap, record.output), str(record.recorded.get("md5", ""))
        if not OID.fullmatch(oid) or oid.endswith(".dir") != record.is_dir:
            raise ConfigError([f"{name}: the md5 recorded for it at {snap.sha[:12]} is not one ({oid[:40]!r})"])
        if record.recorded.get("hash") != "md5":
            raise ConfigError([f"{name}: its hash at {snap.sha[:12]} was recorded by DVC 2 (md5-dos2unix, the legacy "
                               "cache layout); a bundle carries DVC 3 objects: run `dvc cache migrate --dvc-files` "
                               "with DVC 3, commit, and release again"])
        found.append(_Output(record, name, oid))
    return found


# The connected side.

def collect(repo: Path, image: ImageSettings, environment: Environment, revision: str, *,
            skip: Iterable[str] = ()) -> tuple[DvcData, list[ObjectFile]]:
    """The objects `revision`'s model outputs (and environment.dvc_outputs) need, fetched into the cache from the
    default remote when missing, hashed; `skip`: object ids a base bundle carried (listed in DvcData.objects,
    returned as files only when not skipped). EnvironmentProblem (exit 3) names an object no remote has."""
    from mlci.bundle.manifest import DvcData
    from mlci.promote.dvcdata import snapshot_outputs
    from mlci.promote.dvcsnapshot import snapshot

    skipped = frozenset(skip)
    with snapshot(repo, revision) as snap:
        outputs = _outputs(snap, [*snapshot_outputs(snap, image), *environment.dvc_outputs],
                           "promote.environments.NAME.dvc_outputs")
        logger.info("mlci: DVC objects of %s at %s", ", ".join(o.name for o in outputs) or "nothing", snap.sha[:12])
        source = _Source(snap)
        lists = [o for o in outputs if o.record.is_dir and not object_path(snap.cache, o.oid).is_file()]
        if lists:  # the manifests first: which files a directory holds decides what else to fetch
            source.download(o.oid for o in lists)
        for output in outputs:
            if output.record.is_dir:
                _read_manifest(snap, output, source)
        _fetch_missing(snap, outputs, skipped, source)
        files = _hash_objects(snap, outputs, skipped)
        objects = sorted({oid for output in outputs for oid in output.oids()})
        data = DvcData(snap.sha, tuple(dict.fromkeys(o.name for o in outputs)), tuple(objects))
    logger.info("mlci: %d DVC object(s), %d to carry (%d bytes), %d left to the base bundle", len(objects),
                len(files), sum(f.size for f in files), len(set(objects) - {f.oid for f in files}))
    return data, files


class _Source:
    """The DVC remote missing objects are fetched from: DVC's default remote, as the workspace configures it."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self.why: str | None = None  # what DVC said went wrong on the last fetch

    @property
    def name(self) -> str:
        if self.snap.info.default_remote is None:
            raise ConfigError([f"{self.snap.workspace}: DVC objects of {self.snap.sha[:12]} are missing from the DVC "
                               "cache and no default DVC remote is set to fetch them from (`dvc remote default NAME`)"])
        return self.snap.info.default_remote

    def download(self, oids: Iterable[str]) -> None:
        """Objects by id from the remote into the cache (each whole or not at all); those it lacks are left out."""
        with _remote_db(self.snap.workspace, self.name) as odb:
            for oid in oids:
                _download(odb, oid, object_path(self.snap.cache, oid))

    def fetch(self, targets: Sequence[str]) -> None:
        from mlci.promote.dvcdata import fetch

        for start in range(0, len(targets), _TARGETS_PER_FETCH):
            why = fetch(self.snap, self.name, targets[start:start + _TARGETS_PER_FETCH])
            self.why = why or self.why

    def lost(self, output: _Output, oid: str) -> EnvironmentProblem:
        remote = self.snap.info.default_remote
        where = f"nor on DVC remote '{remote}'" if remote else "and no default DVC remote is set"
        said = f" ({self.why})" if self.why else ""
        return EnvironmentProblem(f"{output.name} at {self.snap.sha[:12]}: DVC object {oid} is neither in the DVC "
                                  f"cache {where}{said}; push it from where the model was trained (`dvc push`)")


def _read_manifest(snap: Snapshot, output: _Output, source: _Source) -> None:
    """A directory output's `.dir` object from the cache, read once: md5 checked, strictly parsed."""
    path = object_path(snap.cache, output.oid)
    data = _read_bounded(path, output)
    if data is None:
        raise source.lost(output, output.oid)
    got = _md5(data)
    if got != output.oid.removesuffix(".dir"):
        raise _corrupt(output, output.oid, path, got)
    try:
        output.entries = dir_entries(data)
    except ValueError as exc:
        raise EnvironmentProblem(f"{output.name}: its directory manifest {path} in the DVC cache is not one DVC "
                                 f"writes ({exc}); remove it and run again") from None
    output.manifest = data


def _fetch_missing(snap: Snapshot, outputs: Sequence[_Output], skipped: frozenset[str], source: _Source) -> None:
    """`dvc fetch` of what the cache lacks and the bundle carries: a file output whole; inside a directory, the
    files themselves (DVC's granular targets) when the base bundle carried some of the missing ones, unless they
    are many (then the whole output: one DVC call, not hundreds)."""
    targets: list[str] = []
    for output in outputs:
        if output.record.is_dir:
            absent = [(rel, md5) for rel, md5 in output.entries or () if not object_path(snap.cache, md5).is_file()]
            wanted = [rel for rel, md5 in absent if md5 not in skipped]
            if len(wanted) == len(absent) or len(wanted) > _TARGETS_PER_FETCH:
                targets.extend([output.record.output] if wanted else [])
            else:
                targets.extend(f"{output.record.output}/{rel}" for rel in wanted)
        elif output.oid not in skipped and not object_path(snap.cache, output.oid).is_file():
            targets.append(output.record.output)
    if targets:
        source.fetch(targets)
    for output in outputs:
        for oid in output.oids():
            if oid not in skipped and not object_path(snap.cache, oid).is_file():
                raise source.lost(output, oid)


def _hash_objects(snap: Snapshot, outputs: Sequence[_Output], skipped: frozenset[str]) -> list[ObjectFile]:
    """Each object to carry read once: md5 against its id, sha256 for bundle.json, size."""
    files: dict[str, ObjectFile] = {}
    with ThreadPoolExecutor(1, thread_name_prefix="mlci-md5") as md5_thread:
        for output in outputs:
            for oid in output.oids():
                if oid in skipped or oid in files:
                    continue
                path = object_path(snap.cache, oid)
                if output.manifest is not None and oid == output.oid:  # read once already
                    data = output.manifest
                    md5, sha256, size = _md5(data), hashlib.sha256(data).hexdigest(), len(data)
                else:
                    md5, sha256, size = _digest(path, output, md5_thread)
                if md5 != oid.removesuffix(".dir"):
                    raise _corrupt(output, oid, path, md5)
                files[oid] = ObjectFile(oid, path, size, sha256)
    return [files[oid] for oid in sorted(files)]


def _digest(path: Path, output: _Output, md5_thread: ThreadPoolExecutor) -> tuple[str, str, int]:
    """md5, sha256 and size of a file in one read of 1 MiB chunks; past the first chunk md5 runs in its own thread
    beside sha256 (hashlib releases the GIL: ~1.45x on 2 cores, docs/airgap.md)."""
    md5, sha256, size = _new_md5(), hashlib.sha256(), 0
    pending: Future[None] | None = None
    try:
        with open(path, "rb", buffering=0) as handle:
            while chunk := handle.read(CHUNK):
                size += len(chunk)
                if size <= CHUNK:  # a small object: threads would cost more than they save
                    md5.update(chunk)
                else:
                    if pending is not None:
                        pending.result()
                    pending = md5_thread.submit(md5.update, chunk)
                sha256.update(chunk)
            if pending is not None:
                pending.result()
    except OSError as exc:
        raise EnvironmentProblem(f"{output.name}: cannot read DVC object {path} "
                                 f"({exc.strerror or exc.__class__.__name__})") from None
    return md5.hexdigest(), sha256.hexdigest(), size


def _corrupt(output: _Output, oid: str, path: Path, got: str) -> EnvironmentProblem:
    return EnvironmentProblem(f"{output.name}: DVC object {oid} in the cache is corrupt: its bytes have md5 {got} "
                              f"({path}); remove the file and run again (it is fetched anew)")


def _new_md5() -> hashlib._Hash:
    return hashlib.md5(usedforsecurity=False)  # DVC's object names, not a security check (FIPS-mode hosts)


def _md5(data: bytes) -> str:
    md5 = _new_md5()
    md5.update(data)
    return md5.hexdigest()


# The inside.

@dataclass(frozen=True)
class Pushed:
    """What import put into the inside DVC remote."""

    remote: str
    copied: int
    present: int
    bytes: int


def missing(repo: Path, remote: str, oids: Sequence[str]) -> list[str]:
    """The object ids the DVC remote `remote` (a name in the repo's DVC config) lacks: an incremental bundle's base
    check, before anything is written."""
    from mlci.bundle.errors import BundleInvalid
    from mlci.promote.dvcdata import OID

    wanted = sorted(set(oids))
    bad = next((oid for oid in wanted if not isinstance(oid, str) or not OID.fullmatch(oid)), None)
    if bad is not None:
        raise BundleInvalid(f"bundle.json: {str(bad)[:80]!r} is not a DVC object id")
    workspace = _workspace(repo)
    _check_remote(workspace, remote)
    if not wanted:
        return []
    with _remote_db(workspace, remote) as odb:
        present = set(odb.oids_exist(wanted))
    return [oid for oid in wanted if oid not in present]


def remote_object(repo: Path, remote: str, oid: str) -> tuple[int, Callable[[], BinaryIO]]:
    """The size of object `oid` in the DVC remote `remote` and an opener of its bytes, md5 checked as they are
    read (an incremental bundle's unchanged model file, which its base carried, for the Nexus raw upload)."""
    workspace = _workspace(repo)
    with _remote_db(workspace, remote) as odb:
        path = odb.oid_to_path(oid)
        size = int(odb.fs.size(path))

    def opener() -> BinaryIO:
        with _remote_db(workspace, remote) as odb:
            data = odb.fs.open(path, "rb")
        return cast(BinaryIO, _Md5Checked(data, oid, f"DVC remote '{remote}': object {oid}"))

    return size, opener


class _Md5Checked:
    """A remote object's bytes, refused at their end when their md5 is not the object's id."""

    def __init__(self, stream: BinaryIO, oid: str, where: str) -> None:
        self._stream, self._oid, self._where = stream, oid, where
        self._md5 = hashlib.md5(usedforsecurity=False)

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        if data:
            self._md5.update(data)
        elif self._md5.hexdigest() != self._oid.removesuffix(".dir"):
            raise EnvironmentProblem(f"{self._where}: its bytes do not have the md5 it is named by")
        return data

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> _Md5Checked:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def push(repo: Path, remote: str, data: DvcData, objects: Iterable[tuple[str, Callable[[], BinaryIO]]]) -> Pushed:
    """Put the carried objects (oid, opener of their verified bytes) into the DVC remote `remote`, then prove it
    has every object `data` needs (`dvc pull` of data.revision's outputs works); objects already there are not
    sent again (a re-run after an interruption)."""
    from mlci.promote.dvcdata import push_outputs
    from mlci.promote.dvcsnapshot import snapshot

    workspace = _workspace(repo)
    sha = _inside_revision(workspace, data.revision)
    _check_remote(workspace, remote)
    carried = _carried(data, objects)
    with snapshot(repo, sha) as snap:
        outputs = _outputs(snap, data.outputs, "bundle.json dvc.outputs")
        _check_listed(snap, outputs, data)
        for output in outputs:
            if output.record.is_dir:
                _inside_manifest(snap, output, carried, remote)
        _check_listed(snap, outputs, data)  # now with every directory's files
        needed = sorted({oid for output in outputs for oid in output.oids()})
        lacking = set(missing(repo, remote, needed))
        _check_servable(snap, outputs, lacking, carried, remote)
        owners = {oid: output for output in reversed(outputs) for oid in output.oids()}  # the first output's
        for oid in sorted(lacking & set(carried)):
            _into_cache(snap, oid, carried[oid], owners[oid])
        if lacking:
            logger.info("mlci: DVC remote '%s': sending %d object(s) of %s", remote, len(lacking),
                        ", ".join(o.name for o in outputs))
            push_outputs(snap, remote, [o.record.output for o in outputs])
        still = missing(repo, remote, needed)
        if still:
            raise EnvironmentProblem(
                f"DVC remote '{remote}' still lacks {len(still)} object(s) after `dvc push` (first: {still[0]} of "
                f"{owners[still[0]].name})")
        sent = sum(object_path(snap.cache, oid).stat().st_size for oid in lacking)
    result = Pushed(remote, len(lacking), len(needed) - len(lacking), sent)
    logger.info("mlci: DVC remote '%s': %d object(s) copied (%d bytes), %d already there", remote, result.copied,
                result.bytes, result.present)
    return result


def _workspace(repo: Path) -> Path:
    from mlci.dvcstage.files import dvc_root

    workspace = dvc_root(repo)
    if workspace is None:
        raise ConfigError([f"{repo}: not inside a DVC repository (no .dvc directory up to the git root)"])
    return workspace


def _inside_revision(workspace: Path, revision: str) -> str:
    """The bundle's revision as a commit of the inside checkout (exit 3 when the mirror lacks it)."""
    from mlci.bundle.errors import BundleInvalid
    from mlci.promote.dvcsnapshot import resolve

    if not _REVISION.fullmatch(revision):
        raise BundleInvalid(f"bundle.json dvc.revision: {revision[:80]!r} is not a full git commit sha")
    try:
        return resolve(workspace, revision)
    except UsageError:
        raise EnvironmentProblem(f"the bundle's revision {revision} is not in this repository ({workspace}): mirror "
                                 "the model repository inside first") from None


def _check_remote(workspace: Path, remote: str) -> None:
    """The remote is one the workspace's DVC config names (every level, as DVC merges them); exit 2 otherwise."""
    from dvc.config import Config
    from dvc.exceptions import DvcException

    from mlci.core import log

    log.route_libraries()
    try:
        known = tuple(Config(dvc_dir=str(workspace / ".dvc"))["remote"])
    except DvcException as exc:
        raise ConfigError([f"{workspace}: DVC cannot read its config: {exc}"]) from None
    if remote not in known:
        defined = f"defined: {', '.join(known)}" if known else "none is defined"
        raise ConfigError([f"DVC remote {remote!r} is not in the DVC config of {workspace} ({defined}; add it with "
                           "`dvc remote add`, credentials in .dvc/config.local)"])


def _carried(data: DvcData, objects: Iterable[tuple[str, Callable[[], BinaryIO]]]
             ) -> dict[str, Callable[[], BinaryIO]]:
    from mlci.bundle.errors import BundleInvalid

    carried = dict(objects)
    stray = sorted(set(carried) - set(data.objects))
    if stray:
        raise BundleInvalid(f"bundle.json dvc.objects: DVC object {stray[0][:80]!r} is carried but not listed")
    return carried


def _check_listed(snap: Snapshot, outputs: Sequence[_Output], data: DvcData) -> None:
    """Every object the inside checkout's dvc.lock / .dvc files name (and the manifests list) is one the bundle
    lists: the bundle is about this revision's outputs."""
    from mlci.bundle.errors import BundleInvalid

    listed = set(data.objects)
    for output in outputs:
        absent = [oid for oid in output.oids() if oid not in listed]
        if absent:
            raise BundleInvalid(f"bundle.json dvc.objects: {output.name} at {snap.sha[:12]} needs DVC object "
                                f"{absent[0]}, which the bundle does not list")


def _inside_manifest(snap: Snapshot, output: _Output, carried: Mapping[str, Callable[[], BinaryIO]],
                     remote: str) -> None:
    """A directory output's file list: from the inside cache (a re-run), else the bundle's `.dir` object, else the
    remote (the base bundle carried it); md5 checked, strictly parsed."""
    from mlci.bundle.errors import BundleInvalid

    path, md5 = object_path(snap.cache, output.oid), output.oid.removesuffix(".dir")
    data = _read_bounded(path, output)
    where = str(path)
    if _md5(data or b"") != md5 and output.oid in carried:
        with carried[output.oid]() as stream:
            data = stream.read(MAX_DIR_MANIFEST + 1)
        where = f"the bundle's {dvc_path(output.oid)}"
        if _md5(data) != md5:
            raise BundleInvalid(f"{where} ({output.name}): its bytes do not have the md5 it is named by")
    elif data is None:
        with _remote_db(snap.workspace, remote) as odb:
            _download(odb, output.oid, path)
        data = _read_bounded(path, output)
        if data is None:
            raise EnvironmentProblem(f"{output.name} at {snap.sha[:12]}: DVC remote '{remote}' lacks its directory "
                                     f"manifest {output.oid}, which this bundle does not carry: import the bundle it "
                                     "is incremental on first")
    if _md5(data) != md5:
        raise EnvironmentProblem(f"{output.name}: its directory manifest {path} in the DVC cache is corrupt; remove "
                                 "it and run again")
    try:
        output.entries = dir_entries(data)
    except ValueError as exc:
        raise BundleInvalid(f"{where}: not a DVC directory manifest ({exc})") from None
    output.manifest = data


def _read_bounded(path: Path, output: _Output) -> bytes | None:
    """A `.dir` object's bytes (at most one more than the bound), None when the file is not there."""
    try:
        with open(path, "rb") as handle:
            return handle.read(MAX_DIR_MANIFEST + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise EnvironmentProblem(f"{output.name}: cannot read its directory manifest {path} "
                                 f"({exc.strerror or exc.__class__.__name__})") from None


def _check_servable(snap: Snapshot, outputs: Sequence[_Output], lacking: set[str],
                    carried: Mapping[str, object], remote: str) -> None:
    """Before anything is written: each object the remote lacks comes with the bundle or is in the inside cache, and
    no directory's manifest is on the remote without all of its files (DVC would never send them)."""
    for output in outputs:
        for oid in output.oids():
            if oid in lacking and oid not in carried and not object_path(snap.cache, oid).is_file():
                raise EnvironmentProblem(
                    f"{output.name} at {snap.sha[:12]}: DVC remote '{remote}' lacks DVC object {oid}, which this "
                    "bundle does not carry: import the bundle it is incremental on first")
        gaps = [oid for oid in output.oids()[1:] if oid in lacking]
        if output.record.is_dir and output.oid not in lacking and gaps:
            raise EnvironmentProblem(
                f"{output.name}: DVC remote '{remote}' holds its directory manifest {output.oid} but lacks "
                f"{len(gaps)} of its files (first: {gaps[0]}); DVC takes the manifest for the whole directory and "
                f"will not send them: delete {dvc_path(output.oid).removeprefix('dvc/')} from the remote and "
                "import again")


def _into_cache(snap: Snapshot, oid: str, opener: Callable[[], BinaryIO], output: _Output) -> None:
    """One carried object written into the DVC cache (temp file, md5 checked as written, renamed); one already
    there whose md5 is right is kept."""
    from mlci.bundle.errors import BundleInvalid

    target = object_path(snap.cache, oid)
    if _has_md5(target, oid):
        return
    if output.manifest is not None and oid == output.oid:  # read and checked already
        _write(target, oid, iter((output.manifest,)), output)
        return
    with opener() as stream:
        if not _write(target, oid, iter(lambda: stream.read(CHUNK), b""), output):
            raise BundleInvalid(f"the bundle's {dvc_path(oid)} ({output.name}): its bytes do not have the md5 it "
                                "is named by")


def _write(target: Path, oid: str, chunks: Iterator[bytes], output: _Output) -> bool:
    """Whether the bytes had md5 `oid` (then they are at `target`; else nothing is)."""
    md5 = _new_md5()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name[:8]}.", suffix=".mlci-tmp", dir=target.parent)
    except OSError as exc:
        raise EnvironmentProblem(f"{output.name}: cannot write into the DVC cache {target.parent} "
                                 f"({exc.strerror or exc.__class__.__name__})") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                md5.update(chunk)
                handle.write(chunk)
            os.fchmod(handle.fileno(), _CACHE_MODE)
        if md5.hexdigest() != oid.removesuffix(".dir"):
            return False
        os.replace(tmp, target)
        return True
    except OSError as exc:
        raise EnvironmentProblem(f"{output.name}: cannot write into the DVC cache {target.parent} "
                                 f"({exc.strerror or exc.__class__.__name__})") from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def _has_md5(path: Path, oid: str) -> bool:
    """Whether the cache holds `oid` intact (read and hashed: a re-run trusts no size)."""
    md5 = _new_md5()
    try:
        with open(path, "rb", buffering=0) as handle:
            while chunk := handle.read(CHUNK):
                md5.update(chunk)
    except OSError:
        return False
    return md5.hexdigest() == oid.removesuffix(".dir")


# DVC's remote object database, in-process.

@contextmanager
def _remote_db(workspace: Path, remote: str) -> Iterator[Any]:
    """The object database of DVC remote `remote` as DVC's own commands open it (its config levels, credentials and
    filesystem); what the remote's filesystem raises in the block is exit 3, in one line."""
    from mlci.core import log
    from mlci.dvcstage.dvc import dvc_env

    for name, value in dvc_env(workspace).items():  # the API in this process: the same site cache as the CLI
        os.environ.setdefault(name, value)
    from dvc.config import ConfigError as DvcConfigError
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    log.route_libraries()
    try:
        with Repo(str(workspace)) as repo:
            yield repo.cloud.get_remote_odb(remote, "status")
    except MlciError:
        raise
    except DvcConfigError as exc:  # e.g. a cloud-versioned (worktree) remote: DVC keeps no objects by id there
        raise ConfigError([f"DVC remote '{remote}': {one_line(str(exc))}"]) from None
    except DvcException as exc:
        raise EnvironmentProblem(f"DVC remote '{remote}': {one_line(str(exc))}") from None
    except Exception as exc:  # noqa: BLE001 - fsspec's filesystems (s3fs, sshfs, ...) raise many kinds: all unreachable
        raise EnvironmentProblem(f"cannot reach DVC remote '{remote}': {exc.__class__.__name__}: "
                                 f"{one_line(str(exc))[:300]}") from None


def _download(odb: Any, oid: str, target: Path) -> None:
    """One object from the remote into the cache, whole or not at all; nothing when the remote lacks it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name[:8]}.", suffix=".mlci-tmp", dir=target.parent)
    os.close(fd)
    try:
        odb.fs.get_file(odb.oid_to_path(oid), tmp)
        os.chmod(tmp, _CACHE_MODE)
        os.replace(tmp, target)
    except FileNotFoundError:
        return
    finally:
        Path(tmp).unlink(missing_ok=True)
