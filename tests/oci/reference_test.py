from __future__ import annotations

import pytest

from mlci.core.errors import UsageError
from mlci.oci.reference import DockerRef, LayoutRef, parse

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("text, expected", [
    ("docker://127.0.0.1:5000/ml/credit:1.2", DockerRef("127.0.0.1:5000", "ml/credit", "1.2")),
    (f"docker://registry.bank/ml/credit@{DIGEST}", DockerRef("registry.bank", "ml/credit", None, DIGEST)),
    (f"docker://localhost/a:b@{DIGEST}", DockerRef("localhost", "a", "b", DIGEST)),
    ("docker://python:3.11-slim", DockerRef("docker.io", "library/python", "3.11-slim")),
    ("docker://bank/model", DockerRef("docker.io", "bank/model")),
    ("oci:/tmp/layout:v1", LayoutRef("oci", "/tmp/layout", "v1")),
    ("oci:relative/dir", LayoutRef("oci", "relative/dir")),
    ("oci-archive:/tmp/image.tar:latest", LayoutRef("oci-archive", "/tmp/image.tar", "latest")),
])
def test_parse_and_round_trip(text: str, expected: object) -> None:
    ref = parse(text)
    assert ref == expected
    assert parse(str(ref)) == ref


@pytest.mark.parametrize("text, message", [
    ("dir:/tmp/x", "unknown image transport; use one of docker:, oci:, oci-archive:"),
    ("docker:registry/x", "docker references start with docker://"),
    ("docker://Reg.bank/UPPER", "invalid repository name 'UPPER'"),
    ("docker://reg.bank/x@sha256:zz", "invalid digest 'sha256:zz'"),
    ("docker://reg.bank/x:bad tag", "invalid tag 'bad tag'"),
    ("oci:", "oci: needs a path"),
])
def test_errors_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse(text)


def test_api_reference_prefers_the_digest() -> None:
    assert DockerRef("r", "x", "1", DIGEST).reference == DIGEST
    assert DockerRef("r", "x").reference == "latest"
