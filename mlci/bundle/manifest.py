"""`bundle.json`: what a bundle holds (every file with its size and sha256, by kind), where it came from (the
provenance), what an incremental bundle leaves to its base, and the aggregate checksum over the file list.

A bundle is one tree of files, the same in a directory and in a tar: its root is an OCI image layout
(`oci-layout`, `index.json`, `blobs/sha256/<hex>`: `skopeo copy oci:BUNDLE:TAG` and trivy read it as it is), and
beside it `dvc/files/md5/<2>/<30>[.dir]` (DVC 3's remote layout: a directory bundle's `dvc/` is a local DVC
remote), `artifacts/<name>` (what goes to Nexus raw under MODEL/VERSION/) and `trivy/db/{trivy.db,metadata.json}`.
`bundle.json` and `bundle.dsse.json` (the signature, dsse.py) come first in a tar."""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from mlci.bundle import _json
from mlci.bundle.errors import BundleInvalid
from mlci.core.errors import UsageError
from mlci.promote.settings import ENV_NAME, MODEL_NAME

FORMAT = "mlci.bundle/v1"
MANIFEST = "bundle.json"
ENVELOPE = "bundle.dsse.json"
HEAD = (MANIFEST, ENVELOPE)  # a tar's first two members, in this order
MAX_MANIFEST = 64 << 20  # bundle.json of a 35 GB image with 100,000 DVC objects is ~20 MB
Kind = Literal["oci", "dvc", "artifact", "trivy-db"]


@dataclass(frozen=True)
class FileEntry:
    """One file of the bundle (not bundle.json nor its signature)."""

    path: str  # POSIX, relative, one of the allowed names (check_member_name)
    size: int
    sha256: str  # lower-case hex, no prefix
    kind: Kind


@dataclass(frozen=True)
class ImageEntry:
    """An image the bundle carries: the layout's `org.opencontainers.image.ref.name` is `tag`."""

    source: str  # where it was exported from (docker://HOST/REPO:TAG, oci:DIR:TAG), credentials never in it
    tag: str  # the tag it is promoted under inside
    digest: str  # sha256:<hex> of the top manifest (an index or an image)


@dataclass(frozen=True)
class DvcData:
    """The model's DVC objects: enough to `dvc pull` the outputs of `revision` that were exported."""

    revision: str  # the full git sha whose dvc.lock / .dvc files name the objects
    outputs: tuple[str, ...]  # the DVC outputs (repo-relative paths)
    objects: tuple[str, ...]  # every object id needed (md5 hex, `.dir` suffix for a directory's manifest), sorted


@dataclass(frozen=True)
class TrivyDb:
    """A trivy DB snapshot (trivy/db/trivy.db + trivy/db/metadata.json) for re-scanning offline inside."""

    version: int  # metadata.json Version (the DB schema)
    updated_at: str  # metadata.json UpdatedAt (RFC 3339): the DB's age is judged from it
    next_update: str | None
    downloaded_at: str | None


@dataclass(frozen=True)
class Scan:
    """The scan record's conclusion as exported (the record itself travels as a referrer in the layout)."""

    verdict: str  # pass | fail
    record: str | None  # the record artifact's manifest digest
    policy_hash: str
    db_updated_at: str | None
    scanned_at: str


@dataclass(frozen=True)
class Provenance:
    """Where the bundle's content came from."""

    git_sha: str
    git_ref: str | None  # the release tag (or branch) of the pipeline that exported
    model: str
    version: str | None  # the model version (GTO: the release tag's version)
    image_digest: str
    metrics: dict[str, dict[str, Any]]  # metrics file -> flattened scalars (as promotion records them)
    scan: Scan | None
    mlci_version: str
    created_at: str  # RFC 3339 UTC
    exported_by: str | None  # GITLAB_USER_LOGIN / GITHUB_ACTOR
    environment: str  # the target environment (promote.environments NAME) the bundle is for


@dataclass(frozen=True)
class BaseBlob:
    """A blob an incremental bundle's manifests need but it does not carry: the destination must have it."""

    digest: str
    size: int


@dataclass(frozen=True)
class Base:
    """An incremental bundle's base: what the previous bundle carried that this one relies on."""

    aggregate: str  # the previous bundle.json's aggregate
    blobs: tuple[BaseBlob, ...]  # sorted by digest
    dvc_objects: tuple[str, ...]  # object ids, sorted


@dataclass(frozen=True)
class Artifact:
    """A file for the Nexus raw repository (MODEL/VERSION/`name`): its bytes are the bundle file `path`, either its
    own `artifacts/<name>` member (metrics, dvc.lock, the scan record) or the DVC object of a DVC-tracked model
    file (weights are carried once, as their DVC object)."""

    name: str  # e.g. model/model.pkl, metrics/metrics.json, dvc.lock, scan-record.json
    path: str  # a FileEntry's path


@dataclass(frozen=True)
class BundleManifest:
    """bundle.json."""

    files: tuple[FileEntry, ...]  # sorted by path, unique
    images: tuple[ImageEntry, ...]
    dvc: DvcData | None
    artifacts: tuple[Artifact, ...]  # what goes to Nexus raw, sorted by name
    trivy_db: TrivyDb | None
    provenance: Provenance
    base: Base | None
    aggregate: str  # sha256:<hex>: see aggregate()
    format: str = FORMAT
    extra: dict[str, Any] = field(default_factory=dict)  # nothing yet; reserved


_HEX64 = re.compile(r"[0-9a-f]{64}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_OBJECT = re.compile(r"[0-9a-f]{32}(\.dir)?")
_GIT_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
# the distribution spec's tag, not a reserved one (oci/reference.RESERVED_TAG): an imported image never replaces a
# signature or a cache tag
_TAG = re.compile(r"(?!sha256-|mlci-key-|mlci-cache-|mlci-rev-)[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_TIME = re.compile(r"(\d{4}-\d{2}-\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")  # RFC 3339
_SOME = re.compile(".+")
_VERSION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # a tag, as the distribution spec has it
_MODEL = re.compile(MODEL_NAME)  # a path segment of the Nexus directory MODEL/VERSION: no .., no leading /
_OCI = {"oci-layout", "index.json"}
_BLOB = re.compile(r"blobs/sha256/[0-9a-f]{64}")
_DVC = re.compile(r"dvc/files/md5/([0-9a-f]{2})/([0-9a-f]{30}(?:\.dir)?)")
_TRIVY_FILES = ("trivy/db/metadata.json", "trivy/db/trivy.db")
MAX_NAME = 4096  # bytes of a member's name


def aggregate(files: tuple[FileEntry, ...]) -> str:
    """`sha256:<hex>` of the file list as lines `<sha256> <size> <path>\\n`, sorted by path (UTF-8 bytes)."""
    digest = hashlib.sha256()
    for entry in sorted(files, key=lambda e: e.path.encode("utf-8")):
        digest.update(f"{entry.sha256} {entry.size} {entry.path}\n".encode())
    return "sha256:" + digest.hexdigest()


def check_member_name(path: str) -> Kind:
    """The kind of a file name a bundle may hold, or ValueError naming why not: relative POSIX, no `..`, empty
    or `.` components, no backslash, control or other unprintable characters, at most 4096 bytes; only
    `oci-layout`, `index.json`, `blobs/sha256/<64 hex>`, `dvc/files/md5/<2 hex>/<30 hex>[.dir]`,
    `artifacts/<name>` (one or more components), `trivy/db/<name>`."""
    _check_relative(path, MAX_NAME)
    if path in _OCI or _BLOB.fullmatch(path):
        return "oci"
    if _DVC.fullmatch(path):
        return "dvc"
    parts = path.split("/")
    if parts[0] == "artifacts" and len(parts) > 1:
        return "artifact"
    if parts[:2] == ["trivy", "db"] and len(parts) == 3:
        return "trivy-db"
    raise ValueError("not a name a bundle holds (oci-layout, index.json, blobs/sha256/<64 hex>, "
                     "dvc/files/md5/<2 hex>/<30 hex>[.dir], artifacts/<name>, trivy/db/<name>)")


def _check_relative(path: str, limit: int) -> None:
    """ValueError unless `path` is a normal relative POSIX path of printable characters, at most `limit` bytes."""
    if not path:
        raise ValueError("an empty name")
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("not UTF-8 (a lone surrogate)") from None
    if size > limit:
        raise ValueError(f"longer than {limit} bytes")
    if not path.isprintable():
        raise ValueError("holds control or invisible characters")
    if "\\" in path:
        raise ValueError("holds a backslash")
    if path.startswith("/"):
        raise ValueError("an absolute path")
    parts = path.split("/")
    if ".." in parts:
        raise ValueError("a `..` component")
    if "" in parts or "." in parts:
        raise ValueError("an empty or `.` component (not a normal path)")


def blob_path(digest: str) -> str:
    """The bundle file of an OCI blob `sha256:<hex>`."""
    return "blobs/sha256/" + digest.removeprefix("sha256:")


def dvc_path(object_id: str) -> str:
    """The bundle file of a DVC object (md5 hex, `.dir` for a directory's manifest): DVC 3's remote layout."""
    return f"dvc/files/md5/{object_id[:2]}/{object_id[2:]}"


def dumps(manifest: BundleManifest) -> bytes:
    """bundle.json's bytes: canonical (sorted keys, no spaces, UTF-8), so the same content gives the same bytes.
    UsageError if they would be more than a reader takes (MAX_MANIFEST)."""
    data = _json.dumps(dataclasses.asdict(manifest))
    if len(data) > MAX_MANIFEST:
        raise UsageError(f"bundle.json would be {len(data)} bytes, more than the {MAX_MANIFEST} a reader accepts: "
                         "export fewer files into one bundle")
    return data


def parse(data: bytes, where: str) -> BundleManifest:
    """bundle.json from a bundle (hostile until verified, and bounded: MAX_MANIFEST): every field type-checked,
    names checked, files sorted and unique, the aggregate recomputed and compared; a one-line BundleInvalid
    naming `where` (the manifest: `BUNDLE: bundle.json`) and the field otherwise."""
    try:
        return _manifest(_json.loads(data, MAX_MANIFEST))
    except _json.Bad as bad:
        raise BundleInvalid(f"{where}: {bad}") from None
    except RecursionError:
        raise BundleInvalid(f"{where}: nested too deeply") from None


def _keys(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _manifest(doc: Any) -> BundleManifest:
    if isinstance(doc, dict) and "format" in doc and doc["format"] != FORMAT:
        raise _json.Bad("format", f"{_json.show(doc['format'])}: unknown (this mlci reads {FORMAT})")
    doc = _json.obj(doc, "", _keys(BundleManifest))
    files = _files(doc["files"])
    base = None if doc["base"] is None else _base(doc["base"])
    images = tuple(_image(v, _json.at("images", i)) for i, v in enumerate(_json.array(doc["images"], "images")))
    manifest = BundleManifest(
        files=files, images=images, dvc=None if doc["dvc"] is None else _dvc(doc["dvc"]),
        artifacts=_artifacts(doc["artifacts"]),
        trivy_db=None if doc["trivy_db"] is None else _trivy(doc["trivy_db"]),
        provenance=_provenance(doc["provenance"]), base=base,
        aggregate=_json.text(doc["aggregate"], "aggregate", _DIGEST, "sha256:<64 lower-case hex>"),
        format=FORMAT, extra=_extra(doc["extra"]))
    _consistent(manifest)
    return manifest


def _files(value: Any) -> tuple[FileEntry, ...]:
    files: list[FileEntry] = []
    previous = b""
    for index, item in enumerate(_json.array(value, "files")):
        field = _json.at("files", index)
        item = _json.obj(item, field, _keys(FileEntry))
        path = _json.text(item["path"], _json.at(field, "path"))
        try:
            kind = check_member_name(path)
        except ValueError as exc:
            raise _json.Bad(_json.at(field, "path"), f"{_json.show(path)}: {exc}") from None
        key = path.encode("utf-8")
        if index and key <= previous:
            raise _json.Bad(_json.at(field, "path"), f"{_json.show(path)}: " + (
                "listed twice" if key == previous else "out of order (files are sorted by path's UTF-8 bytes)"))
        previous = key
        if item["kind"] != kind:
            raise _json.Bad(_json.at(field, "kind"), f"{_json.show(item['kind'])}: {path} is of kind {kind!r}")
        sha256 = _json.text(item["sha256"], _json.at(field, "sha256"), _HEX64, "64 lower-case hex digits")
        if _BLOB.fullmatch(path) and path.rsplit("/", 1)[1] != sha256:  # a blob's name is its digest
            raise _json.Bad(_json.at(field, "sha256"), f"{sha256}: {path} is named by another digest (a blob's "
                            "name is the sha256 of its bytes)")
        files.append(FileEntry(path=path, size=_json.integer(item["size"], _json.at(field, "size")),
                               sha256=sha256, kind=kind))
    return tuple(files)


def _image(value: Any, field: str) -> ImageEntry:
    item = _json.obj(value, field, _keys(ImageEntry))
    return ImageEntry(source=_json.text(item["source"], _json.at(field, "source"), _SOME, "a source"),
                      tag=_json.text(item["tag"], _json.at(field, "tag"), _TAG,
                                     "an image tag ([A-Za-z0-9_][A-Za-z0-9._-]{0,127}), not a reserved one "
                                     "(sha256-*, mlci-key-*, mlci-cache-*, mlci-rev-*)"),
                      digest=_digest(item["digest"], _json.at(field, "digest")))


def _dvc(value: Any) -> DvcData:
    item = _json.obj(value, "dvc", _keys(DvcData))
    outputs = []
    for index, output in enumerate(_json.array(item["outputs"], "dvc.outputs")):
        outputs.append(_relative(output, _json.at("dvc.outputs", index)))
    objects = _sorted_ids(item["objects"], "dvc.objects")
    return DvcData(revision=_json.text(item["revision"], "dvc.revision", _GIT_SHA, "a full git sha (40 or 64 hex)"),
                   outputs=tuple(outputs), objects=objects)


def _sorted_ids(value: Any, field: str) -> tuple[str, ...]:
    ids = []
    for index, object_id in enumerate(_json.array(value, field)):
        where = _json.at(field, index)
        ids.append(_json.text(object_id, where, _OBJECT, "a DVC object id (32 lower-case hex, `.dir` suffix)"))
        if index and ids[-1] <= ids[-2]:
            raise _json.Bad(where, f"{_json.show(ids[-1])}: " + ("listed twice" if ids[-1] == ids[-2] else
                                                                 "out of order (sorted)"))
    return tuple(ids)


def _artifacts(value: Any) -> tuple[Artifact, ...]:
    artifacts: list[Artifact] = []
    for index, item in enumerate(_json.array(value, "artifacts")):
        field = _json.at("artifacts", index)
        item = _json.obj(item, field, _keys(Artifact))
        name = _relative(item["name"], _json.at(field, "name"))
        if artifacts and name.encode("utf-8") <= artifacts[-1].name.encode("utf-8"):
            raise _json.Bad(_json.at(field, "name"), f"{_json.show(name)}: " + (
                "listed twice" if name == artifacts[-1].name else "out of order (artifacts are sorted by name)"))
        artifacts.append(Artifact(name=name, path=_json.text(item["path"], _json.at(field, "path"))))
    return tuple(artifacts)


def _trivy(value: Any) -> TrivyDb:
    item = _json.obj(value, "trivy_db", _keys(TrivyDb))
    return TrivyDb(version=_json.integer(item["version"], "trivy_db.version"),
                   updated_at=_time(item["updated_at"], "trivy_db.updated_at"),
                   next_update=_optional_time(item["next_update"], "trivy_db.next_update"),
                   downloaded_at=_optional_time(item["downloaded_at"], "trivy_db.downloaded_at"))


def _scan(value: Any) -> Scan:
    item = _json.obj(value, "provenance.scan", _keys(Scan))
    verdict = item["verdict"]
    if verdict not in ("pass", "fail"):
        raise _json.Bad("provenance.scan.verdict", f"{_json.show(verdict)}: not pass or fail")
    return Scan(verdict=verdict,
                record=None if item["record"] is None else _digest(item["record"], "provenance.scan.record"),
                policy_hash=_digest(item["policy_hash"], "provenance.scan.policy_hash"),
                db_updated_at=_optional_time(item["db_updated_at"], "provenance.scan.db_updated_at"),
                scanned_at=_time(item["scanned_at"], "provenance.scan.scanned_at"))


def _provenance(value: Any) -> Provenance:
    item = _json.obj(value, "provenance", _keys(Provenance))
    field = "provenance"
    return Provenance(
        git_sha=_json.text(item["git_sha"], f"{field}.git_sha", _GIT_SHA, "a full git sha (40 or 64 hex)"),
        git_ref=_json.optional_text(item["git_ref"], f"{field}.git_ref"),
        model=_json.text(item["model"], f"{field}.model", _MODEL,
                         "a model's name (letters, digits, - _ /, starting and ending with a letter or digit)"),
        version=_json.optional_text(item["version"], f"{field}.version", _VERSION, "a release's version (a tag)"),
        image_digest=_digest(item["image_digest"], f"{field}.image_digest"),
        metrics=_metrics(item["metrics"]),
        scan=None if item["scan"] is None else _scan(item["scan"]),
        mlci_version=_json.text(item["mlci_version"], f"{field}.mlci_version", _SOME, "a version"),
        created_at=_time(item["created_at"], f"{field}.created_at"),
        exported_by=_json.optional_text(item["exported_by"], f"{field}.exported_by"),
        environment=_json.text(item["environment"], f"{field}.environment", ENV_NAME,
                               "an environment's name (promote.environments NAME)"))


def _metrics(value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        raise _json.Bad("provenance.metrics", f"expected an object, got {_json.kind(value)}")
    metrics: dict[str, dict[str, Any]] = {}
    for name, values in value.items():
        field = _json.at("provenance.metrics", _json.text(name, "provenance.metrics (a file's name)"))
        if not isinstance(values, dict):
            raise _json.Bad(field, f"expected an object, got {_json.kind(values)}")
        for key, scalar in values.items():
            _json.text(key, f"{field} (a metric's name)", controls=True)
            if isinstance(scalar, str):
                _json.text(scalar, _json.at(field, key), controls=True)
            elif not isinstance(scalar, int | float):  # bool is an int
                raise _json.Bad(_json.at(field, key), f"expected a number, boolean or string, got {_json.kind(scalar)}")
        metrics[name] = values
    return metrics


def _base(value: Any) -> Base:
    item = _json.obj(value, "base", _keys(Base))
    blobs: list[BaseBlob] = []
    for index, blob in enumerate(_json.array(item["blobs"], "base.blobs")):
        field = _json.at("base.blobs", index)
        blob = _json.obj(blob, field, _keys(BaseBlob))
        entry = BaseBlob(digest=_digest(blob["digest"], _json.at(field, "digest")),
                         size=_json.integer(blob["size"], _json.at(field, "size")))
        if blobs and entry.digest <= blobs[-1].digest:
            raise _json.Bad(_json.at(field, "digest"), f"{entry.digest}: " + (
                "listed twice" if entry.digest == blobs[-1].digest else "out of order (sorted by digest)"))
        blobs.append(entry)
    return Base(aggregate=_digest(item["aggregate"], "base.aggregate"), blobs=tuple(blobs),
                dvc_objects=_sorted_ids(item["dvc_objects"], "base.dvc_objects"))


def _extra(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _json.Bad("extra", f"expected an object, got {_json.kind(value)}")
    result: dict[str, Any] = _json.plain(value, "extra")
    return result


def _digest(value: Any, field: str) -> str:
    return _json.text(value, field, _DIGEST, "sha256:<64 lower-case hex>")


def _relative(value: Any, field: str) -> str:
    path = _json.text(value, field)
    try:
        _check_relative(path, MAX_NAME)
    except ValueError as exc:
        raise _json.Bad(field, f"{_json.show(path)}: {exc}") from None
    return path


def _time(value: Any, field: str) -> str:
    moment = _json.text(value, field, _TIME, "an RFC 3339 time (2026-01-31T12:00:00Z)")
    match = _TIME.fullmatch(moment)
    assert match is not None
    try:
        datetime.datetime.fromisoformat(f"{match[1]}T{match[2]}:{match[3]}:{match[4]}")
    except ValueError:
        raise _json.Bad(field, f"{_json.show(moment)}: not a date and time of day") from None
    if match[6] != "Z" and not (int(match[6][1:3]) < 24 and int(match[6][4:]) < 60):
        raise _json.Bad(field, f"{_json.show(moment)}: not a UTC offset")
    return moment


def _optional_time(value: Any, field: str) -> str | None:
    return None if value is None else _time(value, field)


def _consistent(manifest: BundleManifest) -> None:
    """What the parts of bundle.json say about each other."""
    paths = {entry.path for entry in manifest.files}
    base_blobs = {blob.digest for blob in manifest.base.blobs} if manifest.base else set()
    base_objects = {dvc_path(oid) for oid in manifest.base.dvc_objects} if manifest.base else set()
    for index, artifact in enumerate(manifest.artifacts):
        if artifact.path not in paths and artifact.path not in base_objects:
            raise _json.Bad(f"artifacts[{index}].path", f"{_json.show(artifact.path)}: neither a listed file nor a "
                            "DVC object of the base")
    tags: set[str] = set()
    for index, image in enumerate(manifest.images):
        if blob_path(image.digest) not in paths and image.digest not in base_blobs:
            raise _json.Bad(f"images[{index}].digest", f"{image.digest}: neither a listed file nor a base blob")
        if image.tag in tags:
            raise _json.Bad(f"images[{index}].tag", f"{image.tag}: the tag of two images")
        tags.add(image.tag)
    if manifest.images:
        missing = sorted(_OCI - paths)
        if missing:
            raise _json.Bad("files", f"images, but the layout's {missing[0]} is not listed")
        if manifest.provenance.image_digest not in {image.digest for image in manifest.images}:
            raise _json.Bad("provenance.image_digest", f"{manifest.provenance.image_digest}: not an image's digest")
    _consistent_dvc(manifest)
    trivy = sorted(path for path in paths if path.startswith("trivy/"))
    if manifest.trivy_db is None and trivy:
        raise _json.Bad("trivy_db", f"null, but {trivy[0]} is listed")
    if manifest.trivy_db is not None:
        for name in _TRIVY_FILES:
            if name not in paths:
                raise _json.Bad("trivy_db", f"the DB's {name} is not a listed file")
    if manifest.aggregate != aggregate(manifest.files):
        raise _json.Bad("aggregate", f"{manifest.aggregate} does not match the file list (it is "
                        f"{aggregate(manifest.files)})")


def _consistent_dvc(manifest: BundleManifest) -> None:
    carried = [entry.path for entry in manifest.files if entry.kind == "dvc"]
    if manifest.dvc is None:
        if carried:
            raise _json.Bad("dvc", f"null, but {carried[0]} is listed")
        return
    needed = {dvc_path(object_id) for object_id in manifest.dvc.objects}
    for path in carried:
        if path not in needed:
            raise _json.Bad("dvc.objects", f"{path} is listed but not among the objects")
    based = set(manifest.base.dvc_objects) if manifest.base else set()
    present = set(carried)
    for index, object_id in enumerate(manifest.dvc.objects):
        if object_id not in based and dvc_path(object_id) not in present:
            raise _json.Bad(f"dvc.objects[{index}]", f"{object_id}: neither a listed file nor a base object")
