"""The bundle's signature: a DSSE envelope (bundle.dsse.json) over an in-toto Statement v1 whose subjects are
every file of the bundle with its sha256 (bundle.json itself among them), signed with the ECDSA P-256 key of
promote.signing (mlci.sign.keys). The envelope's keyid is the lower-case hex sha256 of the public key's
SubjectPublicKeyInfo DER (what `PublicKey.fingerprint` shows after `sha256:`); securesystemslib verifies it.

CONTRACT (issue 12 helpers): signatures fixed; filled in by the format helper."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlci.bundle.manifest import BundleManifest
    from mlci.sign.keys import PublicKey, SigningKey

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://mlci.dev/bundle/v1"  # an identifier, never fetched
MAX_ENVELOPE = 64 << 20


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: `DSSEv1 <len type> <type> <len body> <body>`."""
    raise NotImplementedError


def keyid(public: PublicKey) -> str:
    """The envelope's keyid of `public`."""
    raise NotImplementedError


def statement(manifest: BundleManifest, manifest_sha256: str) -> dict[str, Any]:
    """The in-toto Statement: subjects = bundle.json (`manifest_sha256`) and every file; predicate = the
    aggregate and the provenance."""
    raise NotImplementedError


def sign(manifest: BundleManifest, manifest_bytes: bytes, key: SigningKey) -> bytes:
    """bundle.dsse.json's bytes for `manifest` (serialised as `manifest_bytes`)."""
    raise NotImplementedError


def verify(envelope: bytes, public: PublicKey, where: str) -> dict[str, Any]:
    """The Statement of a DSSE envelope signed by `public` (bounded, strictly parsed), else a one-line
    BundleInvalid naming `where`: not an envelope, another payload type, no signature, no signature by this key,
    a bad signature, not a Statement of this predicate type."""
    raise NotImplementedError


def check_subjects(statement_: dict[str, Any], manifest: BundleManifest, manifest_sha256: str, where: str) -> None:
    """The Statement's subjects are exactly bundle.json (`manifest_sha256`) and the manifest's files with their
    sha256, and its predicate's aggregate is the manifest's; BundleInvalid otherwise."""
    raise NotImplementedError
