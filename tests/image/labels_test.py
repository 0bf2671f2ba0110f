"""Reading an image's labels and revision back (what promote and bundle export check against HEAD)."""
from __future__ import annotations

import io
import json
from typing import IO

import pytest

from mlci.core.errors import EnvironmentProblem
from mlci.image.labels import REVISION, read_labels, read_revision
from mlci.oci.manifest import OCI_CONFIG, OCI_MANIFEST, Manifest, sha256_digest

CONFIG = json.dumps({"config": {"Labels": {REVISION: "c" * 40, "other": "x"}}}).encode()


class _Source:
    """An image source of one config blob that counts its reads."""

    def __init__(self) -> None:
        self.opened: list[str] = []

    def get_manifest(self, reference: str | None) -> Manifest:
        raise AssertionError(f"no manifest is read: {reference}")

    def open_blob(self, digest: str) -> IO[bytes]:
        self.opened.append(digest)
        assert digest == sha256_digest(CONFIG)
        return io.BytesIO(CONFIG)


def _manifest(annotations: object = None) -> Manifest:
    body: dict[str, object] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [],
                               "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(CONFIG),
                                          "size": len(CONFIG)}}
    if annotations is not None:
        body["annotations"] = annotations
    return Manifest.of(json.dumps(body).encode(), OCI_MANIFEST)


def test_the_revision_comes_from_the_manifest_annotation_without_reading_the_config() -> None:
    source = _Source()
    assert read_revision(source, _manifest({REVISION: "a" * 40})) == "a" * 40
    assert source.opened == []


@pytest.mark.parametrize("annotations", [None, {}, {REVISION: 7}, ["not", "a", "mapping"]])
def test_without_a_usable_annotation_the_config_label_is_read(annotations: object) -> None:
    source = _Source()
    assert read_revision(source, _manifest(annotations)) == "c" * 40
    assert source.opened == [sha256_digest(CONFIG)]
    assert read_labels(source, _manifest(annotations)) == {REVISION: "c" * 40, "other": "x"}


def test_a_manifest_that_is_not_json_is_one_line_error() -> None:
    with pytest.raises(EnvironmentProblem, match="the image's config cannot be read back"):
        read_revision(_Source(), Manifest.of(b"\xff not json", OCI_MANIFEST))
