"""`mlci bundle verify` as a library over signed directory bundles (tests/testing/bundles.py): a good bundle passes
with every byte hashed; each way a bundle can be wrong is refused in one line naming the bundle and the member."""
from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from mlci.bundle import dsse, manifest, verify
from mlci.bundle.archive import Format, Member, open_bundle
from mlci.bundle.errors import BundleInvalid
from mlci.bundle.manifest import Artifact, Base, BaseBlob, FileEntry
from mlci.sign.keys import SigningKey
from tests.testing import bundles


class DirReader:
    """A BundleReader over a directory, for these tests only (the real one is mlci.bundle.archive's): head() reads
    the two head files, members() walks the rest sorted, each with a stream of its bytes."""

    random_access = True

    def __init__(self, root: Path) -> None:
        self.root = root
        self.where = str(root)
        self.opened: list[str] = []

    def head(self) -> tuple[bytes, bytes]:
        return (self.root / manifest.MANIFEST).read_bytes(), (self.root / manifest.ENVELOPE).read_bytes()

    def members(self) -> Iterator[tuple[Member, BinaryIO]]:
        for path in sorted(p for p in self.root.rglob("*") if p.is_file()):
            name = path.relative_to(self.root).as_posix()
            if name not in manifest.HEAD:
                self.opened.append(name)
                with path.open("rb") as stream:
                    yield Member(name, path.stat().st_size), stream

    def open(self, name: str) -> BinaryIO:
        return (self.root / name).open("rb")

    def close(self) -> None:
        pass


def _bundle(root: Path, key: SigningKey, **fields: object) -> Path:
    """A bundle with an image (a real OCI layout), a DVC object that is also an artifact, a plain artifact and a
    trivy DB."""
    image_files, image = bundles.oci_image(root.parent / f"{root.name}-layout", "v1.2.0", b"layer " * 4000)
    weights, data = bundles.dvc_object(b"\x80\x05weights" * 1000)
    files = {**image_files, weights: data, "artifacts/dvc.lock": b"schema: '2.0'\n",
             "trivy/db/trivy.db": b"bolt", "trivy/db/metadata.json": b'{"Version": 2}'}
    artifacts = (Artifact("model/model.pkl", weights), Artifact("dvc.lock", "artifacts/dvc.lock"))
    return bundles.make_bundle(root, files, key, images=(image,), artifacts=artifacts, **fields)


@pytest.fixture
def good(tmp_path: Path, bundle_key: SigningKey) -> Path:
    return _bundle(tmp_path / "bundle", bundle_key)


def _refused(root: Path, key: SigningKey, why: str, reader: DirReader | None = None) -> str:
    with pytest.raises(BundleInvalid) as caught:
        verify.verify(reader or DirReader(root), key.public)
    message = str(caught.value)
    assert message.startswith(f"{root}: ") and "\n" not in message and why in message, message
    return message


def _blob(root: Path, at_least: int = 1000) -> Path:
    """The largest blob of the layout (its layer)."""
    blob = max((root / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
    assert blob.stat().st_size >= at_least
    return blob


def test_a_good_bundle_passes_with_every_byte_hashed(good: Path, bundle_key: SigningKey) -> None:
    reader = DirReader(good)
    verified = verify.verify(reader, bundle_key.public)
    assert verified.manifest == manifest.parse((good / "bundle.json").read_bytes(), "x")
    assert verified.keyid == dsse.keyid(bundle_key.public)
    assert verified.statement["subject"][0]["name"] == "bundle.json"
    on_disk = [p for p in good.rglob("*") if p.is_file() and p.name not in manifest.HEAD]
    assert verified.bytes_read == sum(p.stat().st_size for p in on_disk)
    assert sorted(reader.opened) == sorted(f.path for f in verified.manifest.files)


def test_verify_head_reads_no_member(good: Path, bundle_key: SigningKey) -> None:
    reader = DirReader(good)
    bundle, statement, keyid = verify.verify_head(reader, bundle_key.public)
    assert reader.opened == [] and keyid == dsse.keyid(bundle_key.public) and len(bundle.files) == 9
    assert statement["predicate"]["aggregate"] == bundle.aggregate


def test_one_flipped_byte_in_a_layer_is_refused(good: Path, bundle_key: SigningKey) -> None:
    blob = _blob(good)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x20
    blob.write_bytes(bytes(data))
    _refused(good, bundle_key, f"blobs/sha256/{blob.name}: sha256 ")


def test_a_truncated_or_longer_member_is_refused_by_its_size(good: Path, bundle_key: SigningKey) -> None:
    blob = _blob(good)
    data = blob.read_bytes()
    blob.write_bytes(data[:-1])
    _refused(good, bundle_key, f"blobs/sha256/{blob.name}: {len(data) - 1} bytes, bundle.json says {len(data)}")
    blob.write_bytes(data + b"\0")
    _refused(good, bundle_key, f"blobs/sha256/{blob.name}: {len(data) + 1} bytes, bundle.json says {len(data)}")


class _Counting(io.BytesIO):
    """A stream that counts what is read from it."""

    taken = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.taken += len(chunk)
        return chunk


def test_a_stream_shorter_or_longer_than_its_member_is_refused_without_reading_on() -> None:
    data = b"x" * (3 << 20)
    entry = FileEntry("artifacts/x", len(data) - 5, "0" * 64, "artifact")
    longer = _Counting(data)
    with pytest.raises(BundleInvalid, match=r"^b.tar: artifacts/x: more than the \d+ bytes bundle.json says$"):
        verify.check_member(longer, entry, "b.tar")
    assert longer.taken == entry.size + 1  # one byte past the size, never the rest
    short = FileEntry("artifacts/x", len(data) + 5, "0" * 64, "artifact")
    with pytest.raises(BundleInvalid, match=rf"^b.tar: artifacts/x: truncated: {len(data)} of {len(data) + 5} bytes$"):
        verify.check_member(io.BytesIO(data), short, "b.tar")


def test_a_file_the_manifest_does_not_list_is_refused(good: Path, bundle_key: SigningKey) -> None:
    (good / "artifacts" / "payload.sh").write_bytes(b"#!/bin/sh\n")
    _refused(good, bundle_key, "not listed in bundle.json: \"artifacts/payload.sh\"")


def test_a_missing_file_is_refused_naming_the_first_and_the_count(good: Path, bundle_key: SigningKey) -> None:
    (good / "trivy" / "db" / "trivy.db").unlink()
    (good / "artifacts" / "dvc.lock").unlink()
    _refused(good, bundle_key, "missing: artifacts/dvc.lock (2 of the 9 files bundle.json lists are not in the bundle)")


def test_a_member_met_twice_is_refused(good: Path, bundle_key: SigningKey) -> None:
    class Twice(DirReader):
        def members(self) -> Iterator[tuple[Member, BinaryIO]]:
            yield from super().members()
            data = (self.root / "index.json").read_bytes()
            yield Member("index.json", len(data)), io.BytesIO(data)

    _refused(good, bundle_key, "index.json: present twice", Twice(good))


def test_an_edited_manifest_is_refused_before_it_is_parsed(good: Path, bundle_key: SigningKey) -> None:
    tree = json.loads((good / "bundle.json").read_bytes())
    tree["provenance"]["environment"] = "stage"  # valid, canonical, and not what was signed
    edited = manifest.parse(json.dumps(tree).encode(), "x")
    (good / "bundle.json").write_bytes(manifest.dumps(edited))
    _refused(good, bundle_key, "bundle.json: not the signed one (its sha256 is ")
    (good / "bundle.json").write_bytes(b"{not json")
    _refused(good, bundle_key, "bundle.json: not the signed one")


def test_a_manifest_listing_a_changed_file_and_its_new_aggregate_is_refused(good: Path,
                                                                            bundle_key: SigningKey) -> None:
    """The attacker changes a file and lists its new digest and a matching aggregate: the signature says no."""
    lock = good / "artifacts" / "dvc.lock"
    lock.write_bytes(b"outs: evil\n")
    files = {p.relative_to(good).as_posix(): p.read_bytes() for p in good.rglob("*")
             if p.is_file() and p.name not in manifest.HEAD}
    old = manifest.parse((good / "bundle.json").read_bytes(), "x")
    new = bundles.make_manifest(files, prov=old.provenance, images=old.images, artifacts=old.artifacts,
                                dvc=old.dvc, trivy_db=old.trivy_db)
    (good / "bundle.json").write_bytes(manifest.dumps(new))
    _refused(good, bundle_key, "bundle.json: not the signed one")


def test_a_bundle_re_signed_by_another_key_is_refused(good: Path, bundle_key: SigningKey,
                                                      other_key: SigningKey) -> None:
    bundle = manifest.parse((good / "bundle.json").read_bytes(), "x")
    bundles.write_head(good, bundle, other_key)
    verify.verify(DirReader(good), other_key.public)  # a good bundle, by that key
    _refused(good, bundle_key, f"bundle.dsse.json: not signed by the key {bundle_key.public.fingerprint}")


def test_no_signature_and_a_garbage_envelope_are_refused(good: Path, bundle_key: SigningKey) -> None:
    envelope = json.loads((good / "bundle.dsse.json").read_bytes())
    (good / "bundle.dsse.json").write_bytes(json.dumps({**envelope, "signatures": []}).encode())
    _refused(good, bundle_key, "bundle.dsse.json: signatures: no signature")
    (good / "bundle.dsse.json").write_bytes(bytes(range(256)))
    _refused(good, bundle_key, "bundle.dsse.json: not UTF-8")
    (good / "bundle.dsse.json").write_bytes(b'{"payload": "e30=", "payloadType": "text/plain", "signatures": []}')
    _refused(good, bundle_key, "bundle.dsse.json: payloadType: \"text/plain\"")


def test_another_bundles_signature_is_refused(good: Path, tmp_path: Path, bundle_key: SigningKey) -> None:
    other = bundles.make_bundle(tmp_path / "other", {"artifacts/dvc.lock": b"other"}, bundle_key)
    (good / "bundle.dsse.json").write_bytes((other / "bundle.dsse.json").read_bytes())
    _refused(good, bundle_key, "bundle.json: not the signed one")


def test_an_incremental_bundle_is_verified_on_what_it_carries(tmp_path: Path, bundle_key: SigningKey) -> None:
    """The layer is the base's: not carried, not looked for; the base is import's to check at the destination."""
    image_files, image = bundles.oci_image(tmp_path / "layout", "v2", b"base layer " * 1000)
    layer = max(image_files, key=lambda name: len(image_files[name]))
    digest = "sha256:" + layer.rsplit("/", 1)[1]
    base = Base("sha256:" + "e" * 64, (BaseBlob(digest, len(image_files.pop(layer))),), ())
    root = bundles.make_bundle(tmp_path / "incremental", image_files, bundle_key, images=(image,), base=base)
    verified = verify.verify(DirReader(root), bundle_key.public)
    assert verified.manifest.base == base and layer not in {f.path for f in verified.manifest.files}
    assert verified.bytes_read == sum(len(data) for data in image_files.values())


# ---- through the real readers (mlci.bundle.archive.open_bundle) ------------------------------------------------


def _contents(scratch: Path) -> tuple[dict[str, bytes], dict[str, object]]:
    """The files of _bundle's bundle plus a 1.5 MiB artifact (so a 1 MiB part size makes two parts), and
    make_manifest's keywords for them."""
    image_files, image = bundles.oci_image(scratch / "layout", "v1.2.0", b"layer " * 4000)
    weights, data = bundles.dvc_object(b"\x80\x05weights" * 1000)
    files = {**image_files, weights: data, "artifacts/dvc.lock": b"schema: '2.0'\n",
             "artifacts/big.bin": bytes(range(256)) * 6144}
    artifacts = (Artifact("model/model.pkl", weights), Artifact("dvc.lock", "artifacts/dvc.lock"))
    return files, {"images": (image,), "artifacts": artifacts}


def _verified(path: Path, key: SigningKey) -> verify.Verified:
    reader = open_bundle(path)
    try:
        return verify.verify(reader, key.public)
    finally:
        reader.close()


def _refused_by_reader(path: Path, key: SigningKey, why: str) -> str:
    with pytest.raises(BundleInvalid) as caught:
        _verified(path, key)
    message = str(caught.value)
    assert str(path.name) in message and "\n" not in message and why in message, message
    return message


@pytest.mark.parametrize(("fmt", "name", "part_size"), [
    ("dir", "b", None), ("tar", "b.tar", None), ("tar.zst", "b.tar.zst", None), ("tar", "b.tar", 1 << 20),
])
def test_a_bundle_through_a_sink_verifies_through_open_bundle(tmp_path: Path, bundle_key: SigningKey, fmt: Format,
                                                              name: str, part_size: int | None) -> None:
    files, fields = _contents(tmp_path)
    paths = bundles.make_archive(tmp_path / name, files, bundle_key, fmt, part_size=part_size, **fields)
    assert len(paths) == (2 if part_size else 1)
    verified = _verified(paths[0], bundle_key)
    assert verified.bytes_read == sum(len(data) for data in files.values())
    assert {f.path for f in verified.manifest.files} == set(files)


def test_make_bundle_directories_verify_through_open_bundle(good: Path, bundle_key: SigningKey) -> None:
    assert _verified(good, bundle_key).bytes_read > 0
    (good / "artifacts" / "extra").write_bytes(b"x")
    _refused_by_reader(good, bundle_key, "not listed in bundle.json: \"artifacts/extra\"")
    (good / "artifacts" / "extra").unlink()
    (good / "artifacts" / "dvc.lock").unlink()
    _refused_by_reader(good, bundle_key, "missing: artifacts/dvc.lock")


def _tar(tmp_path: Path, key: SigningKey) -> tuple[Path, dict[str, bytes]]:
    files, fields = _contents(tmp_path)
    return bundles.make_archive(tmp_path / "b.tar", files, key, "tar", **fields)[0], files


def test_a_flipped_byte_in_a_tar_member_is_refused(tmp_path: Path, bundle_key: SigningKey) -> None:
    tar, files = _tar(tmp_path, bundle_key)
    layer = max((n for n in files if n.startswith("blobs/")), key=lambda n: len(files[n]))
    data = bytearray(tar.read_bytes())
    at = data.index(files[layer]) + len(files[layer]) // 2
    data[at] ^= 0x01
    tar.write_bytes(bytes(data))
    _refused_by_reader(tar, bundle_key, f"{layer}: sha256 ")


def test_a_truncated_tar_is_refused(tmp_path: Path, bundle_key: SigningKey) -> None:
    tar, _ = _tar(tmp_path, bundle_key)
    data = tar.read_bytes()
    tar.write_bytes(data[: len(data) // 2])
    _refused_by_reader(tar, bundle_key, "truncated")


def test_a_tar_re_signed_by_another_key_or_unsigned_is_refused(tmp_path: Path, bundle_key: SigningKey,
                                                                other_key: SigningKey) -> None:
    files, fields = _contents(tmp_path)
    tar = bundles.make_archive(tmp_path / "other.tar", files, other_key, "tar", **fields)[0]
    _refused_by_reader(tar, bundle_key, f"not signed by the key {bundle_key.public.fingerprint}")
    bundle = bundles.make_manifest(files, **fields)  # type: ignore[arg-type]
    data = manifest.dumps(bundle)
    unsigned = tmp_path / "unsigned.tar"  # bundle.json, then the files: no bundle.dsse.json
    unsigned.write_bytes(bundles.tar_bytes([(bundles.info("bundle.json", len(data)), data), *(
        (bundles.info(f.path, f.size), files[f.path]) for f in bundle.files)], head=None))
    _refused_by_reader(unsigned, bundle_key, "no signature")
