"""The byte layout pinned against what cosign writes: sigstore's SIGNATURE_SPEC (field names, media types, the tag,
the annotation), the payload bytes sigstore/sigstore's own tests expect, and a signature image captured from a real
`cosign sign --key ... --tlog-upload=false` run (cosign v3.0.4), which mlci must rebuild byte for byte and accept."""
from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from mlci.core.errors import UsageError
from mlci.oci.copy import LayoutEndpoint
from mlci.oci.layout import Layout
from mlci.oci.manifest import OCI_MANIFEST, Descriptor, Manifest, sha256_digest
from mlci.promote.settings import Signing
from mlci.sign import cosign, keys
from mlci.sign.tag import signature_tag
from tests.sign.support import layout_image, p256

D34D = "sha256:" + "d34db33f" * 8

# sigstore/sigstore pkg/signature/payload/payload_test.go (the payloads cosign signs), verbatim.
SIGSTORE_NULL_OPTIONAL = (b'{"critical":{"identity":{"docker-reference":"example.com/test/image"},"image":'
                          b'{"docker-manifest-digest":"' + D34D.encode() + b'"},"type":"cosign container image '
                          b'signature"},"optional":null}')
SIGSTORE_CLAIMED_IDENTITY = (b'{"critical":{"identity":{"docker-reference":"docker.io/library/test:1.2.3"},"image":'
                             b'{"docker-manifest-digest":"' + D34D.encode() + b'"},"type":"cosign container image '
                             b'signature"},"optional":null}')

# A genuine cosign v3.0.4 signature image (`cosign sign --key cosign.key --tlog-upload=false` against a local
# registry, the classic `.sig` format), captured byte for byte and published as a test fixture by a public Go project
# (tobby-fetch, internal/sigverify); the subject was localhost:15381/tobby/fixture@COSIGN_SUBJECT.
COSIGN_SUBJECT = "sha256:f20c43161d73848408ef247f0ec7111b19fe58ffebc0cbcaa0d2c8bda4967268"
COSIGN_PUB = b"""-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEA9oFvTJJuu0cszKBsiuqfFYN3NLV
meleaASYW5l+nqDxoUg4f8177owlgVD89pZQ9jUxP8dbibmDJpvcjBo9RQ==
-----END PUBLIC KEY-----
"""
COSIGN_PAYLOAD = (b'{"critical":{"identity":{"docker-reference":"localhost:15381/tobby/fixture"},"image":'
                  b'{"docker-manifest-digest":"' + COSIGN_SUBJECT.encode() + b'"},"type":"cosign container image '
                  b'signature"},"optional":null}')
COSIGN_SIGNATURE = "MEUCIEB+pz4s+9yxG+Om/bukeAfwloKFEISUhxLvIYlP02P8AiEAz1oNkilC+cprxcrEHqN0vxM+zvP34ikHFzi8e7Sevls="
COSIGN_MANIFEST = (
    b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":'
    b'"application/vnd.oci.image.config.v1+json","size":233,"digest":"sha256:2122b6ad0794d3fdae43a4b477cf1d95d4a38d3'
    b'c5f10631e199676039b876e37"},"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","size":'
    b'245,"digest":"sha256:3a29d26a2fc848d25ccf9c2288194ca90599e70ef69087644f186e5e7331f28b","annotations":{"dev.'
    b'cosignproject.cosign/signature":"' + COSIGN_SIGNATURE.encode() + b'"}}]}')


def test_the_payload_is_the_bytes_sigstore_expects() -> None:
    assert cosign.payload("example.com/test/image", D34D) == SIGSTORE_NULL_OPTIONAL
    assert cosign.payload("docker.io/library/test:1.2.3", D34D) == SIGSTORE_CLAIMED_IDENTITY
    assert cosign.payload("localhost:15381/tobby/fixture", COSIGN_SUBJECT) == COSIGN_PAYLOAD
    # optional claims: a Go map (sorted keys) of strings, HTML characters escaped as Go's json.Marshal does
    claimed = cosign.payload("r.bank/team/model", D34D, {"z": "<a&b>", "env": "prod", "line": "\u2028\n"})
    assert claimed.endswith(b',"optional":{"env":"prod","line":"\\u2028\\n","z":"\\u003ca\\u0026b\\u003e"}}')
    with pytest.raises(UsageError):
        cosign.payload("r.bank/team/model", "sha256:short")


def test_a_genuine_cosign_signature_image_is_rebuilt_byte_for_byte_and_verifies(tmp_path: Path) -> None:
    layer = Descriptor(cosign.SIMPLE_SIGNING, sha256_digest(COSIGN_PAYLOAD), len(COSIGN_PAYLOAD),
                       {cosign.SIGNATURE: COSIGN_SIGNATURE})
    manifest, config, config_data = cosign._appended(None, [layer.to_json()], "the tag")
    assert manifest.data == COSIGN_MANIFEST  # config, its digest and size, every field in cosign's order
    assert config.digest == "sha256:2122b6ad0794d3fdae43a4b477cf1d95d4a38d3c5f10631e199676039b876e37"
    # the genuine signature image, stored as cosign pushed it, is what `mlci verify` accepts with cosign.pub
    layout = Layout(tmp_path / "layout")
    layout.init()
    for blob in (COSIGN_PAYLOAD, config_data):
        layout.put_blob(sha256_digest(blob), io.BytesIO(blob))
    tag = signature_tag(COSIGN_SUBJECT)
    layout.put_manifest(Manifest.of(COSIGN_MANIFEST, OCI_MANIFEST), tag)
    public = keys.public_from_pem(COSIGN_PUB, "cosign.pub")
    [verified] = cosign.verify(LayoutEndpoint(layout), COSIGN_SUBJECT, public)
    assert verified.docker_reference == "localhost:15381/tobby/fixture" and verified.optional is None
    # the identity is informative (cosign's default does not match it); asked for, it is matched
    with pytest.raises(cosign.NotVerified, match=re.escape("names 'localhost:15381/tobby/fixture', not 'r.bank/x'")):
        cosign.verify(LayoutEndpoint(layout), COSIGN_SUBJECT, public, docker_reference="r.bank/x")
    other = p256(tmp_path / "other")
    with pytest.raises(cosign.NotVerified, match="does not verify with this key"):
        cosign.verify(LayoutEndpoint(layout), COSIGN_SUBJECT, keys.load_public_key(other.public))


def test_an_mlci_signature_has_the_spec_layout(tmp_path: Path) -> None:
    """SIGNATURE_SPEC's Storage and Payload sections, field by field, on a signature mlci made."""
    pair = p256(tmp_path / "keys")
    key = keys.load_signing_key(Signing(key_file=str(pair.private)), base=tmp_path, environ={})
    digest = layout_image(tmp_path / "image")
    layout = Layout(tmp_path / "image")
    signed = cosign.sign(LayoutEndpoint(layout), digest, key, docker_reference="registry.bank:5000/team/model")
    # Tag-based discovery: replace `:` by `-`, append `.sig`
    assert signed.tag == "sha256-" + digest.removeprefix("sha256:") + ".sig" and layout.has_tag(signed.tag)
    body = json.loads(LayoutEndpoint(layout).get_manifest(signed.tag).data)
    assert body["schemaVersion"] == 2 and body["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert body["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    [entry] = body["layers"]
    assert entry["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    assert list(entry["annotations"]) == ["dev.cosignproject.cosign/signature"]
    payload = layout.blob_path(entry["digest"]).read_bytes()
    assert len(payload) == entry["size"]
    document = json.loads(payload)
    assert document == {"critical": {"identity": {"docker-reference": "registry.bank:5000/team/model"},
                                     "image": {"docker-manifest-digest": digest},
                                     "type": "cosign container image signature"}, "optional": None}
    r, s = decode_dss_signature(base64.b64decode(entry["annotations"]["dev.cosignproject.cosign/signature"],
                                                 validate=True))  # base64 of an ASN.1 DER ECDSA signature
    assert 0 < r and 0 < s
    config = json.loads(layout.blob_path(body["config"]["digest"]).read_bytes())
    assert config["rootfs"] == {"type": "layers", "diff_ids": [entry["digest"]]}
    assert config["history"] == [{"created": "0001-01-01T00:00:00Z"}]


def _signed_layout(tmp_path: Path, payloads: list[bytes], key: keys.SigningKey, subject: str) -> LayoutEndpoint:
    """A layout whose `.sig` of `subject` holds `payloads`, each signed by `key` (so the claims are what is tested)."""
    layout = Layout(tmp_path / "hostile")
    layout.init()
    layers = []
    for data in payloads:
        layout.put_blob(sha256_digest(data), io.BytesIO(data))
        layers.append(Descriptor(cosign.SIMPLE_SIGNING, sha256_digest(data), len(data),
                                 {cosign.SIGNATURE: base64.b64encode(key.sign(data)).decode()}).to_json())
    manifest, config, config_data = cosign._appended(None, layers, "hostile")
    layout.put_blob(config.digest, io.BytesIO(config_data))
    layout.put_manifest(manifest, signature_tag(subject))
    return LayoutEndpoint(layout)


def test_signed_payloads_that_are_not_simple_signing_are_refused_and_never_crash(tmp_path: Path) -> None:
    pair = p256(tmp_path / "keys")
    key = keys.load_signing_key(Signing(key_file=str(pair.private)), base=tmp_path, environ={})
    good = cosign.payload("r.bank/team/model", D34D)
    text = good.decode()
    hostile = [
        b"[" * 100_000 + b"]" * 100_000,  # nesting deeper than any parser's stack
        b"not json", b"\xff\xfe", b"[]", b'{"critical":[]}', b'{"critical":{"type":"atomic container signature"}}',
        text.replace('"optional":null', '"optional":[1]').encode(),
        text.replace('"optional":null', '"optional":NaN').encode(),
        text.replace('"docker-manifest-digest"', '"docker-manifest-digest":"sha256:' + "0" * 64
                     + '","Docker-manifest-digest"').encode(),  # the digest twice, in two cases: ambiguous
        text.replace('"type"', '"type":"x","type"').encode(),  # a key given twice
        cosign.payload("r.bank/team/model", "sha256:" + "1" * 64),  # another digest
        b"x" * (cosign.MAX_PAYLOAD + 1),
    ]
    with pytest.raises(cosign.NotVerified) as exc:
        cosign.verify(_signed_layout(tmp_path, hostile, key, D34D), D34D, key.public)
    assert "\n" not in str(exc.value) and f"(and {len(hostile) - cosign.SHOWN_PROBLEMS} more)" in str(exc.value)
    for payload in hostile:
        with pytest.raises(cosign.NotVerified):
            cosign.verify(_signed_layout(tmp_path / payload[:8].hex(), [payload], key, D34D), D34D, key.public)
    # the spec's own example capitalises the key; Go's decoder (cosign) and mlci accept it
    capitalised = text.replace('"docker-manifest-digest"', '"Docker-manifest-digest"').encode()
    [verified] = cosign.verify(_signed_layout(tmp_path / "spec", [capitalised], key, D34D), D34D, key.public)
    assert verified.docker_reference == "r.bank/team/model"
