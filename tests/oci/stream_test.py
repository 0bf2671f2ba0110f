"""Blobs of unknown digest streamed into each destination (a layer as it is built): a real registry,
through the fault-injecting proxy, a layout and an archive. Digest and size computed on the way, two
chunks in memory (one filled while the other is sent), a drop between chunks resumed in the session, a session
the registry cancelled reported as StreamLost, and nothing left behind by abort()."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mlci.oci.archive import ArchiveEndpoint
from mlci.oci.copy import LayoutEndpoint, RegistryEndpoint
from mlci.oci.layout import Layout
from mlci.oci.manifest import sha256_digest
from mlci.oci.registry import Registry as Client
from mlci.oci.transport import BlobWriter, StreamLost
from tests.testing import faultproxy
from tests.testing.faultproxy import Fault, FaultProxy
from tests.testing.registry import Registry, access_log, pulled_blob

fault_proxies = faultproxy.fault_proxies  # the fixture
CHUNK = 256 << 10
BLOB = os.urandom(6 * CHUNK + 12345)  # 7 chunks
MEDIA = "application/vnd.oci.image.layer.v1.tar"


def _stream(writer: BlobWriter, data: bytes, piece: int = 100_003) -> None:
    """Write `data` in pieces that do not line up with the chunks."""
    for start in range(0, len(data), piece):
        writer.write(data[start:start + piece])


def _proxied(reg: Registry, proxies: list[FaultProxy], faults: list[Fault]) -> tuple[RegistryEndpoint, FaultProxy]:
    proxy = FaultProxy(reg.host, faults)
    proxies.append(proxy)
    return RegistryEndpoint(Client(proxy.host, plain_http=True, chunk_size=CHUNK), "team/stream"), proxy


def test_a_registry_gets_the_stream_in_chunks_with_the_digest_computed_on_the_way(
        registry: Registry, fault_proxies: list[FaultProxy]) -> None:
    dest, proxy = _proxied(registry, fault_proxies, [])
    writer = dest.blob_writer(MEDIA)
    _stream(writer, BLOB)
    blob = writer.finish()
    assert (blob.digest, blob.size, blob.media_type) == (sha256_digest(BLOB), len(BLOB), MEDIA)
    assert pulled_blob(registry, "team/stream", blob.digest) == BLOB
    patches = [s for s in proxy.seen if s.method == "PATCH"]
    assert len(patches) == 7 and max(s.body_bytes for s in patches) == CHUNK  # a chunk per PATCH
    assert proxy.upload_bytes() == len(BLOB)
    small = dest.blob_writer(MEDIA)  # under one chunk: one PUT with the body, no PATCH
    small.write(b"tiny layer")
    assert small.finish().digest == sha256_digest(b"tiny layer")
    assert len([s for s in proxy.seen if s.method == "PATCH"]) == 7
    assert dest.has_blob(sha256_digest(b"tiny layer"))


def test_the_next_chunk_is_filled_while_one_is_in_flight(registry: Registry, fault_proxies: list[FaultProxy]) -> None:
    """A slow registry (each upload request held 0.4 s): the write that fills the first chunk returns at once,
    the one that fills the second waits for the first to be through; the blob arrives whole."""
    proxy = FaultProxy(registry.host, [], delay=0.4)
    fault_proxies.append(proxy)
    dest = RegistryEndpoint(Client(proxy.host, plain_http=True, chunk_size=CHUNK), "team/overlap")
    writer = dest.blob_writer(MEDIA)
    started = time.monotonic()
    writer.write(BLOB[:CHUNK])
    first = time.monotonic() - started
    writer.write(BLOB[CHUNK:2 * CHUNK])
    second = time.monotonic() - started
    writer.write(BLOB[2 * CHUNK:])
    blob = writer.finish()
    assert first < 0.2 <= 0.4 <= second
    assert blob.digest == sha256_digest(BLOB) and pulled_blob(registry, "team/overlap", blob.digest) == BLOB


def test_a_drop_between_chunks_resumes_the_stream_in_its_session(registry: Registry,
                                                                 fault_proxies: list[FaultProxy]) -> None:
    dest, proxy = _proxied(registry, fault_proxies, [Fault("PATCH", 3, "drop_before")])
    writer = dest.blob_writer(MEDIA)
    _stream(writer, BLOB)
    blob = writer.finish()
    assert [f.action for f in proxy.fired()] == ["drop_before"]
    assert blob.digest == sha256_digest(BLOB) and pulled_blob(registry, "team/stream", blob.digest) == BLOB
    assert proxy.upload_bytes() < 1.1 * len(BLOB)
    assert len([s for s in proxy.seen if s.method == "POST"]) == 1  # the same session throughout


def test_a_session_cancelled_mid_chunk_is_a_stream_lost_and_nothing_stays(registry: Registry,
                                                                          fault_proxies: list[FaultProxy]) -> None:
    dest, proxy = _proxied(registry, fault_proxies, [Fault("PATCH", 3, "drop_mid_body")])
    writer = dest.blob_writer(MEDIA)
    with pytest.raises(StreamLost, match="lost its session after"):
        _stream(writer, BLOB)
        writer.finish()
    assert [f.action for f in proxy.fired()] == ["drop_mid_body"]
    assert not dest.has_blob(sha256_digest(BLOB))


def test_abort_cancels_the_upload_session(registry: Registry) -> None:
    dest = RegistryEndpoint(Client(registry.host, plain_http=True, chunk_size=CHUNK), "team/aborted")
    writer = dest.blob_writer(MEDIA)
    _stream(writer, BLOB[:3 * CHUNK])
    writer.abort()
    deletes = [e for e in access_log(registry) if e.method == "DELETE" and "/team/aborted/blobs/uploads/" in e.target]
    assert [e.status for e in deletes] == [204]
    assert not dest.has_blob(sha256_digest(BLOB[:3 * CHUNK]))


def test_a_layout_gets_the_blob_under_its_digest_and_abort_leaves_nothing(tmp_path: Path) -> None:
    dest = LayoutEndpoint(Layout(tmp_path / "layout"))
    writer = dest.blob_writer(MEDIA)
    _stream(writer, BLOB)
    blob = writer.finish()
    assert (blob.digest, blob.size) == (sha256_digest(BLOB), len(BLOB))
    assert dest.layout.blob_path(blob.digest).read_bytes() == BLOB
    aborted = dest.blob_writer(MEDIA)
    _stream(aborted, BLOB[:1000])
    aborted.abort()
    assert sorted(p.name for p in (tmp_path / "layout" / "blobs" / "sha256").iterdir()) == [blob.digest[7:]]


def test_an_archive_holds_the_streamed_blob_after_commit(tmp_path: Path) -> None:
    dest = ArchiveEndpoint(tmp_path / "image.tar")
    writer = dest.blob_writer(MEDIA)
    _stream(writer, BLOB)
    blob = writer.finish()
    dest.commit()
    with ArchiveEndpoint(tmp_path / "image.tar").open_blob(blob.digest) as handle:
        assert handle.read() == BLOB
    aborted = ArchiveEndpoint(tmp_path / "other.tar").blob_writer(MEDIA)
    aborted.write(b"x" * 1000)
    aborted.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.tar"]
