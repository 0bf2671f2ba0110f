"""Nexus docker hosted repositories with "Disable redeploy": a real docker-registry behind a proxy that answers 400 to
a manifest PUT on an existing reference (and to a blob upload whose blob is there), as Nexus does."""
from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator

import pytest

from mlci.core.errors import ExitCode
from mlci.oci import referrers
from mlci.oci.copy import RegistryEndpoint, copy
from mlci.oci.manifest import OCI_MANIFEST, Manifest, sha256_digest
from mlci.oci.registry import Registry, RegistryError, TagImmutable
from mlci.promote.copy import stage, tag
from tests.testing.nexus import NexusDockerProxy
from tests.testing.registry import Registry as RunningRegistry
from tests.testing.registry import push_random_image


@pytest.fixture
def nexus_docker(registry: RunningRegistry) -> Iterator[NexusDockerProxy]:
    proxy = NexusDockerProxy(registry.host)
    yield proxy
    proxy.stop()


def _client(proxy: NexusDockerProxy) -> Registry:
    return Registry(proxy.host, plain_http=True)


def test_the_same_manifest_on_an_existing_tag_is_success(registry: RunningRegistry,
                                                          nexus_docker: NexusDockerProxy) -> None:
    digest = push_random_image(registry, "model", "v1.2.0")
    client = _client(nexus_docker)
    manifest = client.get_manifest("model", "v1.2.0")

    assert client.put_manifest("model", "v1.2.0", manifest) == digest
    assert client.put_manifest("model", digest, manifest) == digest  # by digest: content-addressed, there

    assert nexus_docker.refused == ["/v2/model/manifests/v1.2.0", f"/v2/model/manifests/{digest}"]


def test_another_manifest_on_an_existing_tag_is_refused_naming_both(registry: RunningRegistry,
                                                                    nexus_docker: NexusDockerProxy) -> None:
    old = push_random_image(registry, "model", "v1.2.0")
    new = push_random_image(registry, "model", "build-7")
    client = _client(nexus_docker)

    with pytest.raises(TagImmutable) as refused:
        client.put_manifest("model", "v1.2.0", client.get_manifest("model", "build-7"))

    assert refused.value.exit_code == ExitCode.GATE_FAILED
    assert (refused.value.tag, refused.value.existing, refused.value.wanted) == ("v1.2.0", old, new)
    assert f"{nexus_docker.host}: model:v1.2.0 names {old}" in str(refused.value)
    assert f"not moved to {new}" in str(refused.value) and "BLOB_UPLOAD_INVALID" in str(refused.value)
    assert client.get_manifest("model", "v1.2.0").digest == old


def test_a_manifest_the_registry_finds_invalid_is_still_an_error(registry: RunningRegistry,
                                                                 nexus_docker: NexusDockerProxy) -> None:
    missing = "sha256:" + "0" * 64
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": missing,
                                  "size": 2}, "layers": []}).encode()
    manifest = Manifest(body, OCI_MANIFEST, sha256_digest(body))

    with pytest.raises(RegistryError) as failed:
        _client(nexus_docker).put_manifest("model", "v9", manifest)

    assert failed.value.exit_code == ExitCode.ENVIRONMENT
    assert "400 on PUT /v2/model/manifests/v9" in str(failed.value) and "MANIFEST_BLOB_UNKNOWN" in str(failed.value)
    assert nexus_docker.refused == []


def test_a_blob_upload_refused_because_the_blob_is_there_is_done(registry: RunningRegistry,
                                                                   nexus_docker: NexusDockerProxy) -> None:
    data = os.urandom(3000)
    push_random_image(registry, "model", "v1", layers=[data])
    digest = sha256_digest(data)
    client = _client(nexus_docker)

    client.upload_blob("model", digest, len(data), lambda: io.BytesIO(data))  # as if a HEAD had missed it

    assert [p.split("?")[0].rsplit("/", 1)[0] for p in nexus_docker.refused] == ["/v2/model/blobs/uploads"]


def test_promoting_again_into_a_nexus_connector_succeeds(registry: RunningRegistry,
                                                         nexus_docker: NexusDockerProxy) -> None:
    digest = push_random_image(registry, "dev/model", "v1.2.0", layers=[2048, 4096])
    source = RegistryEndpoint(Registry(registry.host, plain_http=True), "dev/model")
    destination = RegistryEndpoint(_client(nexus_docker), "prod/model")

    first = copy(source, "v1.2.0", destination, "v1.2.0")
    again = copy(source, "v1.2.0", destination, "v1.2.0")

    assert first.digest == again.digest == digest
    assert again.copied == [] and nexus_docker.refused == ["/v2/prod/model/manifests/v1.2.0"]


def test_a_promotion_with_its_scan_record_runs_twice_into_a_nexus_connector(registry: RunningRegistry,
                                                                             nexus_docker: NexusDockerProxy) -> None:
    digest = push_random_image(registry, "dev/model", "v1.2.0")
    source = RegistryEndpoint(Registry(registry.host, plain_http=True), "dev/model")
    record = referrers.attach(source, referrers.subject_of(source, digest), "application/vnd.mlci.scan.record+json",
                              [referrers.Blob("application/json", b'{"verdict": "pass"}')])
    destination = RegistryEndpoint(_client(nexus_docker), "prod/model")

    for seen in (None, digest):  # the second run finds everything there (Nexus would refuse any re-PUT)
        staged = stage(source, "v1.2.0", destination)
        tagged = tag(destination, staged, "v1.2.0", aliases=False, force=False, seen=seen)
        assert (staged.digest, staged.referrers, tagged.tags) == (digest, [record.digest], ["v1.2.0"])

    # The re-run writes nothing: the image and its record are HEADed and found by digest, the record is listed
    # already, and the tag already names the image; so "Disable redeploy" never has to refuse anything.
    assert nexus_docker.refused == []
