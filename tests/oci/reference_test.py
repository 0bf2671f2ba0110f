from __future__ import annotations

import pytest

from mlci.core.errors import UsageError
from mlci.oci.reference import DockerRef, LayoutRef, parse

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("text, expected", [
    ("docker://127.0.0.1:5000/ml/credit:1.2", DockerRef("127.0.0.1:5000", "ml/credit", "1.2")),
    (f"docker://registry.bank/ml/credit@{DIGEST}", DockerRef("registry.bank", "ml/credit", None, DIGEST)),
    (f"docker://localhost/a:b@{DIGEST}", DockerRef("localhost", "a", "b", DIGEST)),
    ("docker://registry-1.docker.io/library/python:3.11-slim",
     DockerRef("registry-1.docker.io", "library/python", "3.11-slim")),
    ("docker://docker.io/python", DockerRef("docker.io", "python")),  # written as given, never rewritten
    ("docker://[::1]:5000/a/b:T_1.x-y", DockerRef("[::1]:5000", "a/b", "T_1.x-y")),
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
    ("docker://reg.bank/x:t\u00e4g", "invalid tag"),
    ("docker://reg.bank/x:.hidden", "invalid tag"),
    ("docker://reg.bank:5000/", "names no repository in a registry"),
    ("docker://reg.bank:5000/:v1", "names no repository in a registry"),
    ("docker://reg_bank!.x/y", "invalid registry host"),
    ("docker://127.0.0.1:65536/x", "port 65536 of '127.0.0.1:65536' is not 1-65535"),
    ("docker://reg.bank:0/x", "port 0 of 'reg.bank:0' is not 1-65535"),
])
def test_errors_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse(text)


@pytest.mark.parametrize("text", ["docker://deployer:S3cretPassw0rd@reg.bank:5000/ml/model:1.0",
                                  "docker://S3cretPassw0rd@reg.bank/ml/model", "docker://u:S3cretPassw0rd@"])
def test_credentials_in_a_reference_are_refused_and_never_echoed(text: str) -> None:
    """Every command parsing a reference printed the password in its error ("invalid registry host ...")."""
    with pytest.raises(UsageError, match="a reference holds no credentials; name their variables in registries") as e:
        parse(text)
    assert "S3cret" not in str(e.value)


def test_api_reference_prefers_the_digest() -> None:
    assert DockerRef("r", "x", "1", DIGEST).reference == DIGEST
    assert DockerRef("r", "x").reference == "latest"


@pytest.mark.parametrize("text", [
    "docker://127.0.0.1:5000", "docker://localhost:5000", "docker://registry.bank",
    f"docker://127.0.0.1:5000@{DIGEST}", "docker://python:3.11", "docker://busybox",
    "docker://bank/model", "docker://library/python:3.11", "docker://bank/team/model:1",
])
def test_a_reference_without_an_explicit_registry_and_repository_is_refused(text: str) -> None:
    """Never an implicit docker.io: a registry with no repository, or a short name, is exit 2."""
    with pytest.raises(UsageError, match=r"names no (repository in a registry|registry host)") as info:
        parse(text)
    assert info.value.exit_code == 2 and "docker.io/library" not in str(info.value)


def test_tags_follow_the_distribution_grammar() -> None:
    from mlci.oci.reference import check_tag
    assert check_tag("v1.2_rc-3", "--tag") == "v1.2_rc-3" and check_tag("A" * 128, "--tag")
    for bad in ("", "-x", ".x", "a/b", "a:b", "A" * 129, "t\u00e4g", "a b"):
        with pytest.raises(UsageError, match=r"--tag: .* is not a valid image tag"):
            check_tag(bad, "--tag")


def test_tags_that_name_signatures_referrers_or_the_build_cache_are_reserved() -> None:
    """An image written under `sha256-<hex>.sig` replaced that image's cosign signature (promote exited 0)."""
    from mlci.oci.reference import check_tag, parse
    for reserved in ("sha256-" + "ab" * 32 + ".sig", "sha256-" + "ab" * 32, "sha256-x.att", "mlci-key-0a1b",
                     "mlci-cache-0a1b"):
        with pytest.raises(UsageError, match=r"--tag: .* is a reserved tag"):
            check_tag(reserved, "--tag")
        assert parse(f"docker://127.0.0.1:5000/ml/m:{reserved}").tag == reserved  # still read as a reference
    assert check_tag("sha256", "--tag") == "sha256" and check_tag("mlci-keys", "--tag") == "mlci-keys"
