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
from mlci.oci.registry import Registry as Client
from mlci.oci.registry import RegistryError, sha256_digest
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
    with pytest.raises(RegistryError, match="SSLError"):
        untrusted.ping()


def test_blobs_stream_verified_and_upload_monolithic_or_chunked(registry: Registry) -> None:
    client = _client(registry)
    for size, chunk in ((3000, None), (5 * 1024 + 7, 2048)):
        data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        digest = sha256_digest(data)
        assert not client.blob_exists("team/data", digest)
        client.upload_blob("team/data", digest, io.BytesIO(data), len(data), chunk_size=chunk)
        assert client.blob_exists("team/data", digest)
        with client.open_blob("team/data", digest) as stream:
            assert stream.read() == data
    with pytest.raises(RegistryError, match=r"DIGEST_INVALID|digest"):
        client.upload_blob("team/data", "sha256:" + "1" * 64, io.BytesIO(b"other bytes"), 11)


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
    reread, _ = open_endpoint(parse(f"oci-archive:{tmp_path / 'bundle.tar'}:2.0"))
    back, _ = open_endpoint(parse(f"docker://{registry.host}/prod/arch:2.0"), plain_http=(registry.host,))
    assert copy(reread, "2.0", back, "2.0").digest == digest
    assert _client(registry).get_manifest("prod/arch", "2.0").digest == digest
    first = (tmp_path / "bundle.tar").read_bytes()
    again, _ = open_endpoint(parse(f"oci-archive:{tmp_path / 'again.tar'}:2.0"))
    copy(reread, "2.0", again, "2.0")
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
