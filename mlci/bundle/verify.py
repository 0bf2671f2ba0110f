"""`mlci bundle verify` as a library: the signature first, then bundle.json against it, then every member's size
and sha256 against bundle.json, and nothing present that it does not list. Reads everything, writes nothing."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from mlci.bundle import _json, dsse, manifest
from mlci.bundle.errors import BundleInvalid

if TYPE_CHECKING:
    from mlci.bundle.archive import BundleReader
    from mlci.bundle.manifest import BundleManifest, FileEntry
    from mlci.sign.keys import PublicKey

CHUNK = 1 << 20


@dataclass(frozen=True)
class Verified:
    """A bundle that passed: its manifest, the signed Statement and the signer's keyid."""

    manifest: BundleManifest
    statement: dict[str, Any]
    keyid: str
    bytes_read: int  # every member's bytes, hashed


def verify(reader: BundleReader, public: PublicKey) -> Verified:
    """Verify the whole bundle (BundleInvalid at the first problem, naming the bundle and the member). An
    incremental bundle's files are what it carries: its base is checked at the destination by import."""
    bundle, statement, keyid = verify_head(reader, public)
    listed = {entry.path: entry for entry in bundle.files}
    met: set[str] = set()
    total = 0
    for member, stream in reader.members():
        entry = listed.get(member.name)
        if entry is None:
            raise BundleInvalid(f"{reader.where}: not listed in {manifest.MANIFEST}: {_json.show(member.name)}")
        if member.name in met:
            raise BundleInvalid(f"{reader.where}: {member.name}: present twice")
        met.add(member.name)
        if member.size != entry.size:
            raise BundleInvalid(f"{reader.where}: {member.name}: {member.size} bytes, {manifest.MANIFEST} says "
                                f"{entry.size}")
        total += check_member(stream, entry, reader.where)
    missing = [entry.path for entry in bundle.files if entry.path not in met]
    if missing:
        raise BundleInvalid(f"{reader.where}: missing: {missing[0]} ({len(missing)} of the {len(bundle.files)} "
                            f"files {manifest.MANIFEST} lists are not in the bundle)")
    return Verified(bundle, statement, keyid, total)


def check_member(stream: BinaryIO, entry: FileEntry, where: str) -> int:
    """Read `stream` to its end, in 1 MiB reads: exactly `entry.size` bytes of sha256 `entry.sha256` (never more
    than one byte past the size is read); the bytes read."""
    digest = hashlib.sha256()
    got = 0
    while True:
        chunk = stream.read(min(CHUNK, entry.size - got + 1))
        if not chunk:
            break
        got += len(chunk)
        if got > entry.size:
            raise BundleInvalid(f"{where}: {entry.path}: more than the {entry.size} bytes {manifest.MANIFEST} says")
        digest.update(chunk)
    if got != entry.size:
        raise BundleInvalid(f"{where}: {entry.path}: truncated: {got} of {entry.size} bytes")
    if digest.hexdigest() != entry.sha256:
        raise BundleInvalid(f"{where}: {entry.path}: sha256 {digest.hexdigest()}, {manifest.MANIFEST} says "
                            f"{entry.sha256}")
    return got


def verify_head(reader: BundleReader, public: PublicKey) -> tuple[BundleManifest, dict[str, Any], str]:
    """Only the signature and bundle.json (manifest, statement, keyid): the first step of verify(). The
    envelope's signature is checked first, then bundle.json's sha256 against the signed one, and only then is
    bundle.json parsed and its files compared with the signed subjects."""
    manifest_bytes, envelope = reader.head()
    statement = dsse.verify(envelope, public, f"{reader.where}: {manifest.ENVELOPE}")
    manifest_sha256 = hashlib.sha256(manifest_bytes).hexdigest()
    dsse.check_manifest(statement, manifest_sha256, reader.where)
    bundle = manifest.parse(manifest_bytes, f"{reader.where}: {manifest.MANIFEST}")
    dsse.check_subjects(statement, bundle, manifest_sha256, reader.where)
    return bundle, statement, dsse.keyid(public)
