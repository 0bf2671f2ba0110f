"""bundle.dsse.json: a DSSE v1 envelope over an in-toto Statement v1, checked against an independent implementation
(securesystemslib 1.6: its PAE, its verifier, its signer), the keyid against openssl, and every refusal."""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import CryptoSigner, SSlibKey

from mlci.bundle import dsse, manifest
from mlci.bundle.errors import BundleInvalid
from mlci.bundle.manifest import BundleManifest
from mlci.sign.keys import SigningKey
from tests.sign.support import OPENSSL
from tests.testing import bundles

WHERE = "b.tar: bundle.dsse.json"


@pytest.fixture(scope="module")
def signed(bundle_key: SigningKey) -> tuple[BundleManifest, bytes, bytes]:
    """A manifest with files of each kind, its bundle.json bytes and its envelope."""
    layer, data = bundles.dvc_object(b"weights")
    bundle = bundles.make_manifest({"artifacts/dvc.lock": b"lock", layer: data, "trivy/db/trivy.db": b"db",
                                    "trivy/db/metadata.json": b"{}"})
    data = manifest.dumps(bundle)
    return bundle, data, dsse.sign(bundle, data, bundle_key)


def _sslib_key(key: SigningKey) -> SSlibKey:
    return SSlibKey.from_crypto(key.public.key, keyid=dsse.keyid(key.public))


def _refused(envelope: bytes | dict[str, Any], key: SigningKey, why: str) -> str:
    data = envelope if isinstance(envelope, bytes) else json.dumps(envelope).encode()
    with pytest.raises(BundleInvalid) as caught:
        dsse.verify(data, key.public, WHERE)
    message = str(caught.value)
    assert message.startswith(f"{WHERE}: ") and "\n" not in message and why in message, message
    return message


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ---- the format, by an independent implementation --------------------------------------------------------------


def test_pae_is_securesystemslibs() -> None:
    for payload_type, payload in [(dsse.PAYLOAD_TYPE, b'{"a":1}'), ("é/x", b""), ("", b"\x00\xff" * 9)]:
        assert dsse.pae(payload_type, payload) == Envelope(payload, payload_type, {}).pae()


def test_the_keyid_is_the_sha256_of_the_public_keys_der_as_openssl_writes_it(bundle_key: SigningKey,
                                                                             tmp_path: Path) -> None:
    (tmp_path / "key.pub").write_bytes(bundle_key.public.pem())
    der = subprocess.run([OPENSSL, "pkey", "-pubin", "-in", str(tmp_path / "key.pub"), "-outform", "DER"],
                         check=True, capture_output=True).stdout
    assert dsse.keyid(bundle_key.public) == hashlib.sha256(der).hexdigest()
    assert bundle_key.public.fingerprint == "sha256:" + dsse.keyid(bundle_key.public)


def test_securesystemslib_verifies_the_envelope_and_refuses_a_flipped_payload_byte(
        signed: tuple[BundleManifest, bytes, bytes], bundle_key: SigningKey, other_key: SigningKey) -> None:
    _, _, envelope = signed
    accepted = Envelope.from_dict(json.loads(envelope)).verify([_sslib_key(bundle_key)], 1)
    assert list(accepted) == [dsse.keyid(bundle_key.public)]
    doc = json.loads(envelope)
    payload = bytearray(base64.b64decode(doc["payload"]))
    payload[len(payload) // 2] ^= 0x01
    doc["payload"] = _b64(bytes(payload))
    with pytest.raises(VerificationError):
        Envelope.from_dict(json.loads(json.dumps(doc))).verify([_sslib_key(bundle_key)], 1)
    with pytest.raises(VerificationError):  # and another key's never verifies it
        Envelope.from_dict(json.loads(envelope)).verify([_sslib_key(other_key)], 1)
    _refused(doc, bundle_key, "does not verify")


def test_an_envelope_securesystemslib_signs_is_verified(signed: tuple[BundleManifest, bytes, bytes],
                                                        bundle_key: SigningKey) -> None:
    bundle, data, _ = signed
    payload = json.dumps(dsse.statement(bundle, hashlib.sha256(data).hexdigest()), indent=1).encode()
    theirs = Envelope(payload, dsse.PAYLOAD_TYPE, {})
    theirs.sign(CryptoSigner(bundle_key.key, _sslib_key(bundle_key)))
    assert dsse.verify(json.dumps(theirs.to_dict()).encode(), bundle_key.public, WHERE) == json.loads(payload)


def test_the_statement_names_bundle_json_and_every_file(signed: tuple[BundleManifest, bytes, bytes],
                                                        bundle_key: SigningKey) -> None:
    bundle, data, envelope = signed
    statement = dsse.verify(envelope, bundle_key.public, WHERE)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == dsse.PREDICATE_TYPE
    assert statement["subject"] == [{"name": "bundle.json", "digest": {"sha256": hashlib.sha256(data).hexdigest()}},
                                    *({"name": f.path, "digest": {"sha256": f.sha256}} for f in bundle.files)]
    assert statement["predicate"] == {"aggregate": bundle.aggregate, "manifest": "bundle.json",
                                      "provenance": json.loads(data)["provenance"]}
    doc = json.loads(envelope)
    assert doc["payloadType"] == "application/vnd.in-toto+json"
    assert [s["keyid"] for s in doc["signatures"]] == [dsse.keyid(bundle_key.public)]
    dsse.check_subjects(statement, bundle, hashlib.sha256(data).hexdigest(), "b.tar")


def test_signing_again_gives_the_same_bytes(signed: tuple[BundleManifest, bytes, bytes],
                                            bundle_key: SigningKey) -> None:
    bundle, data, envelope = signed
    assert dsse.sign(bundle, data, bundle_key) == envelope


def test_url_safe_unpadded_base64_and_unknown_fields_are_accepted_as_dsse_says(
        signed: tuple[BundleManifest, bytes, bytes], bundle_key: SigningKey) -> None:
    _, _, envelope = signed
    doc = json.loads(envelope)
    expected = dsse.verify(envelope, bundle_key.public, WHERE)
    for field in ("payload",):
        doc[field] = base64.urlsafe_b64encode(base64.b64decode(doc[field])).decode().rstrip("=")
    doc["signatures"][0]["sig"] = base64.urlsafe_b64encode(base64.b64decode(doc["signatures"][0]["sig"])).decode()
    doc["comment"] = "producers may add fields"
    doc["signatures"][0]["cert"] = None
    assert dsse.verify(json.dumps(doc).encode(), bundle_key.public, WHERE) == expected


def test_a_signature_by_another_key_is_ignored_when_ours_is_there(
        signed: tuple[BundleManifest, bytes, bytes], bundle_key: SigningKey, other_key: SigningKey) -> None:
    bundle, data, envelope = signed
    theirs = json.loads(dsse.sign(bundle, data, other_key))["signatures"]
    doc = json.loads(envelope)
    doc["signatures"] = [*theirs, {"sig": _b64(b"no keyid")}, *doc["signatures"]]
    assert dsse.verify(json.dumps(doc).encode(), bundle_key.public, WHERE)["predicateType"] == dsse.PREDICATE_TYPE


# ---- refusals --------------------------------------------------------------------------------------------------


def test_an_envelope_signed_by_another_key_is_not_ours(signed: tuple[BundleManifest, bytes, bytes],
                                                       bundle_key: SigningKey, other_key: SigningKey) -> None:
    bundle, data, _ = signed
    message = _refused(dsse.sign(bundle, data, other_key), bundle_key,
                       f"not signed by the key {bundle_key.public.fingerprint}")
    assert dsse.keyid(other_key.public) in message


def test_our_keyid_on_another_keys_signature_does_not_verify(signed: tuple[BundleManifest, bytes, bytes],
                                                             bundle_key: SigningKey, other_key: SigningKey) -> None:
    bundle, data, _ = signed
    doc = json.loads(dsse.sign(bundle, data, other_key))
    doc["signatures"][0]["keyid"] = dsse.keyid(bundle_key.public)
    _refused(doc, bundle_key, "does not verify")


def _mutated(envelope: bytes, change: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(envelope)
    payload = json.loads(base64.b64decode(doc["payload"]))
    if change == "sig":
        sig = bytearray(base64.b64decode(doc["signatures"][0]["sig"]))
        sig[-1] ^= 0x01
        doc["signatures"][0]["sig"] = _b64(bytes(sig))
    elif change == "type":
        doc["payloadType"] = "application/json"
    elif change == "none":
        doc["signatures"] = []
    elif change == "many":
        doc["signatures"] = doc["signatures"] * 17
    elif change == "subject":  # a new subject, the signature over the old payload
        payload["subject"].append({"name": "artifacts/evil", "digest": {"sha256": "0" * 64}})
        doc["payload"] = _b64(json.dumps(payload).encode())
    return doc


@pytest.mark.parametrize(("change", "why"), [
    ("sig", "does not verify"), ("type", "payloadType: \"application/json\": not application/vnd.in-toto+json"),
    ("none", "signatures: no signature"), ("many", "17 signatures"), ("subject", "does not verify"),
])
def test_a_changed_envelope_is_refused(signed: tuple[BundleManifest, bytes, bytes], bundle_key: SigningKey,
                                       change: str, why: str) -> None:
    _refused(_mutated(signed[2], change), bundle_key, why)


def _signed_payload(payload: Any, key: SigningKey, payload_type: str = dsse.PAYLOAD_TYPE) -> bytes:
    """An envelope correctly signed by `key` over `payload` (JSON, or bytes as they are)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return json.dumps({"payload": _b64(body), "payloadType": payload_type, "signatures": [
        {"keyid": dsse.keyid(key.public), "sig": _b64(key.sign(dsse.pae(payload_type, body)))}]}).encode()


STATEMENT = {"_type": dsse.STATEMENT_TYPE, "predicateType": dsse.PREDICATE_TYPE,
             "subject": [{"name": "bundle.json", "digest": {"sha256": "0" * 64}}],
             "predicate": {"aggregate": "sha256:" + "1" * 64, "manifest": "bundle.json", "provenance": {}}}


@pytest.mark.parametrize(("payload", "why"), [
    (b"not json", "payload: not JSON"),
    ([1], "not an in-toto Statement"),
    ({**STATEMENT, "_type": "https://in-toto.io/Statement/v0.1"}, "payload._type"),
    ({**STATEMENT, "predicateType": "https://slsa.dev/provenance/v1"}, "payload.predicateType"),
    ({**STATEMENT, "subject": {}}, "payload.subject"),
    ({**STATEMENT, "subject": [{"name": "x", "digest": {"sha256": "0" * 64, "md5": "0" * 32}}]},
     "payload.subject[0].digest"),
    ({**STATEMENT, "subject": [{"name": 5, "digest": {"sha256": "0" * 64}}]}, "payload.subject[0].name"),
    ({**STATEMENT, "subject": [{"name": "x", "digest": {"sha256": "0" * 63}}]}, "payload.subject[0].digest.sha256"),
    ({**STATEMENT, "predicate": None}, "payload.predicate"),
    ({**STATEMENT, "predicate": {"aggregate": "x", "manifest": "other.json"}}, "payload.predicate.manifest"),
    (json.dumps(STATEMENT).replace('"_type"', '"_type":"x","_type"', 1).encode(), "duplicate key \"_type\""),
])
def test_a_signed_payload_that_is_not_our_statement_is_refused(payload: Any, why: str,
                                                               bundle_key: SigningKey) -> None:
    _refused(_signed_payload(payload, bundle_key), bundle_key, why)


def _envelope(payload: Any, signatures: Any) -> bytes:
    return json.dumps({"payload": payload, "payloadType": dsse.PAYLOAD_TYPE, "signatures": signatures}).encode()


@pytest.mark.parametrize(("envelope", "why"), [
    (b"", "not JSON"), (b"\x89PNG\r\n\x1a\n", "not UTF-8"), (b"[]", "not a DSSE envelope"),
    (b'{"payload": "", "payloadType": "x"}', "no 'signatures'"),
    (_envelope(1, []), "payload: expected a base64"),
    (_envelope("a*b", []), "payload: not base64"),
    (_envelope("", {}), "signatures: expected an array"),
    (_envelope("", [7]), "not a DSSE signature"),
    (_envelope("", [{"keyid": 1, "sig": ""}]), "keyid: expected a string"),
    (b'{"payload": "", "payload": "", "payloadType": "x", "signatures": []}', "duplicate key \"payload\""),
    (b"OVERSIZE", "more than the"),
])
def test_garbage_envelopes_are_refused_in_one_line(envelope: bytes, why: str,
                                                   bundle_key: SigningKey) -> None:
    _refused(b" " * (dsse.MAX_ENVELOPE + 1) if envelope == b"OVERSIZE" else envelope, bundle_key, why)


def test_a_bad_signature_string_of_ours_is_refused(signed: tuple[BundleManifest, bytes, bytes],
                                                   bundle_key: SigningKey) -> None:
    doc = json.loads(signed[2])
    doc["signatures"][0]["sig"] = "!!"
    _refused(doc, bundle_key, "signatures[0].sig: not base64")
    doc["signatures"][0]["sig"] = _b64(b"not DER")
    _refused(doc, bundle_key, "does not verify")


# ---- the subjects against bundle.json --------------------------------------------------------------------------


def _statement(signed: tuple[BundleManifest, bytes, bytes]) -> tuple[dict[str, Any], BundleManifest, str]:
    bundle, data, _ = signed
    return json.loads(json.dumps(dsse.statement(bundle, hashlib.sha256(data).hexdigest()))), bundle, \
        hashlib.sha256(data).hexdigest()


def _subjects_refused(statement: dict[str, Any], bundle: BundleManifest, sha: str, why: str) -> None:
    with pytest.raises(BundleInvalid) as caught:
        dsse.check_subjects(statement, bundle, sha, "b.tar")
    assert str(caught.value).startswith("b.tar: ") and why in str(caught.value), str(caught.value)


def test_subjects_must_be_exactly_the_files_and_bundle_json(signed: tuple[BundleManifest, bytes, bytes]) -> None:
    statement, bundle, sha = _statement(signed)
    dsse.check_subjects(statement, bundle, sha, "b.tar")
    _subjects_refused(statement, bundle, "f" * 64, "bundle.json: not the signed one")
    dropped = {**statement, "subject": statement["subject"][:-1]}
    _subjects_refused(dropped, bundle, sha, f"{bundle.files[-1].path}: listed in bundle.json but not signed")
    added = {**statement, "subject": [*statement["subject"], {"name": "artifacts/x", "digest": {"sha256": "0" * 64}}]}
    _subjects_refused(added, bundle, sha, "\"artifacts/x\": signed but not listed in bundle.json")
    twice = {**statement, "subject": [*statement["subject"], statement["subject"][1]]}
    _subjects_refused(twice, bundle, sha, "names \"artifacts/dvc.lock\" twice")
    other = dataclasses.replace(bundle.files[0], sha256="e" * 64)
    changed = dataclasses.replace(bundle, files=(other, *bundle.files[1:]))
    _subjects_refused(statement, changed, sha, f"{other.path}: bundle.json says sha256 {'e' * 64}")
    _subjects_refused({**statement, "predicate": {**statement["predicate"], "aggregate": "sha256:" + "0" * 64}},
                      bundle, sha, "the signed aggregate")
    moved = dataclasses.replace(bundle, provenance=dataclasses.replace(bundle.provenance, environment="stage"))
    _subjects_refused(statement, moved, sha, "the signed provenance is not bundle.json's")
