"""The raw client against a real HTTP server (nginx, Nexus's "Disable redeploy" rule) and the REST stand-in."""
from __future__ import annotations

import hashlib
import os
import tracemalloc
from pathlib import Path

import pytest

from mlci.core.errors import ConfigError, ExitCode, UsageError
from mlci.nexus.errors import ArtifactExists, NexusError
from mlci.nexus.raw import LOOK_FIRST, RawRepository
from mlci.oci.settings import RegistrySettings
from tests.nexus.conftest import StartNexus, no_sleep, settings_for
from tests.testing.faultproxy import Fault, FaultProxy
from tests.testing.nginx import access_log
from tests.testing.procs import free_port


def _file(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_an_upload_is_stored_and_checked_by_the_assets_api(start: StartNexus, tmp_path: Path) -> None:
    nexus = start()
    data = os.urandom(70_000)
    repo = RawRepository(nexus.repository_url + "/credit", settings_for(nexus), sleep=no_sleep)

    done = repo.upload("v1.2.0/model.pkl", _file(tmp_path, "model.pkl", data))

    assert nexus.stored("credit/v1.2.0/model.pkl").read_bytes() == data
    assert (done.path, done.size, done.sha256) == ("credit/v1.2.0/model.pkl", len(data), _sha256(data))
    assert (done.state, done.verified, done.algorithm) == ("uploaded", "assets API", "sha256")
    assert done.url == f"{nexus.repository_url}/credit/v1.2.0/model.pkl"
    assert nexus.rest is not None
    assert [s.query["group"] for s in nexus.rest.seen("/search/assets")] == [["/credit/v1.2.0"]]


def test_bytes_an_empty_file_and_the_checksum_file(start: StartNexus, tmp_path: Path) -> None:
    nexus = start()
    repo = RawRepository(nexus.repository_url + "/team", settings_for(nexus), sleep=no_sleep)

    record = repo.upload("m/v1/scan-record.json", b'{"verdict": "pass"}')
    empty = repo.upload("m/v1/model/empty", _file(tmp_path, "empty", b""))
    sums = repo.upload_checksums("m/v1", [record, empty])

    assert nexus.stored("team/m/v1/scan-record.json").read_bytes() == b'{"verdict": "pass"}'
    assert record.sha256 == _sha256(b'{"verdict": "pass"}') and empty.sha256 == _sha256(b"")
    assert sums.path == "team/m/v1/SHA256SUMS"
    assert nexus.stored(sums.path).read_text() == f"{record.sha256}  scan-record.json\n{empty.sha256}  model/empty\n"
    with pytest.raises(UsageError):
        repo.upload_checksums("m/v2", [record])


@pytest.mark.parametrize("size", [1000, LOOK_FIRST + 1], ids=["small: PUT, 400", "large: HEAD first"])
def test_the_same_content_again_is_already_there(start: StartNexus, tmp_path: Path, size: int) -> None:
    nexus = start()
    data = os.urandom(size)
    source = _file(tmp_path, "weights.bin", data)
    repo = RawRepository(nexus.repository_url, settings_for(nexus), sleep=no_sleep)
    repo.upload("m/v1/weights.bin", source)

    again = repo.upload("m/v1/weights.bin", source)

    assert (again.state, again.sha256, again.verified) == ("already there", _sha256(data), "assets API")
    puts = [(a.status, a.request_length) for a in access_log(nexus.nginx) if a.method == "PUT"]
    if size > LOOK_FIRST:
        assert [status for status, _ in puts] == [201]  # looked first: nothing sent again
    else:
        assert [status for status, _ in puts] == [201, 400]


@pytest.mark.parametrize("size", [1000, LOOK_FIRST + 1], ids=["small: PUT, 400", "large: HEAD first"])
def test_other_content_on_an_existing_path_is_refused_naming_both(start: StartNexus, tmp_path: Path,
                                                                    size: int) -> None:
    nexus = start()
    first, second = os.urandom(size), os.urandom(size)
    repo = RawRepository(nexus.repository_url, settings_for(nexus), sleep=no_sleep)
    repo.upload("m/v1/weights.bin", _file(tmp_path, "a.bin", first))

    with pytest.raises(ArtifactExists) as refused:
        repo.upload("m/v1/weights.bin", _file(tmp_path, "b.bin", second))

    assert refused.value.exit_code == ExitCode.GATE_FAILED
    message = str(refused.value)
    assert _sha256(first) in message and _sha256(second) in message
    assert f"{nexus.host}: mlci-raw/m/v1/weights.bin" in message
    assert nexus.stored("m/v1/weights.bin").read_bytes() == first


def test_a_stored_file_that_differs_from_the_upload_is_detected(start: StartNexus, tmp_path: Path) -> None:
    nexus = start()
    assert nexus.rest is not None
    data = os.urandom(4096)
    stored = nexus.stored("m/v1/model.pkl")
    nexus.rest.on_search = lambda: stored.write_bytes(b"other bytes")  # between the PUT and the check
    repo = RawRepository(nexus.repository_url, settings_for(nexus), sleep=no_sleep)

    with pytest.raises(NexusError) as failed:
        repo.upload("m/v1/model.pkl", _file(tmp_path, "model.pkl", data))

    assert failed.value.exit_code == ExitCode.ENVIRONMENT
    assert _sha256(b"other bytes") in str(failed.value) and _sha256(data) in str(failed.value)
    assert "assets API" in str(failed.value)


def test_without_a_listing_the_stored_file_is_read_back(start: StartNexus, tmp_path: Path) -> None:
    nexus = start(index_delay=3600.0)  # never in the search index: the client gives up waiting, then reads back
    assert nexus.rest is not None
    data = os.urandom(4096)
    stored = nexus.stored("m/v1/model.pkl")
    repo = RawRepository(nexus.repository_url, settings_for(nexus), sleep=no_sleep)
    assert repo.upload("m/v1/good.pkl", _file(tmp_path, "good.pkl", data)).verified == "read-back"
    nexus.rest.on_search = lambda: stored.write_bytes(b"other bytes")

    with pytest.raises(NexusError) as failed:
        repo.upload("m/v1/model.pkl", _file(tmp_path, "model.pkl", data))

    assert _sha256(b"other bytes") in str(failed.value) and "read-back" in str(failed.value)
    assert len(nexus.rest.seen("/search/assets")) == 2 * 6  # each upload: five waits and a last look


def test_the_search_index_is_waited_for(start: StartNexus, tmp_path: Path) -> None:
    nexus = start(index_delay=0.4)
    assert nexus.rest is not None
    repo = RawRepository(nexus.repository_url, settings_for(nexus))  # real waits: 0.25 s, 0.5 s

    done = repo.upload("m/v1/metrics.json", b'{"auc": 0.91}')

    assert done.verified == "assets API"
    assert len(nexus.rest.seen("/search/assets")) >= 2


def test_a_host_without_the_rest_api_is_checked_by_reading_back(start: StartNexus) -> None:
    nexus = start(rest=False)
    repo = RawRepository(nexus.repository_url, settings_for(nexus), sleep=no_sleep)

    done = repo.upload("m/v1/dvc.lock", b"schema: '2.0'\n")

    assert (done.verified, done.algorithm, done.sha256) == ("read-back", "sha256", _sha256(b"schema: '2.0'\n"))
    gets = [a for a in access_log(nexus.nginx) if a.method == "GET"]
    assert [a.path for a in gets] == ["/service/rest/v1/search/assets", "/repository/mlci-raw/m/v1/dvc.lock"]


def test_every_page_of_the_search_is_read(start: StartNexus) -> None:
    nexus = start(search_page_size=2)
    assert nexus.rest is not None
    repo = RawRepository(nexus.repository_url, settings_for(nexus), sleep=no_sleep)
    done = [repo.upload(f"m/v1/file-{i}", f"content {i}".encode()) for i in range(4)]
    before = len(nexus.rest.seen("/search/assets"))

    found = [repo.assets.find(f"m/v1/file-{i}") for i in range(4)]  # two of them are on the second page
    missing = repo.assets.find("m/v1/file-9")

    assert {d.verified for d in done} == {"assets API"}
    assert [(f.path, f.checksum["sha256"]) for f in found if f] == [(d.path, d.sha256) for d in done]
    assert missing is None
    # four assets at two a page: the second page is full, so its token leads to an empty third page
    pages = nexus.rest.seen("/search/assets")[before:]
    assert ["continuationToken" in s.query for s in pages[-3:]] == [False, True, True]
    assert len(pages) == 2 * 1 + 2 * 2 + 3


def test_a_nexus_without_sha256_is_checked_by_sha1(start: StartNexus, tmp_path: Path) -> None:
    nexus = start(checksums=("md5", "sha1"))
    assert nexus.rest is not None
    repo = RawRepository(nexus.repository_url, settings_for(nexus), sleep=no_sleep)
    assert repo.upload("m/v1/a.bin", b"first").algorithm == "sha1"

    with pytest.raises(ArtifactExists) as refused:
        repo.upload("m/v1/a.bin", b"second")

    assert hashlib.sha1(b"first").hexdigest() in str(refused.value)
    assert hashlib.sha1(b"second").hexdigest() in str(refused.value)


def test_a_dropped_upload_is_sent_again(start: StartNexus) -> None:
    nexus = start()
    proxy = FaultProxy(nexus.host, [Fault("PUT", 1, "drop_mid_body", path="/repository/")])
    try:
        repo = RawRepository(f"http://{proxy.host}/repository/mlci-raw", settings_for(nexus) | {
            proxy.host: settings_for(nexus)[nexus.host]}, sleep=no_sleep)
        data = os.urandom(200_000)

        done = repo.upload("m/v1/model.pkl", data)
    finally:
        proxy.stop()

    assert done.state == "uploaded" and nexus.stored("m/v1/model.pkl").read_bytes() == data
    assert [s.method for s in proxy.seen if s.method in ("PUT", "HEAD")] == ["PUT", "HEAD", "PUT"]


def test_basic_auth_over_tls_with_a_test_ca(start: StartNexus, tmp_path: Path, caplog: pytest.LogCaptureFixture
                                            ) -> None:
    caplog.set_level("DEBUG")
    nexus = start(auth=True, tls=True)
    server = nexus.nginx
    assert server.username and server.password and server.reader and server.reader_password and server.ca_bundle
    registries = settings_for(nexus, username_env="NX_USER", password_env="NX_PASSWORD",
                              ca_bundle=str(server.ca_bundle))
    env = {"NX_USER": server.username, "NX_PASSWORD": server.password}
    repo = RawRepository(nexus.repository_url, registries, env=env, sleep=no_sleep)

    assert repo.upload("m/v1/model.pkl", b"weights").verified == "assets API"

    failures = []
    for entry, environ in [
            ({"ca_bundle": str(server.ca_bundle)}, {}),  # no credentials
            (dict(registries[nexus.host].__dict__), {**env, "NX_PASSWORD": "wrong-password-123"}),
            (dict(registries[nexus.host].__dict__), {"NX_USER": server.reader, "NX_PASSWORD": server.reader_password}),
            ({"username_env": "NX_USER", "password_env": "NX_PASSWORD"}, env)]:  # the system CAs only
        with pytest.raises(NexusError) as failed:
            RawRepository(nexus.repository_url, {nexus.host: RegistrySettings(**entry)}, env=environ,
                          sleep=no_sleep).upload("m/v1/other.pkl", b"other")
        assert failed.value.exit_code == ExitCode.ENVIRONMENT
        failures.append(str(failed.value))
    assert "401 on PUT /repository/mlci-raw/m/v1/other.pkl: Nexus wants credentials" in failures[0]
    assert "401" in failures[1] and "credentials were refused" in failures[1]
    assert "403" in failures[2] and "nx-repository-view-raw-mlci-raw-add" in failures[2]
    assert "TLS: certificate verify failed" in failures[3]
    assert all(nexus.host in f and "\n" not in f for f in failures)
    output = "\n".join(failures) + caplog.text
    for secret in (server.password, server.reader_password, "wrong-password-123"):
        assert secret not in output


def test_an_unreachable_host_is_exit_3(tmp_path: Path) -> None:
    host = f"127.0.0.1:{free_port()}"
    repo = RawRepository(f"http://{host}/repository/r", {host: RegistrySettings(plain_http=True)}, sleep=no_sleep)

    with pytest.raises(NexusError) as failed:
        repo.upload("m/v1/x", b"x")

    assert failed.value.exit_code == ExitCode.ENVIRONMENT
    assert str(failed.value).startswith(f"Nexus {host}: ") and "/repository/r/m/v1/x: " in str(failed.value)
    assert "cannot connect" in str(failed.value)


def test_plain_http_needs_the_hosts_plain_http(start: StartNexus) -> None:
    nexus = start()
    with pytest.raises(ConfigError) as refused:
        RawRepository(nexus.repository_url, {})
    assert f"registries: {{{nexus.host}: {{plain_http: true}}}}" in str(refused.value)


@pytest.mark.parametrize("path", ["../x", "a//b", "/a", "a/./b", "a/b\n", ""])
def test_paths_are_plain_segments(start: StartNexus, path: str) -> None:
    nexus = start()
    repo = RawRepository(nexus.repository_url, settings_for(nexus), sleep=no_sleep)
    with pytest.raises(UsageError):
        repo.upload(path, b"x")


def test_a_multi_megabyte_upload_keeps_memory_flat(start: StartNexus, tmp_path: Path) -> None:
    nexus = start(rest=False)  # the read-back streams too
    data = os.urandom(48 << 20)
    source = _file(tmp_path, "big.bin", data)
    del data
    repo = RawRepository(nexus.repository_url, settings_for(nexus), sleep=no_sleep)

    tracemalloc.start()
    try:
        done = repo.upload("m/v1/big.bin", source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert done.verified == "read-back" and done.size == 48 << 20
    assert peak < 8 << 20, f"peak {peak / 2**20:.1f} MiB for a 48 MiB upload"
