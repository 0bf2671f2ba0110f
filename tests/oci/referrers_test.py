"""Referrers against the real CNCF registry (no referrers API: the sha256-<hex> fallback index and mlci's journal
tags), concurrent writers in threads and in processes, hostile fallback indexes, basic auth, and OCI layouts."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from mlci.core.errors import UsageError
from mlci.oci import referrers
from mlci.oci.archive import ArchiveEndpoint
from mlci.oci.auth import Credentials
from mlci.oci.copy import LayoutEndpoint, RegistryEndpoint, copy
from mlci.oci.layout import Layout
from mlci.oci.manifest import MANIFEST_TYPES, MAX_MANIFEST, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, Descriptor, Manifest
from mlci.oci.referrers import Blob, ReferrersError
from mlci.oci.registry import Registry as Client
from mlci.oci.registry import RegistryError
from tests.testing.referrers_api import ReferrersApi
from tests.testing.registry import Registry, access_log, auth_headers, blob_upload_count, push_random_image, session
from tests.testing.repos import ROOT

REPO = "team/model"
SIGNATURE = "application/vnd.example.signature.v1+json"
EVIDENCE = "application/vnd.example.evidence.v1+json"


def _endpoint(reg: Registry, repo: str = REPO) -> RegistryEndpoint:
    credentials = Credentials(reg.username, reg.password) if reg.auth else None
    return RegistryEndpoint(Client(reg.host, plain_http=True, credentials=credentials), repo)


def _attach(endpoint: RegistryEndpoint | LayoutEndpoint, subject: Descriptor, kind: str, payload: bytes,
            **annotations: str) -> Descriptor:
    return referrers.attach(endpoint, subject, kind, [Blob(kind, payload)], annotations)


def _raw(reg: Registry, reference: str, repo: str = REPO) -> tuple[int, str, Any]:
    """GET a manifest as any client would: status, Content-Type, parsed JSON."""
    response = session(reg).get(f"{reg.url}/v2/{repo}/manifests/{reference}", timeout=30, headers={
        "Accept": ", ".join(MANIFEST_TYPES), **auth_headers(reg, [f"repository:{repo}:pull"])})
    body = response.json() if response.status_code == 200 else None
    return response.status_code, response.headers.get("Content-Type", ""), body


def _put_raw(reg: Registry, reference: str, data: bytes, media_type: str, repo: str = REPO) -> None:
    response = session(reg).put(f"{reg.url}/v2/{repo}/manifests/{reference}", data=data, timeout=30,
                                headers={"Content-Type": media_type, **auth_headers(reg, [f"repository:{repo}:push"])})
    assert response.status_code == 201, response.text


def _index_digests(reg: Registry, digest: str) -> list[str]:
    status, content_type, body = _raw(reg, referrers.referrers_tag(digest))
    assert status == 200 and content_type == OCI_INDEX
    return [e["digest"] for e in body["manifests"]]


def _index_puts(reg: Registry, digest: str) -> int:
    target = f"/v2/{REPO}/manifests/{referrers.referrers_tag(digest)}"
    return sum(1 for e in access_log(reg) if e.method == "PUT" and e.target == target and e.status == 201)


def test_an_artifact_is_attached_by_its_subject_and_found_by_digest(registry: Registry) -> None:
    image, other = push_random_image(registry, REPO, "v1"), push_random_image(registry, REPO, "v2")
    endpoint = _endpoint(registry)
    subject = referrers.subject_of(endpoint, "v1")
    assert subject.digest == image and subject.media_type == OCI_MANIFEST

    signature = _attach(endpoint, subject, SIGNATURE, b"signed", **{referrers.CREATED: "2026-12-01T10:00:00Z"})
    body = json.loads(endpoint.get_manifest(signature.digest).data)
    assert body["artifactType"] == SIGNATURE and body["config"]["mediaType"] == OCI_EMPTY
    assert body["subject"] == {"mediaType": OCI_MANIFEST, "digest": image, "size": subject.size}
    assert [layer["mediaType"] for layer in body["layers"]] == [SIGNATURE]
    # the registry has no referrers API (404), so the spec's fallback index was created at sha256-<hex>
    assert any(e.target.startswith(f"/v2/{REPO}/referrers/{image}") and e.status == 404 for e in access_log(registry))
    status, content_type, index = _raw(registry, f"sha256-{image[7:]}")
    assert (status, content_type) == (200, OCI_INDEX)
    assert index["manifests"] == [{"mediaType": OCI_MANIFEST, "digest": signature.digest, "size": signature.size,
                                   "artifactType": SIGNATURE,
                                   "annotations": {referrers.CREATED: "2026-12-01T10:00:00Z"}}]
    assert referrers.referrers(endpoint, image) == [signature]
    assert referrers.referrers(endpoint, other) == []

    evidence = _attach(endpoint, subject, EVIDENCE, b"evidence")  # the same index, extended
    assert _index_digests(registry, image) == [signature.digest, evidence.digest]
    assert referrers.referrers(endpoint, image) == [signature, evidence]
    assert referrers.referrers(endpoint, image, EVIDENCE) == [evidence]
    assert referrers.referrers(endpoint, image, "application/vnd.example.none") == []
    assert referrers.referrers(endpoint, other) == []


def test_attaching_the_same_artifact_again_uploads_and_rewrites_nothing(registry: Registry) -> None:
    image = push_random_image(registry, REPO)
    endpoint = _endpoint(registry)
    subject = referrers.subject_of(endpoint, image)
    first = _attach(endpoint, subject, SIGNATURE, b"same bytes")
    uploads, puts = blob_upload_count(registry, REPO), _index_puts(registry, image)
    assert puts == 1
    started = time.monotonic()
    again = _attach(_endpoint(registry), subject, SIGNATURE, b"same bytes")
    assert time.monotonic() - started < referrers.SETTLE  # nothing written, so nothing to wait for
    assert again == first
    assert (blob_upload_count(registry, REPO), _index_puts(registry, image)) == (uploads, puts)
    assert _index_digests(registry, image) == [first.digest]


def test_concurrent_writers_in_threads_never_drop_each_others_entries(registry: Registry) -> None:
    """Six writers at once on one subject, three times: every index keeps all six (a plain read-modify-write
    lost 14 of 30 entries in this setup)."""
    writers = 6
    for round_ in range(3):
        image = push_random_image(registry, REPO, f"r{round_}")
        endpoints = [_endpoint(registry) for _ in range(writers)]
        subject = referrers.subject_of(endpoints[0], image)
        barrier = threading.Barrier(writers)

        def write(endpoint: RegistryEndpoint, payload: bytes, subject: Descriptor = subject,
                  barrier: threading.Barrier = barrier) -> Descriptor:
            barrier.wait()
            return _attach(endpoint, subject, SIGNATURE, payload)

        with ThreadPoolExecutor(writers) as pool:
            futures = [pool.submit(write, e, f"{round_}/{i}".encode()) for i, e in enumerate(endpoints)]
            attached = [f.result() for f in futures]
        assert sorted(_index_digests(registry, image)) == sorted(d.digest for d in attached)
        assert len({d.digest for d in attached}) == writers


WRITER = """
import sys, time
from mlci.oci import referrers
from mlci.oci.copy import RegistryEndpoint
from mlci.oci.registry import Registry
host, repo, at, name = sys.argv[1:5]
endpoint = RegistryEndpoint(Registry(host, plain_http=True), repo)
subjects = [referrers.subject_of(endpoint, digest) for digest in sys.argv[5:]]
for n, subject in enumerate(subjects):
    time.sleep(max(0.0, float(at) + n * 0.6 - time.time()))
    kind = "application/vnd.example.signature.v1+json"
    print(referrers.attach(endpoint, subject, kind, [referrers.Blob(kind, f"{name}/{n}".encode())]).digest)
"""


def test_concurrent_writers_in_processes_never_drop_each_others_entries(registry: Registry) -> None:
    images = [push_random_image(registry, REPO, f"p{n}") for n in range(2)]
    at = time.time() + 1.2  # every process has imported mlci by then
    processes = [subprocess.Popen([sys.executable, "-c", WRITER, registry.host, REPO, str(at), f"w{i}", *images],
                                  cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i in range(4)]
    outputs = [p.communicate(timeout=60) for p in processes]
    assert [p.returncode for p in processes] == [0] * 4, [err for _, err in outputs]
    written = [out.split() for out, _ in outputs]
    for n, image in enumerate(images):
        assert sorted(_index_digests(registry, image)) == sorted(lines[n] for lines in written)


def test_an_entry_another_tool_dropped_is_still_found_and_put_back(registry: Registry) -> None:
    image = push_random_image(registry, REPO)
    endpoint = _endpoint(registry)
    subject = referrers.subject_of(endpoint, image)
    ours = _attach(endpoint, subject, SIGNATURE, b"ours")
    # another tool rewrites the index from a stale read: only its own referrer, described without artifactType
    # (its config's media type stands for it)
    empty = {"mediaType": "application/vnd.other.config", "digest": referrers.EMPTY_CONFIG.digest, "size": 2}
    data = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": empty, "layers": [empty],
                       "subject": subject.to_json()}).encode()
    digest = Manifest.of(data, OCI_MANIFEST).digest
    _put_raw(registry, digest, data, OCI_MANIFEST)
    entry = {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(data)}
    _put_raw(registry, f"sha256-{image[7:]}", json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                                         "manifests": [entry]}).encode(), OCI_INDEX)
    assert _index_digests(registry, image) == [digest]

    listed = referrers.referrers(endpoint, image)  # mlci's journal still lists ours
    assert [d.digest for d in listed] == [digest, ours.digest]
    assert listed[0].artifact_type is None and referrers.referrers(endpoint, image, SIGNATURE) == [ours]
    later = _attach(endpoint, subject, EVIDENCE, b"later")  # the next update puts ours back, theirs kept as it was
    assert _index_digests(registry, image)[0] == digest
    assert sorted(_index_digests(registry, image)) == sorted([digest, ours.digest, later.digest])
    assert _raw(registry, f"sha256-{image[7:]}")[2]["manifests"][0] == entry


def test_the_fallback_index_is_read_only_when_the_tag_list_holds_its_tag(registry: Registry) -> None:
    """No referrers API: listing an image with none costs no read of a `sha256-<hex>` that is not there; an
    index another tool wrote (no journal tag of mlci's) is in the tag list, so it is read and listed."""
    image = push_random_image(registry, REPO, "lone")
    endpoint = _endpoint(registry)
    index_tag = referrers.referrers_tag(image)
    mark = len(access_log(registry))
    assert referrers.referrers(endpoint, image) == []
    assert not [e for e in access_log(registry)[mark:] if e.target.endswith(f"/manifests/{index_tag}")]
    endpoint.registry.upload_blob(REPO, referrers.EMPTY_CONFIG.digest, 2, lambda: io.BytesIO(b"{}"), 1 << 20)
    empty = {"mediaType": "application/vnd.other.config", "digest": referrers.EMPTY_CONFIG.digest, "size": 2}
    data = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": empty, "layers": [empty],
                       "subject": referrers.subject_of(endpoint, image).to_json()}).encode()
    theirs = Manifest.of(data, OCI_MANIFEST).digest
    _put_raw(registry, theirs, data, OCI_MANIFEST)
    _put_raw(registry, index_tag, json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": theirs, "size": len(data)}]}).encode(), OCI_INDEX)
    assert [d.digest for d in referrers.referrers(endpoint, image)] == [theirs]


def test_a_listing_without_the_api_says_which_of_the_subjects_tags_exist(registry: Registry) -> None:
    """The tag list the fallback reads anyway answers for every `sha256-<hex>...` tag: a caller need not GET a
    signature tag that is not there; through a referrers API no tag list is read, so every tag may be there."""
    image = push_random_image(registry, REPO, "signed-later")
    endpoint = _endpoint(registry)
    signature = referrers.referrers_tag(image) + ".sig"
    listing = referrers.listing(endpoint, image)
    assert listing.tags == frozenset() and not listing.may_hold(signature)
    _, _, body = _raw(registry, "signed-later")  # any manifest will do under the signature's tag
    _put_raw(registry, signature, json.dumps(body).encode(), OCI_MANIFEST)
    evidence = _attach(endpoint, referrers.subject_of(endpoint, image), EVIDENCE, b"evidence")
    other = push_random_image(registry, REPO, "other")  # another image's tags are not this one's
    _attach(endpoint, referrers.subject_of(endpoint, other), EVIDENCE, b"theirs")
    listing = referrers.listing(endpoint, image)
    assert listing.may_hold(signature) and listing.descriptors == (evidence,)
    assert all(t.startswith(referrers.referrers_tag(image)) for t in listing.tags or ())
    assert listing.of_type(EVIDENCE) == [evidence] and listing.of_type(SIGNATURE) == []
    api = ReferrersApi(registry.url, subject_header=True)
    try:
        through_api = referrers.listing(RegistryEndpoint(Client(api.host, plain_http=True), REPO), other)
        assert through_api.tags is None and through_api.may_hold(referrers.referrers_tag(other) + ".sig")
    finally:
        api.stop()


@pytest.mark.parametrize("kind", ["image manifest", "docker list", "huge"])
def test_a_hostile_fallback_index_is_refused_in_one_line_and_ignored_when_listing(
        registry: Registry, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    image, other = push_random_image(registry, REPO, "v1"), push_random_image(registry, REPO, "v2")
    tag = f"sha256-{image[7:]}"
    if kind == "image manifest":
        _put_raw(registry, tag, json.dumps(_raw(registry, other)[2]).encode(), OCI_MANIFEST)
    elif kind == "docker list":
        index = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
                 "manifests": []}
        _put_raw(registry, tag, json.dumps(index).encode(), index["mediaType"])
    else:  # 100 bytes short of the registry's (and mlci's) 4 MiB: one more entry does not fit
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [], "annotations": {"x": ""}}
        index["annotations"]["x"] = "A" * (MAX_MANIFEST - 100 - len(json.dumps(index, separators=(",", ":"))))
        _put_raw(registry, tag, json.dumps(index, separators=(",", ":")).encode(), OCI_INDEX)
    puts = _index_puts(registry, image)
    endpoint = _endpoint(registry)
    with pytest.raises(ReferrersError) as raised:
        _attach(endpoint, referrers.subject_of(endpoint, image), SIGNATURE, b"refused")
    message = str(raised.value)
    assert "\n" not in message and tag in message and "tagged" in message
    assert _raw(registry, tag)[0] == 200 and _index_puts(registry, image) == puts  # left as it was
    listed = referrers.referrers(endpoint, image)  # a warning; the journal still finds what mlci attached
    assert [d.artifact_type for d in listed] == [SIGNATURE]
    assert kind == "huge" or any(tag in r.getMessage() and "ignored" in r.getMessage() for r in caplog.records)


def test_a_journal_tag_that_names_no_referrer_of_the_image_is_skipped(registry: Registry) -> None:
    image, other = push_random_image(registry, REPO, "v1"), push_random_image(registry, REPO, "v2")
    endpoint = _endpoint(registry)
    subject = referrers.subject_of(endpoint, image)
    ours = _attach(endpoint, subject, SIGNATURE, b"ours")
    stray = referrers.journal_tag(image, other)  # an image manifest under a journal-like tag
    _put_raw(registry, stray, json.dumps(_raw(registry, other)[2]).encode(), OCI_MANIFEST)
    elsewhere = _attach(endpoint, referrers.subject_of(endpoint, other), SIGNATURE, b"of the other image")
    _put_raw(registry, referrers.journal_tag(image, elsewhere.digest), endpoint.get_manifest(elsewhere.digest).data,
             OCI_MANIFEST)  # a referrer of another image, tagged as one of this image
    assert referrers.referrers(endpoint, image) == [ours]
    assert _attach(endpoint, subject, EVIDENCE, b"next").digest in _index_digests(registry, image)
    assert elsewhere.digest not in _index_digests(registry, image)


def test_with_basic_auth(registry_basic: Registry) -> None:
    image = push_random_image(registry_basic, REPO)
    endpoint = _endpoint(registry_basic)
    signature = _attach(endpoint, referrers.subject_of(endpoint, image), SIGNATURE, b"signed")
    assert referrers.referrers(_endpoint(registry_basic), image) == [signature]
    anonymous = RegistryEndpoint(Client(registry_basic.host, plain_http=True), REPO)
    with pytest.raises(RegistryError, match="needs credentials") as raised:
        referrers.referrers(anonymous, image)
    assert "\n" not in str(raised.value) and registry_basic.password not in str(raised.value)


def test_an_oci_layout_lists_referrers_in_index_json(registry: Registry, tmp_path: Path) -> None:
    image, other = push_random_image(registry, REPO, "v1"), push_random_image(registry, REPO, "v2")
    layout = Layout(tmp_path / "layout")
    endpoint = LayoutEndpoint(layout)
    copy(_endpoint(registry), "v1", endpoint, None)  # untagged: `oci:DIR` names the one image
    copy(_endpoint(registry), "v2", endpoint, "v2")
    subject = referrers.subject_of(endpoint, image)
    signature = _attach(endpoint, subject, SIGNATURE, b"signed", **{referrers.CREATED: "2026-12-01T10:00:00Z"})
    evidence = _attach(endpoint, subject, EVIDENCE, b"evidence")
    assert _attach(endpoint, subject, SIGNATURE, b"signed", **{referrers.CREATED: "2026-12-01T10:00:00Z"}) \
        == signature  # once
    entries = json.loads((tmp_path / "layout" / "index.json").read_text())["manifests"]
    assert [e["digest"] for e in entries] == [image, other, signature.digest, evidence.digest]
    assert entries[2] == {"mediaType": OCI_MANIFEST, "digest": signature.digest, "size": signature.size,
                          "artifactType": SIGNATURE, "annotations": {referrers.CREATED: "2026-12-01T10:00:00Z"}}
    assert referrers.referrers(endpoint, image) == [signature, evidence]
    assert referrers.referrers(endpoint, image, EVIDENCE) == [evidence]
    assert referrers.referrers(endpoint, other) == []
    manifest = json.loads(layout.blob_path(signature.digest).read_bytes())
    assert manifest["subject"]["digest"] == image and layout.has_blob(manifest["layers"][0]["digest"])


def test_an_untagged_layout_still_names_its_image_after_an_attach(registry: Registry, tmp_path: Path) -> None:
    image = push_random_image(registry, REPO, "v1")
    endpoint = LayoutEndpoint(Layout(tmp_path / "layout"))
    copy(_endpoint(registry), "v1", endpoint, None)
    _attach(endpoint, referrers.subject_of(endpoint, image), SIGNATURE, b"signed")
    assert endpoint.get_manifest(None).digest == image
    (tmp_path / "layout" / "blobs" / "sha256" / image[7:]).unlink()  # a listed manifest that is gone: skipped
    assert [d.artifact_type for d in referrers.referrers(endpoint, image)] == [SIGNATURE]
    assert referrers.referrers(LayoutEndpoint(Layout(tmp_path / "none")), image) == []


def test_entries_that_are_not_descriptors_are_skipped_and_dropped_on_the_next_write(
        registry: Registry, caplog: pytest.LogCaptureFixture) -> None:
    image, other = push_random_image(registry, REPO, "v1"), push_random_image(registry, REPO, "v2")
    size = len(json.dumps(_raw(registry, other)[2]))
    valid = {"mediaType": OCI_MANIFEST, "digest": other, "size": size}  # no artifactType: kept, unfiltered only
    junk = [{"digest": other, "size": size}, {"mediaType": OCI_MANIFEST, "digest": other, "size": -1}]
    _put_raw(registry, f"sha256-{image[7:]}", json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                                         "manifests": [*junk, valid]}).encode(), OCI_INDEX)
    endpoint = _endpoint(registry)
    assert [d.digest for d in referrers.referrers(endpoint, image)] == [other]
    assert referrers.referrers(endpoint, image, SIGNATURE) == []
    assert any("2 entries skipped" in r.getMessage() for r in caplog.records)
    ours = _attach(endpoint, referrers.subject_of(endpoint, image), SIGNATURE, b"ours")
    assert _raw(registry, f"sha256-{image[7:]}")[2]["manifests"] == [valid, ours.to_json()]


@pytest.mark.parametrize("subject_header", [True, False])
def test_a_registry_with_the_referrers_api_is_listed_through_it(registry: Registry, subject_header: bool) -> None:
    """The API path, on a stand-in (tests/testing/referrers_api.py: the real registry behind a proxy that adds the
    API). With OCI-Subject on the PUT, or an API that lists the new manifest, no fallback index or journal tag."""
    api = ReferrersApi(registry.url, subject_header=subject_header)
    try:
        image = push_random_image(registry, REPO)
        endpoint = RegistryEndpoint(Client(api.host, plain_http=True), REPO)
        subject = referrers.subject_of(endpoint, image)
        signature = _attach(endpoint, subject, SIGNATURE, b"signed", **{referrers.CREATED: "2026-12-01T10:00:00Z"})
        evidence = _attach(endpoint, subject, EVIDENCE, b"evidence")
        assert [t for t in endpoint.registry.tags(REPO) if t.startswith("sha256-")] == []
        assert referrers.referrers(endpoint, image) == [signature, evidence]
        assert referrers.referrers(endpoint, image, EVIDENCE) == [evidence]
        assert referrers.referrers(endpoint, push_random_image(registry, REPO, "v2")) == []
        assert any(path.startswith(f"/v2/{REPO}/referrers/{image}?artifactType=") for _, path in api.requests)
    finally:
        api.stop()


def test_an_oci_archive_gets_no_referrers_but_a_one_line_answer(registry: Registry, tmp_path: Path) -> None:
    image = push_random_image(registry, REPO)
    archive = ArchiveEndpoint(tmp_path / "image.tar")
    copy(_endpoint(registry), image, archive, "v1")
    archive.commit()
    with pytest.raises(UsageError, match="oci-archive") as raised:
        _attach(archive, referrers.subject_of(archive, image), SIGNATURE, b"x")  # type: ignore[arg-type]
    assert "\n" not in str(raised.value)
    with pytest.raises(UsageError, match="oci-archive"):
        referrers.referrers(archive, image)  # type: ignore[arg-type]
