"""mlci's OCI client against the real CNCF registry: auth modes, TLS, blobs, manifests, tags, copy."""
from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest

from mlci.core.errors import EnvironmentProblem
from mlci.oci.auth import credentials_for
from mlci.oci.copy import LayoutEndpoint, RegistryEndpoint, copy
from mlci.oci.layout import Layout
from mlci.oci.manifest import sha256_digest
from mlci.oci.registry import Registry as Client
from mlci.oci.registry import RegistryError
from tests.testing.registry import Registry, blob_upload_count, push_random_image


def _client(reg: Registry, **kwargs: object) -> Client:
    return Client(reg.host, plain_http=reg.ca_bundle is None, ca_bundle=str(reg.ca_bundle) if reg.ca_bundle else None,
                  **kwargs)  # type: ignore[arg-type]


def _auth_file(tmp_path: Path, reg: Registry) -> dict[str, str]:
    path = tmp_path / "auth.json"
    token = base64.b64encode(f"{reg.username}:{reg.password}".encode()).decode()
    path.write_text(json.dumps({"auths": {reg.host: {"auth": token}}}))
    return {"REGISTRY_AUTH_FILE": str(path)}


def test_basic_auth_with_credentials_from_an_auth_file(registry_basic: Registry, tmp_path: Path) -> None:
    creds = credentials_for(registry_basic.host, _auth_file(tmp_path, registry_basic))
    assert creds is not None and registry_basic.password not in repr(creds)
    _client(registry_basic, credentials=creds).ping()
    with pytest.raises(RegistryError, match="needs credentials"):
        _client(registry_basic).blob_exists("team/model", "sha256:" + "0" * 64)


def test_bearer_token_flow_asks_for_the_right_scope(registry_token: Registry, tmp_path: Path) -> None:
    digest = push_random_image(registry_token, "team/model", "v1", layers=[2048])
    client = _client(registry_token, credentials=credentials_for(registry_token.host,
                                                                 _auth_file(tmp_path, registry_token)))
    manifest = client.get_manifest("team/model", "v1")
    assert manifest.digest == digest and sha256_digest(manifest.data) == digest
    assert "repository:team/model:pull" in registry_token.token_issuer.requested_scopes()


def test_tls_needs_the_ca_bundle(registry_tls: Registry, tmp_path: Path) -> None:
    creds = credentials_for(registry_tls.host, _auth_file(tmp_path, registry_tls))
    _client(registry_tls, credentials=creds).ping()
    untrusted = Client(registry_tls.host, credentials=creds)
    with pytest.raises(RegistryError, match=rf"^registry {registry_tls.host}: GET /v2/: TLS: certificate verify "
                                            rf"failed: .*; trust its CA with registries\.{registry_tls.host}\."
                                            "ca_bundle"):
        untrusted.ping()
    import certifi  # another CA bundle: it trusts the public CAs, not the test registry's

    wrong = Client(registry_tls.host, credentials=creds, ca_bundle=certifi.where())
    with pytest.raises(RegistryError, match=rf"TLS: certificate verify failed: .*; the CA bundle {certifi.where()} "
                                            "does not verify it"):
        wrong.ping()


def test_blobs_stream_verified_and_upload_monolithic_or_chunked(registry: Registry) -> None:
    client = _client(registry)
    for size, chunk in ((3000, None), (5 * 1024 + 7, 2048)):  # one PUT; PATCH chunks then PUT
        data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        digest = sha256_digest(data)
        assert not client.blob_exists("team/data", digest)
        client.upload_blob("team/data", digest, len(data), lambda data=data: io.BytesIO(data), chunk_size=chunk)
        assert client.blob_exists("team/data", digest)
        with client.open_blob("team/data", digest) as stream:
            assert stream.read() == data
    with pytest.raises(RegistryError, match=r"DIGEST_INVALID|digest"):
        client.upload_blob("team/data", "sha256:" + "1" * 64, 11, lambda: io.BytesIO(b"other bytes"))


def test_tags_are_listed_across_pages(registry: Registry) -> None:
    for i in range(3):
        push_random_image(registry, "team/tags", f"v{i}", layers=[64])
    assert sorted(_client(registry).tags("team/tags")) == ["v0", "v1", "v2"]
    assert list(_client(registry).tags("team/none")) == []


def test_copy_registry_to_layout_to_registry_keeps_the_digest_and_reuses_blobs(registry: Registry,
                                                                             tmp_path: Path) -> None:
    digest = push_random_image(registry, "dev/model", "1.0", layers=[4096, 8192])
    client = _client(registry)
    layout = LayoutEndpoint(Layout(tmp_path / "bundle"))
    first = copy(RegistryEndpoint(client, "dev/model"), "1.0", layout, "1.0")
    assert first.digest == digest and len(first.copied) == 3 and first.bytes_copied > 12288
    assert Layout(tmp_path / "bundle").get_manifest("1.0").digest == digest
    uploads = blob_upload_count(registry)
    prod = RegistryEndpoint(client, "prod/model", mount_from=("dev/model",))
    second = copy(layout, "1.0", prod, "1.0")
    assert second.digest == digest and second.copied == [] and len(second.reused) == 3
    assert blob_upload_count(registry) == uploads  # mounted, nothing uploaded again
    assert client.get_manifest("prod/model", "1.0").digest == digest
    again = copy(RegistryEndpoint(client, "dev/model"), "1.0", LayoutEndpoint(Layout(tmp_path / "bundle")), "1.0")
    assert again.copied == [] and again.bytes_copied == 0


def test_a_corrupt_blob_never_gets_its_final_name(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "layout")
    layout.init()
    wrong = "sha256:" + "2" * 64
    with pytest.raises(EnvironmentProblem, match="digest did not match"):
        layout.put_blob(wrong, io.BytesIO(b"not what the digest says"))
    assert not layout.has_blob(wrong)
    assert [p.name for p in (tmp_path / "layout" / "blobs" / "sha256").iterdir()] == []


def test_a_stream_that_does_not_match_its_digest_fails_at_the_end() -> None:
    import io as _io

    from mlci.oci.registry import VerifyingReader
    good = b"layer bytes"
    assert _io.BufferedReader(VerifyingReader(iter([good[:5], good[5:]]), sha256_digest(good), "t")).read() == good
    with pytest.raises(EnvironmentProblem, match="t: digest did not match"):
        _io.BufferedReader(VerifyingReader(iter([b"tampered"]), sha256_digest(good), "t")).read()


def test_oci_archive_round_trip_keeps_the_digest(registry: Registry, tmp_path: Path) -> None:
    from mlci.oci.copy import open_endpoint
    from mlci.oci.reference import parse
    digest = push_random_image(registry, "dev/arch", "2.0", layers=[3000])
    source, tag = open_endpoint(parse(f"docker://{registry.host}/dev/arch:2.0"), plain_http=(registry.host,))
    archive, archive_tag = open_endpoint(parse(f"oci-archive:{tmp_path / 'bundle.tar'}:2.0"))
    assert copy(source, tag, archive, archive_tag).digest == digest
    assert not (tmp_path / "bundle.tar").exists()  # packed once, on commit
    archive.commit()
    reread, _ = open_endpoint(parse(f"oci-archive:{tmp_path / 'bundle.tar'}:2.0"))
    back, _ = open_endpoint(parse(f"docker://{registry.host}/prod/arch:2.0"), plain_http=(registry.host,))
    assert copy(reread, "2.0", back, "2.0").digest == digest
    assert _client(registry).get_manifest("prod/arch", "2.0").digest == digest
    first = (tmp_path / "bundle.tar").read_bytes()
    again, _ = open_endpoint(parse(f"oci-archive:{tmp_path / 'again.tar'}:2.0"))
    copy(reread, "2.0", again, "2.0")
    again.commit()
    assert (tmp_path / "again.tar").read_bytes() == first  # the archive itself is reproducible


def test_a_broken_archive_is_one_clear_error(tmp_path: Path) -> None:
    from mlci.oci.copy import open_endpoint
    from mlci.oci.reference import parse
    (tmp_path / "bad.tar").write_bytes(b"not a tar")
    with pytest.raises(EnvironmentProblem, match=r"bad\.tar: not a readable oci-archive"):
        open_endpoint(parse(f"oci-archive:{tmp_path / 'bad.tar'}"))


def test_copy_reports_one_quiet_line_per_blob_in_ci(registry: Registry, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("CI", "true")
    push_random_image(registry, "dev/quiet", "1", layers=[1_500_000])
    with caplog.at_level("INFO", logger="mlci"):
        source = RegistryEndpoint(_client(registry), "dev/quiet")
        result = copy(source, "1", LayoutEndpoint(Layout(tmp_path / "l")), "1")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("mlci: copying blob")]
    assert len(lines) == len(result.copied) == 2 and any("(1.5 MB)" in line for line in lines)


def test_gitlab_ci_registry_variables_are_used_when_no_auth_file_has_the_host(registry_basic: Registry,
                                                                             tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "CI_REGISTRY": registry_basic.host, "CI_REGISTRY_USER": registry_basic.username,
           "CI_REGISTRY_PASSWORD": registry_basic.password}
    creds = credentials_for(registry_basic.host, env)
    assert creds is not None and creds.username == registry_basic.username
    _client(registry_basic, credentials=creds).ping()
    assert credentials_for("other.registry:5000", env) is None


@pytest.mark.parametrize("content, message", [
    (b"[1, 2]", "expected JSON with `auths`: host -> mapping"),
    (b'{"auths": ["x"]}', "expected JSON with `auths`: host -> mapping"),
    (b'{"auths": {"h:1": "x"}}', "expected JSON with `auths`: host -> mapping"),
    (b'{"auths": {"h:1": {"auth": "%%%"}}}', r"auths\.h:1\.auth: not base64 of `user:password`"),
    (b'{"auths": {"h:1": {"auth": "bm9jb2xvbg=="}}}', r"auths\.h:1\.auth: not base64"),
    (b'{"auths": {"h:1": {"username": 7}}}', "no `auth`, `username`/`password` or `identitytoken`"),
    (b"\xff\xfe{", r"not a readable auth file \(UnicodeDecodeError"),
    (b"{", r"not a readable auth file \(JSONDecodeError"),
])
def test_a_malformed_auth_file_is_one_line_naming_it(tmp_path: Path, content: bytes, message: str) -> None:
    from mlci.core.errors import ConfigError
    path = tmp_path / "auth.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as info:
        credentials_for("h:1", {"REGISTRY_AUTH_FILE": str(path), "HOME": str(tmp_path)})
    assert str(path) in str(info.value) and info.value.exit_code == 2


def test_an_explicit_auth_file_that_is_missing_is_an_error(tmp_path: Path) -> None:
    from mlci.core.errors import ConfigError
    with pytest.raises(ConfigError, match=r"REGISTRY_AUTH_FILE=.*nope\.json: not found"):
        credentials_for("h:1", {"REGISTRY_AUTH_FILE": str(tmp_path / "nope.json"), "HOME": str(tmp_path)})
    assert credentials_for("h:1", {"HOME": str(tmp_path)}) is None  # the default files may be absent


def test_a_credential_helper_is_named_not_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / ".docker").mkdir()
    (tmp_path / ".docker" / "config.json").write_text('{"auths": {}, "credHelpers": {"h:1": "ecr-login"}}')
    with caplog.at_level("WARNING", logger="mlci"):
        assert credentials_for("h:1", {"HOME": str(tmp_path)}) is None
    assert "mlci does not run credential helpers" in caplog.text


def test_a_missing_ca_bundle_is_exit_2_naming_it(tmp_path: Path) -> None:
    from mlci.core.errors import UsageError
    with pytest.raises(UsageError, match=r"CA bundle .*missing\.pem: not found") as info:
        Client("127.0.0.1:1", ca_bundle=str(tmp_path / "missing.pem"))
    assert info.value.exit_code == 2


def test_a_wrong_password_and_a_down_registry_fail_at_the_first_call(registry_basic: Registry) -> None:
    import time

    from mlci.oci.auth import Credentials
    assert registry_basic.username is not None
    wrong = _client(registry_basic, credentials=Credentials(registry_basic.username, "not-the-password"))
    with pytest.raises(RegistryError, match="401 on GET /v2/"):
        wrong.ping()
    from tests.testing.procs import free_port
    started = time.monotonic()
    with pytest.raises(RegistryError, match="ConnectionError"):
        Client(f"127.0.0.1:{free_port()}", plain_http=True).ping()
    assert time.monotonic() - started < 2  # not retried into minutes


def test_push_rights_are_checked_before_anything_is_built(registry_token: Registry, tmp_path: Path) -> None:
    creds = credentials_for(registry_token.host, _auth_file(tmp_path, registry_token))
    client = _client(registry_token, credentials=creds)
    client.check_push("team/model")  # allowed: an upload session is opened and cancelled
    assert registry_token.token_issuer is not None
    registry_token.token_issuer.allowed_actions = {"pull"}
    readonly = _client(registry_token, credentials=creds)
    readonly.ping()
    with pytest.raises(RegistryError, match=r"401 on POST /v2/team/model/blobs/uploads/"):
        readonly.check_push("team/model")


def test_only_a_missing_manifest_is_not_found(registry_basic: Registry) -> None:
    from mlci.oci.auth import Credentials
    from mlci.oci.manifest import NotFound
    assert registry_basic.username is not None and registry_basic.password is not None
    push_random_image(registry_basic, "team/x", "v1", layers=[16])
    client = _client(registry_basic, credentials=Credentials(registry_basic.username, registry_basic.password))
    with pytest.raises(NotFound):
        client.get_manifest("team/x", "v2")
    with pytest.raises(NotFound):
        client.get_manifest("team/never", "v1")
    with pytest.raises(RegistryError) as info:
        _client(registry_basic).get_manifest("team/x", "v2")
    assert not isinstance(info.value, NotFound)  # a refusal is not "not built yet"
