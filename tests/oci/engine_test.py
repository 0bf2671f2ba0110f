"""The OCI engine against the real registry through a fault-injecting proxy: resumable chunked uploads,
a 401 mid-upload, concurrent blob copies, auth state shared by threads, indexes with two platforms."""
from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from mlci.core.errors import EnvironmentProblem
from mlci.oci import registry as registry_module
from mlci.oci.copy import LayoutEndpoint, RegistryEndpoint, copy
from mlci.oci.layout import Layout
from mlci.oci.manifest import OCI_INDEX, OCI_MANIFEST, Manifest, sha256_digest
from mlci.oci.registry import Registry as Client
from mlci.oci.registry import RegistryError
from tests.testing import faultproxy
from tests.testing.faultproxy import Fault, FaultProxy
from tests.testing.registry import Registry, access_log, pulled_blob, push_random_image, session

fault_proxies = faultproxy.fault_proxies  # the fixture
CHUNK = 256 << 10
BLOB = os.urandom(6 * CHUNK + 12345)  # 7 chunks
DIGEST = sha256_digest(BLOB)


class _CountingSource:
    """Opens the blob as a fresh stream each call; counts opens and bytes read (a re-read shows here)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.opens, self.read = data, 0, 0

    def __call__(self) -> BinaryIO:
        self.opens += 1
        source = self

        class Stream(io.BytesIO):
            def read(self, n: int | None = -1) -> bytes:
                data = super().read(n)
                source.read += len(data)
                return data

            def readinto(self, target: Any) -> int:  # how the engine reads a chunk
                n = super().readinto(target)
                source.read += n
                return n

        return Stream(self.data)


def _proxied(reg: Registry, proxies: list[FaultProxy], faults: list[Fault], **kwargs: object) -> tuple[Client,
                                                                                                        FaultProxy]:
    proxy = FaultProxy(reg.host, faults, **kwargs)  # type: ignore[arg-type]
    proxies.append(proxy)
    return Client(proxy.host, plain_http=True, chunk_size=CHUNK), proxy


def test_a_drop_between_chunks_resumes_where_the_session_stands(registry: Registry,
                                                                 fault_proxies: list[FaultProxy]) -> None:
    client, proxy = _proxied(registry, fault_proxies, [Fault("PATCH", 3, "drop_before")])
    source = _CountingSource(BLOB)
    client.upload_blob("team/big", DIGEST, len(BLOB), source)
    assert [f.action for f in proxy.fired()] == ["drop_before"]
    assert hashlib.sha256(pulled_blob(registry, "team/big", DIGEST)).hexdigest() == DIGEST[7:]
    assert source.opens == 1 and source.read == len(BLOB)  # resumed in the same session: the source read once
    assert proxy.upload_bytes() < 1.1 * len(BLOB)
    asked = [s for s in proxy.seen if s.method == "GET" and "/blobs/uploads/" in s.path]
    assert len(asked) == 1  # the session was asked for its offset once


def test_a_drop_of_the_first_chunk_resumes_at_zero(registry: Registry, fault_proxies: list[FaultProxy]) -> None:
    client, proxy = _proxied(registry, fault_proxies, [Fault("PATCH", 1, "drop_before")])
    source = _CountingSource(BLOB)
    client.upload_blob("team/big", DIGEST, len(BLOB), source)
    assert proxy.fired() and pulled_blob(registry, "team/big", DIGEST) == BLOB
    assert source.opens == 1 and sum(1 for s in proxy.seen if s.method == "POST") == 1  # same session


def test_a_5xx_on_a_chunk_resumes_too(registry: Registry, fault_proxies: list[FaultProxy]) -> None:
    client, proxy = _proxied(registry, fault_proxies, [Fault("PATCH", 2, "error_503")])
    client.upload_blob("team/big", DIGEST, len(BLOB), _CountingSource(BLOB))
    assert proxy.fired() and pulled_blob(registry, "team/big", DIGEST) == BLOB
    assert proxy.upload_bytes() < len(BLOB) + CHUNK + 4096  # that one chunk again, nothing more


def test_a_drop_mid_chunk_restarts_the_blob_in_a_new_session(registry: Registry,
                                                             fault_proxies: list[FaultProxy]) -> None:
    client, proxy = _proxied(registry, fault_proxies, [Fault("PATCH", 3, "drop_mid_body")])
    source = _CountingSource(BLOB)
    client.upload_blob("team/big", DIGEST, len(BLOB), source)
    assert [f.action for f in proxy.fired()] == ["drop_mid_body"]
    assert pulled_blob(registry, "team/big", DIGEST) == BLOB
    # docker-registry 2.8 cancels the session (a resume at the reported offset is refused), so the blob
    # restarts from a re-opened source: the bytes sent stay under twice the blob
    assert source.opens == 2
    assert proxy.upload_bytes() < 2.1 * len(BLOB)
    assert sum(1 for s in proxy.seen if s.method == "POST") == 2


def test_a_401_mid_upload_re_sends_the_buffered_chunk_not_the_read_stream(registry_token: Registry,
                                                                           fault_proxies: list[FaultProxy],
                                                                           tmp_path: Path) -> None:
    from mlci.oci.auth import Credentials

    assert registry_token.realm and registry_token.username and registry_token.password
    challenge = (f'Bearer realm="{registry_token.realm}",service="mlci-test-registry",'
                 'scope="repository:team/big:pull,push",error="invalid_token"')
    proxy = FaultProxy(registry_token.host, [Fault("PATCH", 4, "unauthorized"), Fault("PUT", 1, "unauthorized")],
                       challenge=challenge)
    fault_proxies.append(proxy)
    client = Client(proxy.host, plain_http=True, chunk_size=CHUNK,
                    credentials=Credentials(registry_token.username, registry_token.password))
    large, small = _CountingSource(BLOB), _CountingSource(BLOB[:1000])  # chunked; one PUT with the body
    client.upload_blob("team/big", DIGEST, len(BLOB), large)
    client.upload_blob("team/big", sha256_digest(BLOB[:1000]), 1000, small)
    assert len(proxy.fired()) == 2
    assert (large.opens, large.read, small.opens, small.read) == (1, len(BLOB), 1, 1000)
    assert pulled_blob(registry_token, "team/big", DIGEST) == BLOB
    pushes = [t for t in registry_token.issued if "repository:team/big:pull,push" in t.scopes]
    assert len(pushes) == 3  # the first token, and one after each forced expiry


def test_concurrent_blob_uploads_overlap_and_one_at_a_time_does_not(registry: Registry, tmp_path: Path,
                                                                    fault_proxies: list[FaultProxy]) -> None:
    layers = [os.urandom(20_000 + i) for i in range(4)]
    layout = Layout(tmp_path / "src")
    layout.init()
    descriptors = []
    for layer in layers:
        layout.put_blob(sha256_digest(layer), io.BytesIO(layer))
        descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256_digest(layer),
                            "size": len(layer)})
    config = b'{"architecture":"amd64","os":"linux"}'
    layout.put_blob(sha256_digest(config), io.BytesIO(config))
    data = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": descriptors, "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256_digest(config),
        "size": len(config)}}).encode()
    layout.put_manifest(Manifest.of(data, OCI_MANIFEST), "v1")
    for repo, concurrency, expected in (("team/par", 6, range(2, 6)), ("team/seq", 1, range(1, 2))):
        client, proxy = _proxied(registry, fault_proxies, [], delay=0.15)
        result = copy(LayoutEndpoint(layout), "v1", RegistryEndpoint(client, repo, concurrency=concurrency), "v1")
        assert len(result.copied) == 5
        assert proxy.max_in_flight in expected, (repo, proxy.max_in_flight)
        assert client.get_manifest(repo, "v1").digest == sha256_digest(data)


def test_threads_meeting_the_same_401_fetch_one_token(registry_token: Registry) -> None:
    from mlci.oci.auth import Credentials

    assert registry_token.username and registry_token.password
    client = Client(registry_token.host, plain_http=True,
                    credentials=Credentials(registry_token.username, registry_token.password))
    barrier, results, errors = threading.Barrier(8), [], []

    def probe(i: int) -> None:
        barrier.wait()
        try:
            results.append(client.blob_exists("team/shared", "sha256:" + f"{i:x}" * 64))
        except RegistryError as exc:  # pragma: no cover - the failure this test is for
            errors.append(exc)

    threads = [threading.Thread(target=probe, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == [] and results == [False] * 8
    asked = [t for t in registry_token.issued if "repository:team/shared:pull" in t.scopes]
    assert len(asked) == 1


def _push_index(reg: Registry, repo: str) -> tuple[str, list[str]]:
    children = [push_random_image(reg, repo, f"p{i}", layers=[1500 + i]) for i in range(2)]
    http = session(reg)
    manifests = []
    for digest, arch in zip(children, ("amd64", "arm64"), strict=True):
        size = len(http.get(f"{reg.url}/v2/{repo}/manifests/{digest}", headers={"Accept": OCI_MANIFEST},
                            timeout=30).content)
        manifests.append({"mediaType": OCI_MANIFEST, "digest": digest, "size": size,
                          "platform": {"architecture": arch, "os": "linux"}})
    data = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).encode()
    response = http.put(f"{reg.url}/v2/{repo}/manifests/multi", data=data, headers={"Content-Type": OCI_INDEX},
                        timeout=30)
    assert response.status_code == 201
    return sha256_digest(data), children


def test_an_index_is_copied_whole_children_first_and_only_it_is_listed(registry: Registry, tmp_path: Path) -> None:
    index, children = _push_index(registry, "dev/multi")
    client = Client(registry.host, plain_http=True)
    layout_root = tmp_path / "bundle"
    result = copy(RegistryEndpoint(client, "dev/multi"), "multi", LayoutEndpoint(Layout(layout_root)), "multi")
    assert result.digest == index and len(result.copied) == 4  # two configs, two layers
    entries = json.loads((layout_root / "index.json").read_text())["manifests"]
    assert [(e["digest"], e["annotations"]) for e in entries] == [
        (index, {"org.opencontainers.image.ref.name": "multi"})]  # no untagged entry per child
    assert all((layout_root / "blobs" / "sha256" / c[7:]).is_file() for c in children)
    before = len(access_log(registry))
    back = copy(LayoutEndpoint(Layout(layout_root)), "multi", RegistryEndpoint(client, "prod/multi"), "v1")
    assert back.digest == index and client.get_manifest("prod/multi", "v1").digest == index
    puts = [e.target for e in access_log(registry)[before:] if e.method == "PUT" and "/manifests/" in e.target]
    assert puts == [f"/v2/prod/multi/manifests/{c}" for c in children] + ["/v2/prod/multi/manifests/v1"]


def test_a_failed_blob_stops_the_other_uploads_and_writes_no_manifest(registry: Registry, tmp_path: Path,
                                                                      fault_proxies: list[FaultProxy]) -> None:
    layout = Layout(tmp_path / "src")
    layout.put_blob(DIGEST, io.BytesIO(BLOB))
    missing = "sha256:" + "3" * 64
    data = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json", "digest": DIGEST, "size": len(BLOB)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": missing, "size": 5}]}).encode()
    layout.put_manifest(Manifest.of(data, OCI_MANIFEST), "v1")
    client, proxy = _proxied(registry, fault_proxies, [], delay=0.1)
    with pytest.raises(EnvironmentProblem, match=f"blob {missing}: not found"):
        copy(LayoutEndpoint(layout), "v1", RegistryEndpoint(client, "team/broken", concurrency=2), "v1")
    assert proxy.upload_bytes() <= 2 * CHUNK  # the large upload stopped at its next chunk
    assert not [e for e in access_log(registry) if e.method == "PUT" and "/manifests/" in e.target]


def test_a_terminal_gets_one_rich_bar_per_image(registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str],
                                                caplog: pytest.LogCaptureFixture) -> None:
    from mlci.core import log

    digest = push_random_image(registry, "dev/tty", "1", layers=[300_000, 200_000])
    monkeypatch.setattr(log, "interactive", lambda: True)
    with caplog.at_level("INFO", logger="mlci"):
        copy(RegistryEndpoint(Client(registry.host, plain_http=True), "dev/tty"), "1",
             LayoutEndpoint(Layout(tmp_path / "l")), "1")
    err = capsys.readouterr().err
    assert digest[7:19] in err and "━" in err  # the image's bar
    assert not [r for r in caplog.records if "copying blob" in r.getMessage()]  # no CI lines on a terminal


def test_an_oci_archive_is_streamed_in_and_out_and_keeps_its_other_tags(registry: Registry, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import tarfile

    from mlci.oci.archive import ArchiveEndpoint

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))  # anything unpacked would land here
    index, _children = _push_index(registry, "dev/arch")
    single = push_random_image(registry, "dev/arch", "single", layers=[2500])
    client = Client(registry.host, plain_http=True)
    out = tmp_path / "out"
    out.mkdir()
    path = out / "bundle.tar"
    archive = ArchiveEndpoint(path)
    assert copy(RegistryEndpoint(client, "dev/arch"), "multi", archive, "multi").digest == index
    assert [p.name.startswith(".bundle.tar.") for p in out.iterdir()] == [True]  # one temp file, nothing unpacked
    archive.commit()
    assert [p.name for p in out.iterdir()] == ["bundle.tar"]
    first = path.read_bytes()
    again = ArchiveEndpoint(path)  # a second tag into the same archive, in another command
    copy(RegistryEndpoint(client, "dev/arch"), "single", again, "single")
    again.commit()
    with tarfile.open(path) as tar:
        names = tar.getnames()
        entries = json.loads(tar.extractfile("index.json").read())["manifests"]  # type: ignore[union-attr]
    assert len(names) == len(set(names))  # each blob once
    assert {e["annotations"]["org.opencontainers.image.ref.name"]: e["digest"] for e in entries} == {
        "multi": index, "single": single}
    assert copy(ArchiveEndpoint(path), "multi", RegistryEndpoint(client, "prod/arch"), "multi").digest == index
    assert copy(ArchiveEndpoint(path), "single", RegistryEndpoint(client, "prod/arch"), "single").digest == single
    assert client.get_manifest("prod/arch", "multi").digest == index
    assert list(scratch.iterdir()) == [] and [p.name for p in out.iterdir()] == ["bundle.tar"]
    # the same inputs give the same archive bytes
    again_path = out / "again.tar"
    same = ArchiveEndpoint(again_path)
    copy(RegistryEndpoint(client, "dev/arch"), "multi", same, "multi")
    same.commit()
    assert again_path.read_bytes() == first


def test_a_failed_archive_write_leaves_the_old_archive_and_no_temp_file(registry: Registry, tmp_path: Path) -> None:
    from mlci.oci.archive import ArchiveEndpoint
    from mlci.oci.manifest import Descriptor

    push_random_image(registry, "dev/keep", "1", layers=[700])
    client = Client(registry.host, plain_http=True)
    (tmp_path / "out").mkdir()
    path = tmp_path / "out" / "keep.tar"
    archive = ArchiveEndpoint(path)
    copy(RegistryEndpoint(client, "dev/keep"), "1", archive, "1")
    archive.commit()
    before = path.read_bytes()
    broken = ArchiveEndpoint(path)
    with pytest.raises(EnvironmentProblem, match="digest did not match"):
        broken.put_blob(Descriptor("application/octet-stream", "sha256:" + "4" * 64, 3), lambda: io.BytesIO(b"abc"))
    with pytest.raises(EnvironmentProblem, match="not written"):
        broken.commit()
    assert path.read_bytes() == before and [p.name for p in path.parent.iterdir()] == ["keep.tar"]


def test_archives_and_layouts_interoperate_with_skopeo(registry: Registry, tmp_path: Path) -> None:
    import subprocess

    from mlci.oci.archive import ArchiveEndpoint

    index, _children = _push_index(registry, "dev/skopeo")
    single = push_random_image(registry, "dev/skopeo", "single", layers=[1200])
    client = Client(registry.host, plain_http=True)
    ours = tmp_path / "ours.tar"
    archive = ArchiveEndpoint(ours)
    copy(RegistryEndpoint(client, "dev/skopeo"), "multi", archive, "multi")
    copy(RegistryEndpoint(client, "dev/skopeo"), "single", archive, "single")
    archive.commit()

    def skopeo(*args: str) -> None:
        done = subprocess.run(["skopeo", "--insecure-policy", "--tmpdir", str(tmp_path), "copy", "--quiet",
                               "--preserve-digests", "--dest-oci-accept-uncompressed-layers", *args],
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr

    skopeo("--all", f"oci-archive:{ours}:multi", f"oci:{tmp_path / 'theirs'}:multi")  # skopeo reads ours
    skopeo(f"oci-archive:{ours}:single", f"oci:{tmp_path / 'theirs'}:single")
    theirs = Layout(tmp_path / "theirs")
    assert (theirs.get_manifest("multi").digest, theirs.get_manifest("single").digest) == (index, single)
    skopeo(f"oci:{tmp_path / 'theirs'}:single", f"oci-archive:{tmp_path / 'skopeo.tar'}:single")  # we read theirs
    back = copy(ArchiveEndpoint(tmp_path / "skopeo.tar"), "single", RegistryEndpoint(client, "prod/skopeo"), "s")
    assert back.digest == single and client.get_manifest("prod/skopeo", "s").digest == single


def test_credentials_never_follow_an_upload_location_to_another_origin(registry_basic: Registry) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from mlci.oci.auth import Credentials

    seen: list[str | None] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="elsewhere"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert registry_basic.username and registry_basic.password
        client = Client(registry_basic.host, plain_http=True,
                        credentials=Credentials(registry_basic.username, registry_basic.password))
        assert not client.blob_exists("team/x", "sha256:" + "5" * 64)  # the registry's own origin: Basic sent
        assert client.authorization("repository:team/x:pull") is not None
        other = f"http://127.0.0.1:{server.server_address[1]}/v2/team/x/blobs/uploads/abc"
        response = client._request("GET", other, "repository:team/x:pull")
        assert response.status_code == 401 and seen == [None]  # nothing sent, and the challenge not answered
    finally:
        server.shutdown()
        server.server_close()


class _FileSource:
    """The blob as a file (a layout's blob, a layer on disk): opened fresh each call, counted."""

    def __init__(self, path: Path) -> None:
        path.write_bytes(BLOB)
        self.path, self.opens = path, 0

    def __call__(self) -> BinaryIO:
        self.opens += 1
        return self.path.open("rb")


def _patches(proxy: FaultProxy) -> int:
    return sum(1 for s in proxy.seen if s.method == "PATCH")


@pytest.mark.parametrize("action", ["drop_before", "error_503"])
def test_a_file_goes_up_in_spans_streamed_from_it_and_a_failed_span_resumes_by_seeking(
        registry: Registry, fault_proxies: list[FaultProxy], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        action: str) -> None:
    """A blob larger than a span, from a file, is PATCHed a span at a time straight from the file (fewer
    PATCHes than chunks: docker-registry fsyncs after each); a span that failed is sent again from the offset
    the session reports, seeking the same open file there."""
    monkeypatch.setattr(registry_module, "SPAN_SIZE", 2 * CHUNK)  # 4 spans of the 7-chunk blob
    client, proxy = _proxied(registry, fault_proxies, [Fault("PATCH", 2, action)])
    source = _FileSource(tmp_path / "blob")
    client.upload_blob("team/big", DIGEST, len(BLOB), source)
    assert [f.action for f in proxy.fired()] == [action]
    assert pulled_blob(registry, "team/big", DIGEST) == BLOB
    assert source.opens == 1 and sum(1 for s in proxy.seen if s.method == "POST") == 1  # one session
    assert _patches(proxy) == 5  # 4 spans, one of them twice
    assert proxy.upload_bytes() < len(BLOB) + 2 * CHUNK + 4096  # at most that span again


def test_a_span_cut_mid_body_restarts_the_blob_from_the_file(registry: Registry, fault_proxies: list[FaultProxy],
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "SPAN_SIZE", 2 * CHUNK)
    client, proxy = _proxied(registry, fault_proxies, [Fault("PATCH", 2, "drop_mid_body")])
    source = _FileSource(tmp_path / "blob")
    client.upload_blob("team/big", DIGEST, len(BLOB), source)
    assert pulled_blob(registry, "team/big", DIGEST) == BLOB
    assert source.opens == 2 and proxy.upload_bytes() < 2.1 * len(BLOB)  # docker-registry dropped the session


def test_a_401_mid_span_sends_the_span_again_from_its_start(registry_token: Registry, tmp_path: Path,
                                                          fault_proxies: list[FaultProxy],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from mlci.oci.auth import Credentials

    monkeypatch.setattr(registry_module, "SPAN_SIZE", 2 * CHUNK)
    assert registry_token.realm and registry_token.username and registry_token.password
    challenge = (f'Bearer realm="{registry_token.realm}",service="mlci-test-registry",'
                 'scope="repository:team/big:pull,push",error="invalid_token"')
    proxy = FaultProxy(registry_token.host, [Fault("PATCH", 3, "unauthorized")], challenge=challenge)
    fault_proxies.append(proxy)
    client = Client(proxy.host, plain_http=True, chunk_size=CHUNK,
                    credentials=Credentials(registry_token.username, registry_token.password))
    client.upload_blob("team/big", DIGEST, len(BLOB), _FileSource(tmp_path / "blob"))
    assert len(proxy.fired()) == 1 and pulled_blob(registry_token, "team/big", DIGEST) == BLOB
