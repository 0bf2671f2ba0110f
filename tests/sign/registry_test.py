"""Signatures on the real registry (and in layouts and archives): made by mlci, checked by an independent path (plain
HTTP reads of the raw manifest and payload, `cryptography` over the payload's bytes), appended and never dropped,
idempotent; tampering, another digest, another key and no signature each refused by `mlci verify` in one line naming
the digest (exit 1); TLS with basic auth; an unreachable registry (exit 3); no key material anywhere."""
from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from mlci import cli
from mlci.oci.archive import ArchiveEndpoint
from mlci.oci.auth import Credentials
from mlci.oci.copy import LayoutEndpoint, RegistryEndpoint, copy
from mlci.oci.layout import Layout
from mlci.oci.manifest import MANIFEST_TYPES, OCI_MANIFEST, Manifest
from mlci.oci.reference import DockerRef
from mlci.oci.registry import Registry as Client
from mlci.promote.settings import Signing
from mlci.sign import cosign, keys
from mlci.sign.tag import signature_tag
from tests.sign.support import KeyPair, layout_image, p256
from tests.testing.procs import free_port
from tests.testing.registry import (
    Registry,
    access_log,
    auth_headers,
    plain_http,
    pulled_blob,
    push_random_image,
    session,
)

REPO = "team/model"
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"  # the spec's names, not mlci's constants
SIGNATURE = "dev.cosignproject.cosign/signature"


def _endpoint(reg: Registry, repo: str = REPO) -> RegistryEndpoint:
    credentials = Credentials(*reg.auth) if reg.auth else None
    return RegistryEndpoint(Client(reg.host, plain_http=reg.ca_bundle is None, credentials=credentials,
                                   ca_bundle=str(reg.ca_bundle) if reg.ca_bundle else None), repo)


def _key(pair: KeyPair) -> keys.SigningKey:
    return keys.load_signing_key(Signing(key_file=str(pair.private), password_env="PW" if pair.password else None),
                                 base=Path("/"), environ={"PW": pair.password or ""})


def _raw_manifest(reg: Registry, reference: str, repo: str = REPO) -> tuple[bytes, str]:
    response = session(reg).get(f"{reg.url}/v2/{repo}/manifests/{reference}", timeout=30, headers={
        "Accept": ", ".join(MANIFEST_TYPES), **auth_headers(reg, [f"repository:{repo}:pull"])})
    assert response.status_code == 200, response.text
    return response.content, response.headers["Content-Type"]


def _put_manifest(reg: Registry, reference: str, data: bytes, repo: str = REPO) -> None:
    response = session(reg).put(f"{reg.url}/v2/{repo}/manifests/{reference}", data=data, timeout=30, headers={
        "Content-Type": OCI_MANIFEST, **auth_headers(reg, [f"repository:{repo}:pull,push"])})
    assert response.status_code == 201, response.text


def _put_blob(reg: Registry, data: bytes, repo: str = REPO) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    http = session(reg)
    headers = auth_headers(reg, [f"repository:{repo}:pull,push"])
    location = http.post(f"{reg.url}/v2/{repo}/blobs/uploads/", headers=headers, timeout=30).headers["Location"]
    url = (location if location.startswith("http") else reg.url + location)
    done = http.put(url + ("&" if "?" in url else "?") + f"digest={digest}", data=data, headers=headers, timeout=30)
    assert done.status_code == 201, done.text
    return digest


def independently_verified(reg: Registry, digest: str, public_pem: bytes, repo: str = REPO) -> list[dict[str, Any]]:
    """What a verifier that shares no code with mlci finds: the tag by the spec's rule, the raw manifest, each
    payload blob by its digest, ECDSA P-256/SHA-256 over the payload's exact bytes, then the claims. Returns the
    claims of the payloads whose signature verified."""
    tag = "sha256-" + digest.split(":", 1)[1] + ".sig"
    tags = session(reg).get(f"{reg.url}/v2/{repo}/tags/list", timeout=30,
                            headers=auth_headers(reg, [f"repository:{repo}:pull"])).json()["tags"]
    assert tag in tags
    data, content_type = _raw_manifest(reg, tag, repo)
    assert content_type == "application/vnd.oci.image.manifest.v1+json"
    body = json.loads(data)
    assert body["mediaType"] == content_type
    assert body["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    public = load_pem_public_key(public_pem)
    assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1"
    found = []
    for layer in body["layers"]:
        assert layer["mediaType"] == SIMPLE_SIGNING
        payload = pulled_blob(reg, repo, layer["digest"])
        assert "sha256:" + hashlib.sha256(payload).hexdigest() == layer["digest"] and len(payload) == layer["size"]
        try:
            public.verify(base64.b64decode(layer["annotations"][SIGNATURE]), payload, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            continue
        claims = json.loads(payload)
        assert claims["critical"]["type"] == "cosign container image signature"
        assert claims["critical"]["image"]["docker-manifest-digest"] == digest
        found.append(claims)
    return found


def _verify(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], image: str, key: Path,
            *flags: str) -> tuple[int, str, str]:
    code = cli.main(["verify", image, "--key", str(key), *flags])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """mlci run from an empty directory (no mlci.yaml: defaults)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _files_under(root: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def _assert_no_key_material(pair: KeyPair, *texts: str | bytes) -> None:
    private = load_pem_private_key(pair.private.read_bytes(), pair.password.encode() if pair.password else None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    scalar = private.private_numbers().private_value.to_bytes(32, "big")
    for text in texts:
        data = text.encode() if isinstance(text, str) else text
        assert scalar not in data and scalar.hex().encode() not in data
        for line in pair.pem_lines():
            assert line.encode() not in data
        if pair.password:
            assert pair.password.encode() not in data


def test_a_signature_made_by_mlci_verifies_by_an_independent_path(
        registry: Registry, in_tmp: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    pair = p256(in_tmp / "keys", password="promotion-key-password")
    digest = push_random_image(registry, REPO, "v1.2.0")
    reference = cosign.identity(DockerRef(registry.host, REPO))
    signed = cosign.sign(_endpoint(registry), digest, _key(pair), docker_reference=reference)
    assert signed.added and signed.tag == signature_tag(digest)
    [claims] = independently_verified(registry, digest, pair.public.read_bytes())
    assert claims == {"critical": {"identity": {"docker-reference": f"{registry.host}/{REPO}"},
                                   "image": {"docker-manifest-digest": digest},
                                   "type": "cosign container image signature"}, "optional": None}
    data, _ = _raw_manifest(registry, signed.tag)
    assert "sha256:" + hashlib.sha256(data).hexdigest() == signed.manifest.digest
    body = json.loads(data)
    config = pulled_blob(registry, REPO, body["config"]["digest"])
    assert config == (b'{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{"created":'
                      b'"0001-01-01T00:00:00Z"}],"os":"","rootfs":{"type":"layers","diff_ids":["'
                      + body["layers"][0]["digest"].encode() + b'"]},"config":{}}')

    monkeypatch.setenv("MLCI_REGISTRIES", plain_http(registry.host)["MLCI_REGISTRIES"])
    code, out, err = _verify(monkeypatch, capsys, f"docker://{registry.host}/{REPO}:v1.2.0", pair.public)
    assert code == 0, err
    fingerprint = keys.load_public_key(pair.public).fingerprint
    assert out == (f"verified: docker://{registry.host}/{REPO}:v1.2.0@{digest}: 1 signature by key {fingerprint} "
                   f"(docker-reference {registry.host}/{REPO})\n")
    code, out, err = _verify(monkeypatch, capsys, f"docker://{registry.host}/{REPO}@{digest}", pair.public, "--json")
    assert code == 0 and json.loads(out)["signatures"] == [{
        "layer": 1, "payload": body["layers"][0]["digest"], "docker_reference": f"{registry.host}/{REPO}",
        "optional": None, "key": fingerprint}]
    _assert_no_key_material(pair, out, err, _files_under(registry.root), registry.log_file.read_bytes())


def test_another_key_appends_a_layer_and_signing_again_changes_nothing(registry: Registry, tmp_path: Path) -> None:
    first, second = p256(tmp_path / "a"), p256(tmp_path / "b")
    digest = push_random_image(registry, REPO, "v1")
    endpoint = _endpoint(registry)
    one = cosign.sign(endpoint, digest, _key(first), docker_reference="stage.bank/team/model")
    before = json.loads(_raw_manifest(registry, one.tag)[0])
    two = cosign.sign(endpoint, digest, _key(second), docker_reference="stage.bank/team/model")
    after = json.loads(_raw_manifest(registry, one.tag)[0])
    assert two.added and two.manifest.digest != one.manifest.digest
    assert after["layers"][0] == before["layers"][0] and len(after["layers"]) == 2  # the first is kept as it was
    assert after["layers"][1]["annotations"][SIGNATURE] == two.signature != one.signature
    assert len(independently_verified(registry, digest, first.public.read_bytes())) == 1
    assert len(independently_verified(registry, digest, second.public.read_bytes())) == 1
    puts = [e for e in access_log(registry) if e.method == "PUT" and "/manifests/" in e.target]
    again = cosign.sign(endpoint, digest, _key(first), docker_reference="stage.bank/team/model")
    assert not again.added and again.manifest.digest == two.manifest.digest and again.layer == one.layer
    assert [e for e in access_log(registry) if e.method == "PUT" and "/manifests/" in e.target] == puts
    # the promoted copy's own identity is another payload: a third layer, the other two untouched
    prod = cosign.sign(endpoint, digest, _key(first), docker_reference="prod.bank/team/model",
                       optional={"mlci.environment": "prod"})
    final = json.loads(_raw_manifest(registry, one.tag)[0])
    assert prod.added and final["layers"][:2] == after["layers"] and len(final["layers"]) == 3
    assert [v.docker_reference for v in cosign.verify(endpoint, digest, _key(first).public)] == [
        "stage.bank/team/model", "prod.bank/team/model"]


def test_a_signature_image_copied_in_keeps_the_destinations_signatures(registry: Registry, tmp_path: Path) -> None:
    dev_key, prod_key = p256(tmp_path / "dev"), p256(tmp_path / "prod")
    digest = push_random_image(registry, "dev/model", "v1")
    src, dst = _endpoint(registry, "dev/model"), _endpoint(registry, REPO)
    cosign.sign(src, digest, _key(dev_key), docker_reference=f"{registry.host}/dev/model")
    tag = signature_tag(digest)
    copy(src, digest, dst, None)
    copy(src, tag, dst, None)  # the signature image's blobs (and the manifest, untagged)
    incoming = src.get_manifest(tag)
    assert cosign.unite(dst, digest, incoming).digest == incoming.digest  # a new tag: stored as it is
    cosign.sign(dst, digest, _key(prod_key), docker_reference=f"{registry.host}/{REPO}")
    # the source gains a signature (a re-promotion from dev): copied in, the destination's kept
    cosign.sign(src, digest, _key(prod_key), docker_reference="stage.bank/dev/model")
    copy(src, tag, dst, None)
    united = cosign.unite(dst, digest, src.get_manifest(tag))
    body = json.loads(_raw_manifest(registry, tag)[0])
    assert united.digest == "sha256:" + hashlib.sha256(_raw_manifest(registry, tag)[0]).hexdigest()
    references = [json.loads(pulled_blob(registry, REPO, layer["digest"]))["critical"]["identity"]["docker-reference"]
                  for layer in body["layers"]]
    assert references == [f"{registry.host}/dev/model", f"{registry.host}/{REPO}", "stage.bank/dev/model"]
    config = json.loads(pulled_blob(registry, REPO, body["config"]["digest"]))
    assert config["rootfs"]["diff_ids"] == [layer["digest"] for layer in body["layers"]]
    assert len(config["history"]) == 3
    assert len(independently_verified(registry, digest, dev_key.public.read_bytes())) == 1
    assert len(independently_verified(registry, digest, prod_key.public.read_bytes())) == 2
    puts = len([e for e in access_log(registry) if e.method == "PUT" and "/manifests/" in e.target])
    assert cosign.unite(dst, digest, src.get_manifest(tag)) == united  # nothing missing: nothing written
    assert len([e for e in access_log(registry) if e.method == "PUT" and "/manifests/" in e.target]) == puts


class _Contended(RegistryEndpoint):
    """A registry endpoint where another signer's write lands over mlci's first one (read-modify-write race)."""

    overwrite: bytes = b""

    def put_manifest(self, manifest: Manifest, tag: str | None, *, child: bool = False) -> None:
        super().put_manifest(manifest, tag, child=child)
        if self.overwrite:
            other, self.overwrite = self.overwrite, b""
            self.registry.put_manifest(self.repository, str(tag), Manifest.of(other, OCI_MANIFEST))


def test_a_signature_lost_to_a_concurrent_signer_is_appended_again(registry: Registry, tmp_path: Path) -> None:
    ours, theirs = p256(tmp_path / "ours"), p256(tmp_path / "theirs")
    digest = push_random_image(registry, REPO, "v1")
    plain = _endpoint(registry)
    cosign.sign(plain, digest, _key(theirs), docker_reference="r.bank/team/model")
    their_manifest, _ = _raw_manifest(registry, signature_tag(digest))
    contended = _Contended(plain.registry, REPO)
    contended.overwrite = their_manifest  # what the other signer, who read before our write, puts back
    signed = cosign.sign(contended, digest, _key(ours), docker_reference="r.bank/team/model")
    assert signed.added
    assert len(independently_verified(registry, digest, ours.public.read_bytes())) == 1
    assert len(independently_verified(registry, digest, theirs.public.read_bytes())) == 1


def test_tampering_another_digest_another_key_and_no_signature_are_refused(
        registry: Registry, in_tmp: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    pair, stranger = p256(in_tmp / "k"), p256(in_tmp / "stranger")
    monkeypatch.setenv("MLCI_REGISTRIES", plain_http(registry.host)["MLCI_REGISTRIES"])
    signed_image = push_random_image(registry, REPO, "signed")
    edited = push_random_image(registry, REPO, "edited")
    moved = push_random_image(registry, REPO, "moved")
    unsigned = push_random_image(registry, REPO, "unsigned")
    endpoint = _endpoint(registry)
    for digest in (signed_image, edited):
        cosign.sign(endpoint, digest, _key(pair), docker_reference=f"{registry.host}/{REPO}")

    # the payload edited (another identity), the signature left as it was
    tag = signature_tag(edited)
    body = json.loads(_raw_manifest(registry, tag)[0])
    payload = json.loads(pulled_blob(registry, REPO, body["layers"][0]["digest"]))
    payload["critical"]["identity"]["docker-reference"] = "evil.example/model"
    forged = json.dumps(payload, separators=(",", ":")).encode()
    body["layers"][0].update(digest=_put_blob(registry, forged), size=len(forged))
    _put_manifest(registry, tag, json.dumps(body).encode())
    assert independently_verified(registry, edited, pair.public.read_bytes()) == []
    # a signature of another digest put under this one's tag
    _put_manifest(registry, signature_tag(moved), _raw_manifest(registry, signature_tag(signed_image))[0])

    fingerprint = keys.load_public_key(pair.public).fingerprint
    other = keys.load_public_key(stranger.public).fingerprint
    cases = [(edited, pair.public, f"no valid signature by key {fingerprint} in {tag}: signature 1: does not verify "
                                   "with this key (signed by another key, or the payload was changed)"),
             (moved, pair.public, f"signature 1: its payload is for {signed_image}, not for this image"),
             (signed_image, stranger.public,
              f"no valid signature by key {other} in {signature_tag(signed_image)}: signature 1: does not "
              "verify with this key"),
             (unsigned, pair.public, f"not signed: no signature tag {signature_tag(unsigned)}")]
    for digest, key, reason in cases:
        image = f"docker://{registry.host}/{REPO}@{digest}"
        code, out, err = _verify(monkeypatch, capsys, image, key)
        assert code == 1 and out == "" and len(err.strip().splitlines()) == 1, (reason, err)
        assert err.startswith(f"mlci: error: {image}: {digest}: ") and reason in err, err
    code, out, _ = _verify(monkeypatch, capsys, f"docker://{registry.host}/{REPO}:moved", pair.public, "--json")
    assert code == 1 and json.loads(out)["verified"] is False and signed_image in json.loads(out)["reason"]
    code, _, err = _verify(monkeypatch, capsys, f"docker://{registry.host}/{REPO}:signed", pair.public)
    assert code == 0, err


def test_over_tls_with_basic_auth_and_an_unreachable_registry(registry_tls: Registry, in_tmp: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    pair = p256(in_tmp / "k")
    digest = push_random_image(registry_tls, REPO, "v1")
    cosign.sign(_endpoint(registry_tls), digest, _key(pair), docker_reference=f"{registry_tls.host}/{REPO}")
    assert len(independently_verified(registry_tls, digest, pair.public.read_bytes())) == 1
    monkeypatch.setenv("REG_USER", str(registry_tls.username))
    monkeypatch.setenv("REG_PASSWORD", str(registry_tls.password))
    settings = {"username_env": "REG_USER", "password_env": "REG_PASSWORD", "ca_bundle": str(registry_tls.ca_bundle)}
    monkeypatch.setenv("MLCI_REGISTRIES", json.dumps({registry_tls.host: settings}))
    image = f"docker://{registry_tls.host}/{REPO}:v1"
    code, out, err = _verify(monkeypatch, capsys, image, pair.public)
    assert code == 0 and out.startswith(f"verified: {image}@{digest}: 1 signature"), err
    assert str(registry_tls.password) not in out + err
    monkeypatch.setenv("MLCI_REGISTRIES", json.dumps({registry_tls.host: {k: v for k, v in settings.items()
                                                                           if k != "ca_bundle"}}))
    code, out, err = _verify(monkeypatch, capsys, image, pair.public)  # the test CA not trusted: no answer
    assert code == 3 and out == "" and len(err.strip().splitlines()) == 1 and registry_tls.host in err
    down = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLCI_REGISTRIES", plain_http(down)["MLCI_REGISTRIES"])
    code, out, err = _verify(monkeypatch, capsys, f"docker://{down}/{REPO}:v1", pair.public)
    assert code == 3 and out == "" and len(err.strip().splitlines()) == 1 and down in err


def test_layouts_and_archives_are_signed_and_verified(
        in_tmp: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    pair = p256(in_tmp / "k")
    root = in_tmp / "layout"
    digest = layout_image(root)
    layout = LayoutEndpoint(Layout(root))
    signed = cosign.sign(layout, digest, _key(pair), docker_reference="prod.bank/team/model")
    for image in (f"oci:{root}:v1", f"oci:{root}"):  # untagged: the one image, its signature tag aside
        code, out, err = _verify(monkeypatch, capsys, image, pair.public)
        assert code == 0 and out.startswith(f"verified: {image}@{digest}: 1 signature"), err
    archive = in_tmp / "bundle.tar"
    target = ArchiveEndpoint(archive)
    copy(layout, "v1", target, "v1")
    copy(layout, signed.tag, target, signed.tag)
    target.commit()
    code, out, err = _verify(monkeypatch, capsys, f"oci-archive:{archive}:v1", pair.public)
    assert code == 0 and "1 signature" in out, err
    # the payload's bytes changed on disk: a layout does not check blobs as it reads them, the verifier does
    payload = Layout(root).blob_path(signed.layer.digest)
    payload.write_bytes(payload.read_bytes().replace(b"prod.bank", b"evil.bank"))
    code, out, err = _verify(monkeypatch, capsys, f"oci:{root}:v1", pair.public)
    assert code == 1 and "its payload: blob" in err and "digest did not match" in err and digest in err
    _assert_no_key_material(pair, _files_under(root), archive.read_bytes())
