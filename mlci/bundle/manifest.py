"""`bundle.json`: what a bundle holds (every file with its size and sha256, by kind), where it came from (the
provenance), what an incremental bundle leaves to its base, and the aggregate checksum over the file list.

A bundle is one tree of files, the same in a directory and in a tar: its root is an OCI image layout
(`oci-layout`, `index.json`, `blobs/sha256/<hex>`: `skopeo copy oci:BUNDLE:TAG` and trivy read it as it is), and
beside it `dvc/files/md5/<2>/<30>[.dir]` (DVC 3's remote layout: a directory bundle's `dvc/` is a local DVC
remote), `artifacts/<name>` (what goes to Nexus raw under MODEL/VERSION/) and `trivy/db/{trivy.db,metadata.json}`.
`bundle.json` and `bundle.dsse.json` (the signature, dsse.py) come first in a tar.

CONTRACT (issue 12 helpers): the dataclasses and signatures here are fixed; `parse`/`dumps`/`aggregate`/
`check_member_name` are filled in by the format helper."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

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


def aggregate(files: tuple[FileEntry, ...]) -> str:
    """`sha256:<hex>` of the file list as lines `<sha256> <size> <path>\\n`, sorted by path (UTF-8 bytes)."""
    raise NotImplementedError


def check_member_name(path: str) -> Kind:
    """The kind of a file name a bundle may hold, or ValueError naming why not: relative POSIX, no `..`, empty
    or `.` components, no backslash or control characters, at most 4096 bytes; only `oci-layout`, `index.json`,
    `blobs/sha256/<64 hex>`, `dvc/files/md5/<2 hex>/<30 hex>[.dir]`, `artifacts/<name>`, `trivy/db/<name>`."""
    raise NotImplementedError


def dumps(manifest: BundleManifest) -> bytes:
    """bundle.json's bytes: canonical (sorted keys, no spaces, UTF-8), so the same content gives the same bytes."""
    raise NotImplementedError


def parse(data: bytes, where: str) -> BundleManifest:
    """bundle.json from a bundle (hostile until verified, and bounded: MAX_MANIFEST): every field type-checked,
    names checked, files sorted and unique, the aggregate recomputed and compared; a one-line BundleInvalid
    naming `where` and the field otherwise."""
    raise NotImplementedError
