"""The rest of a bundle beside the image, as export plans it: the previous bundle an incremental one builds on,
the model's DVC objects, the artifacts for the inside's Nexus raw repository and the trivy DB snapshot.

Artifacts are the files promotion uploads (image.artifacts, the metrics files, dvc.lock, the scan record). A
DVC-tracked one is not carried twice: its Artifact names the member of its DVC object, found by the md5 DVC
recorded (dvc.lock or its `.dvc` file; a file inside a directory output by the directory's `.dir` listing, which
is why `.dir` objects are always carried, never left to a base). A file kept in git, the metrics, dvc.lock and the
scan record are members of their own, `artifacts/<name>`, hashed while planned (the sink checks them again as it
writes: a file that changed in between fails the export)."""
from __future__ import annotations

import hashlib
import os
import posixpath
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlci.bundle.imageplan import Planned, in_memory
from mlci.core import jsonsafe
from mlci.core.errors import EnvironmentProblem, UsageError
from mlci.core.log import logger

if TYPE_CHECKING:
    from mlci.bundle.dvcobjects import ObjectFile
    from mlci.bundle.manifest import Artifact, BundleManifest, DvcData, Kind, TrivyDb
    from mlci.oci.transport import Opener
    from mlci.promote.settings import Environment
    from mlci.scan.record import ScanRecord
    from mlci.settings import Config

MAX_TRIVY_METADATA = 1 << 16
_MEMBER = re.compile(r"dvc/files/md5/([0-9a-f]{2})/([0-9a-f]{30}(?:\.dir)?)")


def previous(path: Path) -> BundleManifest:
    """The manifest of the bundle an incremental export builds on: its bundle.json, or the bundle itself (a
    directory, a tar, the first part), read bounded and parsed strictly (its signature is not needed: it only
    says what may be left out, and the inside checks that its destination has all of that)."""
    from mlci.bundle.archive import open_bundle
    from mlci.bundle.manifest import MAX_MANIFEST, parse

    if _is_json(path):
        with path.open("rb") as handle:
            data = handle.read(MAX_MANIFEST + 1)
    else:
        try:
            reader = open_bundle(path)
        except UsageError as exc:
            raise UsageError(f"--since: {exc} (name the previous bundle or its bundle.json)") from None
        try:
            data = reader.head()[0]
        finally:
            reader.close()
    from mlci.bundle.errors import BundleInvalid

    try:
        return parse(data, str(path))
    except BundleInvalid as exc:  # a usage problem here: the previous bundle is what the user names
        raise UsageError(f"--since: {exc} (name the previous bundle or its bundle.json)") from None


def _is_json(path: Path) -> bool:
    """Whether `path` is a file starting like bundle.json (a tar starts with a member's name, zstd with its magic)."""
    from mlci.core.bounded import open_regular

    if path.is_dir() or not os.path.lexists(path):
        return False
    try:
        with open_regular(path, str(path)) as handle:  # a FIFO is refused, never waited on
            return handle.read(1) == b"{"
    except OSError as exc:
        raise EnvironmentProblem(f"{path}: cannot be read ({exc.strerror or exc.__class__.__name__})") from None


def base_sets(manifest: BundleManifest | None) -> tuple[set[str], set[str]]:
    """The blob digests and DVC object ids a previous bundle carried or relied on (its files and its base)."""
    if manifest is None:
        return set(), set()
    blobs = {"sha256:" + f.path.removeprefix("blobs/sha256/") for f in manifest.files
             if f.kind == "oci" and f.path.startswith("blobs/sha256/")}
    objects = {m.group(1) + m.group(2) for f in manifest.files if f.kind == "dvc"
               if (m := _MEMBER.fullmatch(f.path)) is not None}
    if manifest.base is not None:
        blobs |= {b.digest for b in manifest.base.blobs}
        objects |= set(manifest.base.dvc_objects)
    return blobs, objects


def dvc_objects(root: Path, config: Config, env: Environment, sha: str, base: Collection[str]
                ) -> tuple[DvcData | None, list[ObjectFile]]:
    """The model's DVC objects at `sha` (none outside a DVC repository), those in `base` left out but `.dir`
    listings, which are always carried."""
    from mlci.bundle import dvcobjects
    from mlci.dvcstage.files import dvc_root

    if dvc_root(root) is None:
        return None, []
    data, files = dvcobjects.collect(root, config.image, env, sha, skip=[o for o in base if not o.endswith(".dir")])
    return data, sorted(files, key=lambda f: f.oid)


def object_files(objects: Iterable[ObjectFile]) -> list[Planned]:
    """Each DVC object as the bundle file `dvc/files/md5/<2>/<30>[.dir]`, its bytes from the DVC cache."""
    from mlci.bundle.manifest import dvc_path

    return [Planned(dvc_path(o.oid), o.size, o.sha256, "dvc", _file_opener(o.path)) for o in objects]


@dataclass(frozen=True)
class Artifacts:
    """The artifacts bundle.json lists (sorted by name) and the files of those carried as their own members."""

    entries: tuple[Artifact, ...]
    files: list[Planned]


def artifacts(root: Path, config: Config, data: DvcData | None, objects: list[ObjectFile],
              scan: ScanRecord | None) -> Artifacts:
    """What the inside uploads to Nexus raw under MODEL/VERSION/: the files promotion uploads (image.artifacts,
    the metrics files, dvc.lock, scan-record.json), DVC-tracked ones as their DVC objects, carried or (an
    incremental bundle) left to the base, whose objects the inside's DVC remote holds."""
    from mlci.bundle.manifest import Artifact, dvc_path
    from mlci.image.entries import Collector
    from mlci.image.labels import metrics_files

    known = set(data.objects) if data is not None else set()
    cache = {o.oid: o.path for o in objects}
    found: dict[str, Artifact] = {}
    files: list[Planned] = []
    based: list[str] = []
    for kind, paths in (("model", config.image.artifacts), ("metrics", metrics_files(root, Collector(root)))):
        for path in paths:
            tracked = _tracked(root, path, known, cache)
            for rel, oid in tracked.items():  # carried, or left to the base (the inside's DVC remote has it)
                found[f"{kind}/{rel}"] = Artifact(f"{kind}/{rel}", dvc_path(oid))
                if oid not in cache:
                    based.append(f"{kind}/{rel}")
            for rel, file in _in_git(root, path, tracked):
                found[f"{kind}/{rel}"] = Artifact(f"{kind}/{rel}", f"artifacts/{kind}/{rel}")
                files.append(hashed(f"artifacts/{kind}/{rel}", file, "artifact"))
    if (root / "dvc.lock").is_file():
        found["dvc.lock"] = Artifact("dvc.lock", "artifacts/dvc.lock")
        files.append(hashed("artifacts/dvc.lock", root / "dvc.lock", "artifact"))
    if scan is not None:
        found["scan-record.json"] = Artifact("scan-record.json", "artifacts/scan-record.json")
        files.append(in_memory("artifacts/scan-record.json", scan.to_bytes(), "artifact"))
    if based:
        logger.info("mlci: %s: unchanged since the base bundle: their DVC objects are left to it (the inside uploads "
                    "them to Nexus raw from its DVC remote)", ", ".join(based))
    return Artifacts(tuple(found[name] for name in sorted(found)), sorted(files, key=lambda f: f.name))


def _tracked(root: Path, path: str, known: set[str], cache: dict[str, Path]) -> dict[str, str]:
    """The files under `path` that DVC tracks (relative to `root`) and the object id of each, from what DVC
    recorded; only objects of the bundle's DVC data count (the others are not carried)."""
    from mlci.dvcstage.fetch import recorded_outputs
    from mlci.dvcstage.files import dvc_root

    tracked: dict[str, str] = {}
    dvc_at = dvc_root(root)
    for recorded in recorded_outputs([path], root) or []:
        oid = str(recorded.recorded.get("md5"))
        if oid not in known:
            continue
        if not recorded.is_dir:
            tracked[recorded.path] = oid
            continue
        assert dvc_at is not None  # recorded_outputs found a DVC output
        output = Path(os.path.relpath(dvc_at / recorded.output, root)).as_posix()
        for relpath, member in _listing(oid, cache, recorded.output):
            name = posixpath.join(output, relpath)
            if not recorded.inside or name == recorded.path or name.startswith(recorded.path.rstrip("/") + "/"):
                tracked[name] = member
    return tracked


def _listing(oid: str, cache: dict[str, Path], output: str) -> list[tuple[str, str]]:
    """A directory output's `.dir` object as (relpath, object id) pairs (dvcobjects.dir_entries: strictly)."""
    from mlci.bundle.dvcobjects import MAX_DIR_MANIFEST, dir_entries

    where = f"DVC output {output}: object {oid}"
    if oid not in cache:
        raise EnvironmentProblem(f"{where}: its listing is not among the objects collected; cannot name its files")
    try:
        with cache[oid].open("rb") as handle:
            return dir_entries(handle.read(MAX_DIR_MANIFEST + 1))
    except OSError as exc:
        raise EnvironmentProblem(f"{where}: cannot be read ({exc.strerror or exc.__class__.__name__})") from None
    except ValueError as exc:
        raise EnvironmentProblem(f"{where}: not a DVC directory listing ({exc})") from None


def _in_git(root: Path, path: str, tracked: Collection[str]) -> list[tuple[str, Path]]:
    """The files under `path` in the checkout that DVC does not track (kept in git), as promotion finds them;
    a path that leads out of the repository through a symlink is refused (exit 2)."""
    from mlci.core.fsutil import files_within

    found = files_within(root, path, "carried")
    kept = [(rel, p) for rel, p in ((p.relative_to(root).as_posix(), p) for p in found) if rel not in tracked]
    if not kept and not tracked:
        logger.warning("mlci: warning: %s: neither in the checkout nor tracked by DVC; not carried", path)
    return kept


def hashed(name: str, path: Path, kind: Kind) -> Planned:
    """A file whose sha256 is taken now (one read); its bytes are read again when the bundle is written."""
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as exc:
        raise EnvironmentProblem(f"{path}: cannot be read ({exc.strerror or exc.__class__.__name__})") from None
    return Planned(name, size, digest, kind, _file_opener(path))


def _file_opener(path: Path) -> Opener:
    return lambda: path.open("rb")


def trivy_db(config: Config) -> tuple[TrivyDb, list[Planned]]:
    """scan.cache_dir's trivy DB (db/trivy.db, db/metadata.json, checked as a scan checks them) as
    `trivy/db/...`, and its dates for bundle.json (as metadata.json writes them)."""
    from mlci.bundle.manifest import TrivyDb
    from mlci.scan import trivy

    cache = trivy.cache_dir(config.scan)
    info = trivy.db_info(cache)
    metadata = cache / "db" / "metadata.json"
    try:
        with metadata.open("rb") as handle:
            data = handle.read(MAX_TRIVY_METADATA)
        body = jsonsafe.loads(data)
    except (OSError, ValueError):
        body = None
    if not isinstance(body, dict) or body.get("Version") != info.version or not isinstance(body.get("UpdatedAt"), str):
        raise EnvironmentProblem(f"{metadata}: changed while it was read; export again")
    snapshot = TrivyDb(info.version, body["UpdatedAt"], _text(body.get("NextUpdate")), _text(body.get("DownloadedAt")))
    logger.info("mlci: trivy DB of %s (schema %d) carried", snapshot.updated_at, snapshot.version)
    return snapshot, [hashed("trivy/db/trivy.db", cache / "db" / "trivy.db", "trivy-db"),
                      in_memory("trivy/db/metadata.json", data, "trivy-db")]


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
