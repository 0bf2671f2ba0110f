"""The bundle's signature: a DSSE envelope (bundle.dsse.json) over an in-toto Statement v1 whose subjects are
every file of the bundle with its sha256 (bundle.json itself among them), signed with the ECDSA P-256 key of
promote.signing (mlci.sign.keys). The envelope's keyid is the lower-case hex sha256 of the public key's
SubjectPublicKeyInfo DER (what `PublicKey.fingerprint` shows after `sha256:`); securesystemslib verifies it."""
from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import re
from typing import TYPE_CHECKING, Any

from mlci.bundle import _json
from mlci.bundle.errors import BundleInvalid
from mlci.bundle.manifest import MANIFEST
from mlci.core.errors import UsageError

if TYPE_CHECKING:
    from mlci.bundle.manifest import BundleManifest
    from mlci.sign.keys import PublicKey, SigningKey

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://mlci.dev/bundle/v1"  # an identifier, never fetched
MAX_ENVELOPE = 64 << 20
MAX_SIGNATURES = 16  # each of ours costs an ECDSA verification; an envelope with more is not one mlci made
_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}|[A-Za-z0-9_-]*={0,2}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: `DSSEv1 <len type> <type> <len body> <body>`."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def keyid(public: PublicKey) -> str:
    """The envelope's keyid of `public`."""
    return hashlib.sha256(public.der()).hexdigest()


def statement(manifest: BundleManifest, manifest_sha256: str) -> dict[str, Any]:
    """The in-toto Statement: subjects = bundle.json (`manifest_sha256`) and every file; predicate = the
    aggregate and the provenance."""
    subjects = [{"name": MANIFEST, "digest": {"sha256": manifest_sha256}}]
    subjects.extend({"name": entry.path, "digest": {"sha256": entry.sha256}} for entry in manifest.files)
    return {"_type": STATEMENT_TYPE, "subject": subjects, "predicateType": PREDICATE_TYPE,
            "predicate": {"aggregate": manifest.aggregate, "manifest": MANIFEST,
                          "provenance": dataclasses.asdict(manifest.provenance)}}


def sign(manifest: BundleManifest, manifest_bytes: bytes, key: SigningKey) -> bytes:
    """bundle.dsse.json's bytes for `manifest` (serialised as `manifest_bytes`)."""
    payload = _json.dumps(statement(manifest, hashlib.sha256(manifest_bytes).hexdigest()))
    signature = key.sign(pae(PAYLOAD_TYPE, payload))
    envelope = _json.dumps({"payload": base64.b64encode(payload).decode("ascii"), "payloadType": PAYLOAD_TYPE,
                            "signatures": [{"keyid": keyid(key.public),
                                            "sig": base64.b64encode(signature).decode("ascii")}]})
    if len(envelope) > MAX_ENVELOPE:
        raise UsageError(f"bundle.dsse.json would be {len(envelope)} bytes, more than the {MAX_ENVELOPE} a reader "
                         "accepts: export fewer files into one bundle")
    return envelope


def verify(envelope: bytes, public: PublicKey, where: str) -> dict[str, Any]:
    """The Statement of a DSSE envelope signed by `public` (bounded, strictly parsed), else a one-line
    BundleInvalid naming `where` (the envelope: `BUNDLE: bundle.dsse.json`): not an envelope, another payload
    type, no signature, no signature by this key, a bad signature, not a Statement of this predicate type.
    Fields DSSE and in-toto do not define are ignored, as both specifications require."""
    try:
        payload = _signed_payload(_json.loads(envelope, MAX_ENVELOPE), public)
        try:
            doc = _json.loads(payload, MAX_ENVELOPE)
        except _json.Bad as bad:
            raise _json.Bad("payload", bad.why) from None
        return _statement(doc)
    except _json.Bad as bad:
        raise BundleInvalid(f"{where}: {bad}") from None


def _signed_payload(doc: Any, public: PublicKey) -> bytes:
    """The payload of the envelope `doc` once a signature of `public` over its PAE checks."""
    if not isinstance(doc, dict):
        raise _json.Bad("", f"not a DSSE envelope: {_json.kind(doc)}, not an object")
    for key in ("payload", "payloadType", "signatures"):
        if key not in doc:
            raise _json.Bad("", f"not a DSSE envelope: no {key!r}")
    payload_type = _json.text(doc["payloadType"], "payloadType")
    if payload_type != PAYLOAD_TYPE:
        raise _json.Bad("payloadType", f"{_json.show(payload_type)}: not {PAYLOAD_TYPE} (an in-toto Statement)")
    payload = _base64(doc["payload"], "payload")
    signatures = _json.array(doc["signatures"], "signatures")
    if not signatures:
        raise _json.Bad("signatures", "no signature")
    if len(signatures) > MAX_SIGNATURES:
        raise _json.Bad("signatures", f"{len(signatures)} signatures, more than the {MAX_SIGNATURES} read")
    ours = keyid(public)
    signed = pae(payload_type, payload)
    mine = 0
    others: list[str] = []
    for index, item in enumerate(signatures):
        field = _json.at("signatures", index)
        if not isinstance(item, dict) or "sig" not in item:
            raise _json.Bad(field, "not a DSSE signature ({\"keyid\", \"sig\"})")
        given = "" if item.get("keyid") is None else _json.text(item["keyid"], _json.at(field, "keyid"))
        if given != ours:
            others.append(given)
            continue
        mine += 1
        if public.verifies(_base64(item["sig"], _json.at(field, "sig")), signed):
            return payload
    if mine:
        raise _json.Bad("", f"the signature of the key {public.fingerprint} does not verify: the envelope was "
                        "changed after signing")
    shown = ", ".join(_json.show(other) for other in others[:3]) + (", ..." if len(others) > 3 else "")
    raise _json.Bad("", f"not signed by the key {public.fingerprint} (signatures by keyid {shown})")


def _base64(value: Any, field: str) -> bytes:
    """Standard or URL-safe base64, padded or not (DSSE allows either)."""
    if not isinstance(value, str):
        raise _json.Bad(field, f"expected a base64 string, got {_json.kind(value)}")
    if not _B64.fullmatch(value):
        raise _json.Bad(field, "not base64")
    text = value.rstrip("=").replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        raise _json.Bad(field, "not base64") from None


def _statement(doc: Any) -> dict[str, Any]:
    """An in-toto Statement v1 of PREDICATE_TYPE, its subjects and predicate well-formed."""
    if not isinstance(doc, dict):
        raise _json.Bad("payload", f"not an in-toto Statement: {_json.kind(doc)}, not an object")
    if doc.get("_type") != STATEMENT_TYPE:
        raise _json.Bad("payload._type", f"{_json.show(doc.get('_type'))}: not {STATEMENT_TYPE}")
    if doc.get("predicateType") != PREDICATE_TYPE:
        raise _json.Bad("payload.predicateType", f"{_json.show(doc.get('predicateType'))}: not {PREDICATE_TYPE}")
    for index, subject in enumerate(_json.array(doc.get("subject"), "payload.subject")):
        field = _json.at("payload.subject", index)
        if not isinstance(subject, dict):
            raise _json.Bad(field, f"expected an object, got {_json.kind(subject)}")
        _json.text(subject.get("name"), _json.at(field, "name"), controls=True)
        digest = subject.get("digest")
        if not isinstance(digest, dict) or set(digest) != {"sha256"}:
            raise _json.Bad(_json.at(field, "digest"), "not {\"sha256\": <hex>}")
        _json.text(digest["sha256"], _json.at(field, "digest.sha256"), _HEX64, "64 lower-case hex digits")
    predicate = doc.get("predicate")
    if not isinstance(predicate, dict):
        raise _json.Bad("payload.predicate", f"expected an object, got {_json.kind(predicate)}")
    _json.text(predicate.get("aggregate"), "payload.predicate.aggregate")
    if predicate.get("manifest") != MANIFEST:
        raise _json.Bad("payload.predicate.manifest", f"{_json.show(predicate.get('manifest'))}: not {MANIFEST}")
    return doc


def check_manifest(statement_: dict[str, Any], manifest_sha256: str, where: str) -> None:
    """bundle.json's bytes (`manifest_sha256`) are the ones the Statement names (checked before they are parsed)."""
    signed = [s["digest"]["sha256"] for s in statement_["subject"] if s["name"] == MANIFEST]
    if signed != [manifest_sha256]:
        raise BundleInvalid(f"{where}: {MANIFEST}: not the signed one (its sha256 is {manifest_sha256}, the "
                            f"signature's {', '.join(signed) or 'none'}): changed after signing")


def check_subjects(statement_: dict[str, Any], manifest: BundleManifest, manifest_sha256: str, where: str) -> None:
    """The Statement's subjects are exactly bundle.json (`manifest_sha256`) and the manifest's files with their
    sha256, and its predicate's aggregate is the manifest's; BundleInvalid otherwise."""
    check_manifest(statement_, manifest_sha256, where)
    signed: dict[str, str] = {}
    for subject in statement_["subject"]:
        if subject["name"] in signed:
            raise BundleInvalid(f"{where}: the signature names {_json.show(subject['name'])} twice")
        signed[subject["name"]] = subject["digest"]["sha256"]
    listed = {entry.path: entry.sha256 for entry in manifest.files}
    listed[MANIFEST] = manifest_sha256
    for name, digest in listed.items():
        if name not in signed:
            raise BundleInvalid(f"{where}: {name}: listed in {MANIFEST} but not signed")
        if signed[name] != digest:
            raise BundleInvalid(f"{where}: {name}: {MANIFEST} says sha256 {digest}, the signature {signed[name]}")
    for name in signed:
        if name not in listed:
            raise BundleInvalid(f"{where}: {_json.show(name)}: signed but not listed in {MANIFEST}")
    predicate = statement_["predicate"]
    if predicate["aggregate"] != manifest.aggregate:
        raise BundleInvalid(f"{where}: the signed aggregate {_json.show(predicate['aggregate'])} is not "
                            f"{MANIFEST}'s {manifest.aggregate}")
    if predicate.get("provenance") != dataclasses.asdict(manifest.provenance):
        raise BundleInvalid(f"{where}: the signed provenance is not {MANIFEST}'s")
