"""The test registries behave like a real one: each auth mode, TLS, pushing and the upload count."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.testing.registry import (
    OCI_MANIFEST,
    Registry,
    access_log,
    auth_headers,
    blob_upload_count,
    push_random_image,
    session,
    start_registry,
    stop_registry,
)


def challenge(response: requests.Response) -> tuple[str, dict[str, str]]:
    """The scheme and parameters of a WWW-Authenticate header."""
    scheme, _, rest = response.headers["WWW-Authenticate"].partition(" ")
    return scheme, dict(re.findall(r'(\w+)="([^"]*)"', rest))


def jwt_part(token: str, index: int) -> dict[str, Any]:
    """Decode the JWT header (0) or claims (1) without verifying."""
    part = token.split(".")[index]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def get_token(reg: Registry, scope: str, auth: tuple[str, str] | None) -> requests.Response:
    """Ask the registry's issuer for a token, as a client would."""
    assert reg.realm is not None
    return session(reg).get(reg.realm, params={"service": "mlci-test-registry", "scope": scope}, auth=auth,
                            timeout=10)


def test_anonymous_ping_push_and_pull(registry: Registry) -> None:
    http = session(registry)
    ping = http.get(f"{registry.url}/v2/", timeout=10)
    assert (ping.status_code, ping.headers["Docker-Distribution-Api-Version"]) == (200, "registry/2.0")
    assert registry.host.startswith("127.0.0.1:") and registry.url == f"http://{registry.host}"

    layer = b"code layer"
    digest = push_random_image(registry, "team/model", "v1", layers=[layer, 3000])

    by_tag = http.get(f"{registry.url}/v2/team/model/manifests/v1", headers={"Accept": OCI_MANIFEST}, timeout=10)
    assert by_tag.status_code == 200 and by_tag.headers["Docker-Content-Digest"] == digest
    assert "sha256:" + hashlib.sha256(by_tag.content).hexdigest() == digest
    manifest = by_tag.json()
    assert manifest["mediaType"] == OCI_MANIFEST and [d["size"] for d in manifest["layers"]] == [len(layer), 3000]
    by_digest = http.get(f"{registry.url}/v2/team/model/manifests/{digest}", headers={"Accept": OCI_MANIFEST},
                         timeout=10)
    assert by_digest.content == by_tag.content
    for descriptor in [manifest["config"], *manifest["layers"]]:
        blob = http.get(f"{registry.url}/v2/team/model/blobs/{descriptor['digest']}", timeout=10)
        assert blob.status_code == 200 and len(blob.content) == descriptor["size"]
        assert "sha256:" + hashlib.sha256(blob.content).hexdigest() == descriptor["digest"]
    first_layer = http.get(f"{registry.url}/v2/team/model/blobs/{manifest['layers'][0]['digest']}", timeout=10)
    assert first_layer.content == layer
    assert (registry.root / "docker" / "registry" / "v2" / "repositories" / "team" / "model").is_dir()


def test_missing_things_answer_oci_errors(registry: Registry) -> None:
    http = session(registry)
    manifest = http.get(f"{registry.url}/v2/team/none/manifests/latest", timeout=10)
    assert manifest.status_code == 404
    assert manifest.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    blob = http.get(f"{registry.url}/v2/team/none/blobs/sha256:{'0' * 64}", timeout=10)
    assert blob.status_code == 404 and blob.json()["errors"][0]["code"] == "BLOB_UNKNOWN"


def test_blob_upload_count_counts_completed_uploads_per_repo(registry: Registry) -> None:
    assert blob_upload_count(registry) == 0
    push_random_image(registry, "team/a", layers=[100, 200])  # two layers + the config
    push_random_image(registry, "team/b", layers=[5])
    assert blob_upload_count(registry) == 5
    assert (blob_upload_count(registry, "team/a"), blob_upload_count(registry, "team/b")) == (3, 2)
    methods = [(entry.method, entry.status) for entry in access_log(registry) if "/team/b/" in entry.target]
    assert methods == [("POST", 202), ("PUT", 201), ("POST", 202), ("PUT", 201), ("PUT", 201)]


def test_basic_auth(registry_basic: Registry) -> None:
    reg = registry_basic
    http = session(reg)
    anonymous = http.get(f"{reg.url}/v2/", timeout=10)
    assert anonymous.status_code == 401
    assert challenge(anonymous) == ("Basic", {"realm": "mlci-test"})
    assert anonymous.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert reg.auth is not None
    assert http.get(f"{reg.url}/v2/", auth=reg.auth, timeout=10).status_code == 200
    assert http.get(f"{reg.url}/v2/", auth=(reg.auth[0], "wrong"), timeout=10).status_code == 401
    assert http.get(f"{reg.url}/v2/", auth=("nobody", reg.auth[1]), timeout=10).status_code == 401

    digest = push_random_image(reg, "team/model", "v1")
    assert http.get(f"{reg.url}/v2/team/model/manifests/v1", timeout=10).status_code == 401
    pulled = http.get(f"{reg.url}/v2/team/model/manifests/{digest}", auth=reg.auth,
                      headers={"Accept": OCI_MANIFEST}, timeout=10)
    assert pulled.status_code == 200 and pulled.headers["Docker-Content-Digest"] == digest


def test_token_flow_end_to_end(registry_token: Registry) -> None:
    reg = registry_token
    http = session(reg)
    ping = http.get(f"{reg.url}/v2/", timeout=10)
    assert ping.status_code == 401
    assert challenge(ping) == ("Bearer", {"realm": reg.realm, "service": "mlci-test-registry"})

    digest = push_random_image(reg, "team/model", "v1")  # minted directly: not in reg.issued
    assert reg.issued == []
    url = f"{reg.url}/v2/team/model/manifests/v1"
    denied = http.get(url, headers={"Accept": OCI_MANIFEST}, timeout=10)
    scheme, params = challenge(denied)
    assert (denied.status_code, scheme) == (401, "Bearer")
    assert params == {"realm": reg.realm, "service": "mlci-test-registry", "scope": "repository:team/model:pull"}
    assert denied.json()["errors"][0]["code"] == "UNAUTHORIZED"

    answer = get_token(reg, "repository:team/model:pull", reg.auth)
    assert answer.status_code == 200
    body = answer.json()
    assert body["token"] == body["access_token"] and body["expires_in"] == 300 and body["issued_at"].endswith("Z")
    header, claims = jwt_part(body["token"], 0), jwt_part(body["token"], 1)
    assert header["alg"] == "ES256" and header["x5c"] and header["kid"].count(":") == 11
    assert claims["iss"] == "mlci-test-issuer" and claims["aud"] == "mlci-test-registry"
    assert claims["sub"] == reg.username and claims["exp"] - claims["iat"] == 300
    assert claims["access"] == [{"type": "repository", "name": "team/model", "actions": ["pull"]}]

    pulled = http.get(url, headers={"Accept": OCI_MANIFEST, "Authorization": f"Bearer {body['token']}"}, timeout=10)
    assert pulled.status_code == 200 and pulled.headers["Docker-Content-Digest"] == digest
    assert [(t.scopes, t.account, t.status) for t in reg.issued] == [(("repository:team/model:pull",),
                                                                      reg.username, 200)]

    # a pull-only token cannot start an upload: the challenge names the missing scope
    upload = http.post(f"{reg.url}/v2/team/model/blobs/uploads/", timeout=10,
                       headers={"Authorization": f"Bearer {body['token']}"})
    assert upload.status_code == 401
    scope, error = challenge(upload)[1]["scope"], challenge(upload)[1]["error"]
    assert error == "insufficient_scope"
    assert scope in ("repository:team/model:pull,push", "repository:team/model:push,pull")  # Go map order


def test_token_issuer_refusals_and_scopes(registry_token: Registry) -> None:
    reg = registry_token
    assert get_token(reg, "repository:x:pull", None).status_code == 401
    assert get_token(reg, "repository:x:pull", (str(reg.username), "wrong")).status_code == 401
    wrong_service = session(reg).get(str(reg.realm), params={"service": "other", "scope": "repository:x:pull"},
                                     auth=reg.auth, timeout=10)
    assert wrong_service.status_code == 400
    both = session(reg).get(str(reg.realm), auth=reg.auth, timeout=10, params=[
        ("service", "mlci-test-registry"), ("scope", "repository:a/b:pull,push"), ("scope", "repository:c:pull")])
    assert both.status_code == 200
    assert jwt_part(both.json()["token"], 1)["access"] == [
        {"type": "repository", "name": "a/b", "actions": ["pull", "push"]},
        {"type": "repository", "name": "c", "actions": ["pull"]}]
    assert [t.status for t in reg.issued] == [401, 401, 400, 200]
    assert reg.token_issuer is not None
    assert reg.token_issuer.requested_scopes()[-2:] == ["repository:a/b:pull,push", "repository:c:pull"]


def test_registry_token_verification(registry_token: Registry) -> None:
    reg = registry_token
    issuer = reg.token_issuer
    assert issuer is not None
    url = f"{reg.url}/v2/"
    access = [{"type": "repository", "name": "x", "actions": ["pull"]}]

    def status(token: str) -> tuple[int, str | None]:
        response = session(reg).get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        return response.status_code, challenge(response)[1].get("error") if response.status_code == 401 else None

    assert status(issuer.sign(issuer.claims("u", access))) == (200, None)
    assert status(issuer.sign(issuer.claims("u", access), kid=False)) == (200, None)  # x5c alone
    assert status(issuer.sign(issuer.claims("u", access), x5c=False)) == (200, None)  # libtrust kid alone
    assert status(issuer.sign(issuer.claims("u", access), x5c=False, kid=False)) == (401, "invalid_token")
    assert status(issuer.sign(issuer.claims("u", access, expires_in=-120))) == (401, "invalid_token")
    assert status(issuer.sign({**issuer.claims("u", access), "aud": "other"})) == (401, "invalid_token")
    assert status(issuer.sign({**issuer.claims("u", access), "iss": "other"})) == (401, "invalid_token")
    token = issuer.sign(issuer.claims("u", access))
    assert status(token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")) == (401, "invalid_token")


def test_tls_registry_needs_the_ca(registry_tls: Registry) -> None:
    reg = registry_tls
    assert reg.url == f"https://{reg.host}" and reg.ca_bundle is not None and reg.ca_bundle.is_file()
    http = session(reg)
    assert http.get(f"{reg.url}/v2/", auth=reg.auth, timeout=10).status_code == 200
    assert http.get(f"{reg.url}/v2/", timeout=10).status_code == 401
    untrusting = requests.Session()
    untrusting.trust_env = False
    with pytest.raises(requests.exceptions.SSLError):
        untrusting.get(f"{reg.url}/v2/", auth=reg.auth, timeout=10)
    digest = push_random_image(reg, "team/model", "v1")
    assert http.head(f"{reg.url}/v2/team/model/manifests/{digest}", auth=reg.auth,
                     headers={"Accept": OCI_MANIFEST}, timeout=10).status_code == 200


def test_token_over_tls_and_stop(tmp_path: Path) -> None:
    started = time.monotonic()
    reg = start_registry("token", tls=True, directory=tmp_path / "reg")
    try:
        assert time.monotonic() - started < 5
        assert reg.realm is not None and reg.realm.startswith("https://127.0.0.1:")
        answer = get_token(reg, "repository:team/model:pull,push", reg.auth)
        assert answer.status_code == 200
        headers = {"Authorization": f"Bearer {answer.json()['token']}"}
        assert session(reg).post(f"{reg.url}/v2/team/model/blobs/uploads/", headers=headers,
                                 timeout=10).status_code == 202
        assert auth_headers(reg, ["repository:team/model:pull"])["Authorization"].startswith("Bearer ")
    finally:
        stop_registry(reg)
    assert reg.process is not None and reg.process.returncode is not None
    with pytest.raises(requests.exceptions.ConnectionError):
        session(reg).get(f"{reg.url}/v2/", timeout=2)
    stop_registry(reg)  # idempotent
