"""Bundles on disk for tests. Signed ones built from files, without the exporter: the directory form (what a tar
holds, as files), with a correct bundle.json and bundle.dsse.json (make_bundle). Any bundle written through the
real sinks (write_bundle), and hostile tars built member by member with Python's tarfile (links, devices, `..`,
pax overrides: what a bundle reader must refuse).

    key = signing_key(tmp_path)                              # an openssl-made ECDSA P-256 key (tests/sign)
    files, image = oci_image(tmp_path / "img", tag="v1")     # a real one-image OCI layout, as bundle files
    root = make_bundle(tmp_path / "b", {**files, "artifacts/dvc.lock": b"..."}, key, images=(image,))
    verify.verify(open_bundle(root), key.public)
    paths = make_archive(tmp_path / "b.tar", files, key, "tar", images=(image,))   # the same through a sink
"""
from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path

import pytest

from mlci.bundle import dsse, manifest
from mlci.bundle.archive import Format, open_sink
from mlci.bundle.manifest import (
    Artifact,
    Base,
    BundleManifest,
    DvcData,
    FileEntry,
    ImageEntry,
    Provenance,
    Scan,
    TrivyDb,
)
from mlci.sign.keys import SigningKey, private_from_pem
from tests.sign.support import layout_image, p256

GIT_SHA = "0123456789abcdef0123456789abcdef01234567"
IMAGE_DIGEST = "sha256:" + "ab" * 32


def signing_key(directory: Path, name: str = "key") -> SigningKey:
    """A fresh ECDSA P-256 key made by `openssl genpkey` (tests/sign/support.p256), loaded as mlci loads it."""
    pair = p256(directory, name)
    return private_from_pem(pair.private.read_bytes(), None, f"test key {name}")


@pytest.fixture(scope="session")
def bundle_key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    """One signing key for a session's bundles."""
    return signing_key(tmp_path_factory.mktemp("bundle-key"))


@pytest.fixture(scope="session")
def other_key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    """Another key: a bundle it signed is not signed by bundle_key."""
    return signing_key(tmp_path_factory.mktemp("other-key"), "other")


def provenance(image_digest: str = IMAGE_DIGEST, **changes: object) -> Provenance:
    """A plausible provenance (every field filled); `changes` override fields."""
    base = Provenance(
        git_sha=GIT_SHA, git_ref="refs/tags/churn@v1.2.0", model="churn", version="v1.2.0",
        image_digest=image_digest, metrics={"metrics.json": {"auc": 0.91, "rows": 1200, "ok": True, "note": "é"}},
        scan=Scan(verdict="pass", record="sha256:" + "cd" * 32, policy_hash="sha256:" + "ef" * 32,
                  db_updated_at="2026-11-30T06:00:00Z", scanned_at="2026-12-01T10:00:00Z"),
        mlci_version="0.1.0", created_at="2026-12-01T10:05:00Z", exported_by="release-manager",
        environment="prod")
    return replace(base, **changes)  # type: ignore[arg-type]


def entries(files: Mapping[str, bytes]) -> tuple[FileEntry, ...]:
    """The FileEntry of each file, sorted by path's UTF-8 bytes (its kind from check_member_name)."""
    return tuple(FileEntry(path=path, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                           kind=manifest.check_member_name(path))
                 for path, data in sorted(files.items(), key=lambda item: item[0].encode("utf-8")))


def make_manifest(files: Mapping[str, bytes], *, prov: Provenance | None = None,
                  images: Iterable[ImageEntry] = (), dvc: DvcData | None = None,
                  artifacts: Iterable[Artifact] = (), trivy_db: TrivyDb | None = None,
                  base: Base | None = None) -> BundleManifest:
    """bundle.json for `files`. Left out, `dvc` names the dvc/ files carried (plus the base's objects),
    `trivy_db` is filled when trivy/db/ files are carried, the provenance's image digest is the first image's."""
    listed = entries(files)
    images = tuple(images)
    if dvc is None and any(entry.kind == "dvc" for entry in listed):
        ids = {entry.path[len("dvc/files/md5/"):].replace("/", "", 1) for entry in listed if entry.kind == "dvc"}
        dvc = DvcData(revision=GIT_SHA, outputs=("models/model.pkl",),
                      objects=tuple(sorted(ids | set(base.dvc_objects if base else ()))))
    if trivy_db is None and any(entry.kind == "trivy-db" for entry in listed):
        trivy_db = TrivyDb(version=2, updated_at="2026-11-30T06:00:00Z", next_update="2026-12-01T06:00:00Z",
                           downloaded_at="2026-11-30T07:00:00Z")
    if prov is None:
        prov = provenance(images[0].digest if images else IMAGE_DIGEST)
    return BundleManifest(files=listed, images=images, dvc=dvc,
                          artifacts=tuple(sorted(artifacts, key=lambda a: a.name.encode("utf-8"))),
                          trivy_db=trivy_db, provenance=prov, base=base, aggregate=manifest.aggregate(listed))


def write_head(root: Path, bundle: BundleManifest, key: SigningKey) -> tuple[bytes, bytes]:
    """bundle.json and bundle.dsse.json (signed by `key`) written into the directory bundle `root`."""
    data = manifest.dumps(bundle)
    envelope = dsse.sign(bundle, data, key)
    (root / manifest.MANIFEST).write_bytes(data)
    (root / manifest.ENVELOPE).write_bytes(envelope)
    return data, envelope


def make_bundle(root: Path, files: Mapping[str, bytes], key: SigningKey, **fields: object) -> Path:
    """A directory bundle at `root` holding `files` (bundle path -> bytes), its bundle.json (make_manifest's
    keywords: prov, images, dvc, artifacts, trivy_db, base) and its signature by `key`."""
    root.mkdir(parents=True, exist_ok=True)
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    write_head(root, make_manifest(files, **fields), key)  # type: ignore[arg-type]
    return root


def make_archive(path: Path, files: Mapping[str, bytes], key: SigningKey, fmt: Format = "tar", *,
                 part_size: int | None = None, **fields: object) -> list[Path]:
    """The bundle make_bundle writes, through mlci.bundle.archive's sink instead (a tar, tar.zst or directory;
    parts with `part_size`), files in bundle.json's order; the paths commit() wrote."""
    bundle = make_manifest(files, **fields)  # type: ignore[arg-type]
    data = manifest.dumps(bundle)
    sink = open_sink(path, fmt, (data, dsse.sign(bundle, data, key)), part_size=part_size)
    for entry in bundle.files:
        sink.add(entry.path, entry.size, entry.sha256, [files[entry.path]])
    return sink.commit()


def oci_image(scratch: Path, tag: str = "v1", content: bytes = b"model weights") -> tuple[dict[str, bytes], ImageEntry]:
    """A real one-layer image in an OCI layout (mlci.oci.layout, in `scratch`) as bundle files, and its entry."""
    digest = layout_image(scratch, tag, content)
    files = {path.relative_to(scratch).as_posix(): path.read_bytes() for path in scratch.rglob("*") if path.is_file()}
    return files, ImageEntry(source=f"oci:{scratch}:{tag}", tag=tag, digest=digest)


def dvc_object(data: bytes) -> tuple[str, bytes]:
    """A DVC object's bundle path (named by its md5, DVC 3's layout) and bytes."""
    return manifest.dvc_path(hashlib.md5(data).hexdigest()), data  # DVC names objects by md5


HEAD = (b'{"format":"test"}', b'{"signatures":[]}')


def write_bundle(path: Path, fmt: Format, files: Mapping[str, bytes], head: tuple[bytes, bytes] = HEAD,
                 part_size: int | None = None, chunk: int = 1 << 20) -> list[Path]:
    """A bundle of `files` (in their order) through open_sink; the paths commit() wrote."""
    sink = open_sink(path, fmt, head, part_size=part_size)
    for name, data in files.items():
        sink.add(name, len(data), hashlib.sha256(data).hexdigest(),
                 (data[i: i + chunk] for i in range(0, len(data), chunk)))
    return sink.commit()


def info(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE, **fields: object) -> tarfile.TarInfo:
    """A member header: `kind` a tarfile type (SYMTYPE, CHRTYPE, ...), any TarInfo field (linkname,
    pax_headers, ...) set as given."""
    member = tarfile.TarInfo(name)
    member.size, member.type, member.mtime = size, kind, 0
    for key, value in fields.items():
        setattr(member, key, value)
    return member


def tar_bytes(members: Iterable[tuple[tarfile.TarInfo, bytes | None]], head: tuple[bytes, bytes] | None = HEAD,
              fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """A tar, made by tarfile: the head (unless None) first, then each (header, data) as given."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for name, content in zip(("bundle.json", "bundle.dsse.json"), head or (), strict=False):
            tar.addfile(info(name, len(content)), io.BytesIO(content))
        for member, data in members:
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def zstd_bytes(data: bytes) -> bytes:
    """`data` zstd-compressed (one frame)."""
    from backports import zstd

    return bytes(zstd.compress(data))
