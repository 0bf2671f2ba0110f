"""The `registries` section: parsing and its problems, secrets by env name, the deprecated image.* keys,
credentials from the named variables or an auth file, mirrors tried in order for pulls."""
from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlci import settings as cfg
from mlci.core import log
from mlci.core.errors import ConfigError
from mlci.oci.copy import MirroredSource, RegistryEndpoint, open_endpoint, open_source
from mlci.oci.reference import parse
from mlci.oci.registry import NotFound, RegistryError
from mlci.oci.settings import DEFAULT_CHUNK_SIZE, DEFAULT_CONCURRENCY
from tests.testing.registry import Registry, access_log, push_random_image, start_registry, stop_registry


def _load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> cfg.Loaded:
    (tmp_path / "mlci.yaml").write_text(text)
    return cfg.load(None, tmp_path, environ=env or {})


def test_a_registries_section_is_read_per_host_and_its_env_values_are_secrets(tmp_path: Path) -> None:
    secret = "s3cr3t-registry-token-value"
    loaded = _load(tmp_path, (
        "version: 1\n"
        "registries:\n"
        "  registry.bank.example:\n"
        "    username_env: REG_USER\n"
        "    password_env: REG_TOKEN\n"
        "    mirrors: [mirror.bank.example/hub, '127.0.0.1:5001']\n"
        "    chunk_size: 1048576\n"
        "    concurrency: 3\n"
        "  127.0.0.1:5000:\n"
        "    plain_http: true\n"), env={"REG_USER": "ci", "REG_TOKEN": secret})
    bank = loaded.config.registries["registry.bank.example"]
    assert (bank.username_env, bank.password_env, bank.chunk_size, bank.concurrency) == (
        "REG_USER", "REG_TOKEN", 1 << 20, 3)
    assert bank.mirrors == ("mirror.bank.example/hub", "127.0.0.1:5001")
    local = loaded.config.registries["127.0.0.1:5000"]
    assert local.plain_http and (local.chunk_size, local.concurrency) == (DEFAULT_CHUNK_SIZE, DEFAULT_CONCURRENCY)
    assert secret in log.registered_secrets()
    assert secret not in log.redact(f"token {secret}")


def test_registries_problems_name_the_line_and_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, "version: 1\nregistries:\n  reg.example:\n    plain_http: true\n    unknown: 1\n")
    assert caught.value.problems[0].startswith("mlci.yaml:5: registries.reg.example.unknown: unknown key")
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, (
            "version: 1\n"
            "registries:\n"
            "  127.0.0.1:5000:\n"
            "    chunk_size: 10\n"
            "  reg.example:\n"
            "    concurrency: 0\n"
            "    password_env: 'glpat-pasted-token!'\n"
            "  'https://reg.example/v2':\n"
            "    plain_http: true\n"
            "  other.example:\n"
            "    mirrors: [other.example, 'http://x']\n"))
    problems = caught.value.problems
    assert "mlci.yaml:4: registries.127.0.0.1:5000.chunk_size: 10: must be 65536..268435456 bytes" in problems
    assert "mlci.yaml:6: registries.reg.example.concurrency: 0: must be 1..32" in problems
    assert any(p.startswith("mlci.yaml:7: registries.reg.example.password_env: must be the NAME") for p in problems)
    assert any("registries.reg.example: give both username_env and password_env" in p for p in problems)
    assert any("registries.https://reg.example/v2: not a registry host" in p for p in problems)
    assert any("registries.other.example.mirrors: [0]: the host itself is not a mirror" in p for p in problems)
    assert any("registries.other.example.mirrors: [1]: not HOST[:PORT][/PREFIX]" in p for p in problems)
    assert not any("glpat-pasted-token" in p for p in problems)


def test_the_deprecated_image_keys_warn_and_are_still_honoured(registry: Registry, tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="mlci"):
        loaded = _load(tmp_path, f"version: 1\nimage:\n  plain_http: ['{registry.host}']\n")
    assert any("image.plain_http is deprecated" in r.getMessage() and registry.host in r.getMessage()
               for r in caplog.records)
    image = loaded.config.image
    endpoint, _ = open_endpoint(parse(f"docker://{registry.host}/team/x:1"), image.plain_http, image.ca_bundle,
                                loaded.config.registries)
    endpoint.check_writable()  # plain HTTP, as the old key says
    caplog.clear()
    with caplog.at_level("WARNING", logger="mlci"):
        _load(tmp_path, f"version: 1\nregistries:\n  '{registry.host}':\n    plain_http: true\n")
    assert not [r for r in caplog.records if "deprecated" in r.getMessage()]


def test_credentials_come_from_the_named_variables_or_the_hosts_auth_file(registry_basic: Registry,
                                                                          tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    assert registry_basic.username and registry_basic.password
    monkeypatch.setenv("HOME", str(tmp_path))  # no docker config.json to fall back on
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    host = registry_basic.host
    ref = parse(f"docker://{host}/team/creds:1")
    loaded = _load(tmp_path, f"version: 1\nregistries:\n  '{host}':\n    plain_http: true\n"
                             "    username_env: REG_USER\n    password_env: REG_PASS\n    chunk_size: 131072\n"
                             "    concurrency: 2\n")
    with pytest.raises(ConfigError, match=r"registries\.127\.0\.0\.1:\d+: REG_USER, REG_PASS not set"):
        open_endpoint(ref, registries=loaded.config.registries)
    monkeypatch.setenv("REG_USER", registry_basic.username)
    monkeypatch.setenv("REG_PASS", registry_basic.password)
    endpoint, _ = open_endpoint(ref, registries=loaded.config.registries)
    endpoint.check_writable()
    assert isinstance(endpoint, RegistryEndpoint)
    assert (endpoint.registry.chunk_size, endpoint.parallel_puts()) == (131072, 2)
    monkeypatch.setenv("REG_PASS", "wrong-password")
    wrong, _ = open_endpoint(ref, registries=loaded.config.registries)
    with pytest.raises(RegistryError):
        wrong.check_writable()
    auth = tmp_path / "auth.json"
    token = base64.b64encode(f"{registry_basic.username}:{registry_basic.password}".encode()).decode()
    auth.write_text(json.dumps({"auths": {host: {"auth": token}}}))
    by_file = _load(tmp_path, f"version: 1\nregistries:\n  '{host}':\n    plain_http: true\n"
                              f"    auth_file: {auth}\n")
    endpoint, _ = open_endpoint(ref, registries=by_file.config.registries)
    endpoint.check_writable()


@pytest.fixture
def mirror() -> Iterator[Registry]:
    started = start_registry()
    yield started
    stop_registry(started)


def test_pulls_try_the_mirrors_in_order_then_the_host(registry: Registry, mirror: Registry,
                                                       tmp_path: Path) -> None:
    cached = push_random_image(mirror, "hub/team/base", "1", layers=[800])
    only_upstream = push_random_image(registry, "team/base", "2", layers=[900])
    before = len(access_log(registry))
    loaded = _load(tmp_path, (f"version: 1\nregistries:\n  '{registry.host}':\n    plain_http: true\n"
                              f"    mirrors: ['{mirror.host}/hub']\n  '{mirror.host}':\n    plain_http: true\n"))
    source, tag = open_source(parse(f"docker://{registry.host}/team/base:1"), registries=loaded.config.registries)
    assert isinstance(source, MirroredSource)
    manifest = source.get_manifest(tag)
    assert manifest.digest == cached
    with source.open_blob(manifest.blobs()[1].digest) as blob:
        assert len(blob.read()) == 800
    assert access_log(registry)[before:] == []  # the host was not asked
    fallback, tag = open_source(parse(f"docker://{registry.host}/team/base:2"), registries=loaded.config.registries)
    assert fallback.get_manifest(tag).digest == only_upstream  # the mirror has no tag 2: the host answers
    missing, tag = open_source(parse(f"docker://{registry.host}/team/base:3"), registries=loaded.config.registries)
    with pytest.raises(NotFound):
        missing.get_manifest(tag)
    pushed, _ = open_endpoint(parse(f"docker://{registry.host}/team/base:1"), registries=loaded.config.registries)
    assert isinstance(pushed, RegistryEndpoint)  # pushes (and a destination's reads) never go to a mirror


def test_mlci_build_pushes_with_the_registries_section(registry_basic: Registry, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from tests.image.support import build
    from tests.testing.gitlab_ci_local import make_git_repo

    assert registry_basic.username and registry_basic.password
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    monkeypatch.setenv("PUSH_USER", registry_basic.username)
    monkeypatch.setenv("PUSH_PASSWORD", registry_basic.password)
    host = registry_basic.host
    config = {"version": 1, "image": {"name": f"docker://{host}/ml/model", "code": ["src"]},
              "registries": {host: {"plain_http": True, "username_env": "PUSH_USER", "password_env": "PUSH_PASSWORD",
                                    "chunk_size": 65536, "concurrency": 2}}}
    repo = make_git_repo(tmp_path / "repo", {"src/serve.py": "print('serve')\n", "src/table.bin": os.urandom(200_000),
                                             "mlci.yaml": json.dumps(config)})
    run = build(repo, capsys, "--tag", "v1")
    assert run.code == 0, run.err
    assert f"{host}/ml/model" in run.out
    assert "deprecated" not in run.err and registry_basic.password not in run.err + run.out
    patches = [e for e in access_log(registry_basic) if e.method == "PATCH" and e.status == 202]
    assert len(patches) >= 2  # the code layer went up in chunks of chunk_size
