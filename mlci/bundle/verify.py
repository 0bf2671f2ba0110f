"""`mlci bundle verify` as a library: the signature first, then bundle.json against it, then every member's size
and sha256 against bundle.json, and nothing present that it does not list. Reads everything, writes nothing.

CONTRACT (issue 12 helpers): signatures fixed; filled in by the format helper."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlci.bundle.archive import BundleReader
    from mlci.bundle.manifest import BundleManifest
    from mlci.sign.keys import PublicKey


@dataclass(frozen=True)
class Verified:
    """A bundle that passed: its manifest, the signed Statement and the signer's keyid."""

    manifest: BundleManifest
    statement: dict[str, Any]
    keyid: str
    bytes_read: int  # every member's bytes, hashed


def verify(reader: BundleReader, public: PublicKey) -> Verified:
    """Verify the whole bundle (BundleInvalid at the first problem, naming the bundle and the member)."""
    raise NotImplementedError


def verify_head(reader: BundleReader, public: PublicKey) -> tuple[BundleManifest, dict[str, Any], str]:
    """Only the signature and bundle.json (manifest, statement, keyid): the first step of verify()."""
    raise NotImplementedError
