"""Raw repository URLs and the paths mlci puts in them."""
from __future__ import annotations

import pytest

from mlci.nexus.location import RawLocation, parse_location
from mlci.promote.settings import Environment, PromoteSettings, promote_problems


@pytest.mark.parametrize(("url", "expected"), [
    ("https://nexus.bank.example/repository/models",
     RawLocation("https", "nexus.bank.example", "", "models", "")),
    ("https://Nexus.Bank.example:8443/nexus/repository/ml-models/credit/scoring/",
     RawLocation("https", "nexus.bank.example:8443", "/nexus", "ml-models", "credit/scoring")),
    ("http://127.0.0.1:8081/repository/raw.hosted", RawLocation("http", "127.0.0.1:8081", "", "raw.hosted", "")),
])
def test_a_location_is_base_repository_and_prefix(url: str, expected: RawLocation) -> None:
    location = parse_location(url)
    assert location == expected
    assert location.url(location.asset_path("v1/model file.pkl")).endswith("/v1/model%20file.pkl")
    assert str(location) == url.rstrip("/").replace("Nexus.Bank", "nexus.bank")


@pytest.mark.parametrize(("url", "reason"), [
    ("ftp://nexus/repository/r", "http(s)"),
    ("https://user:secret-pass@nexus/repository/r", "credentials never go in the URL"),
    ("https://nexus/content/r", ".../repository/REPO"),
    ("https://nexus/repository/", "repository name"),
    ("https://nexus/repository/_hidden", "repository name"),
    ("https://nexus/repository/r?x=1", "no query"),
    ("https://nexus/repository/r/../etc", "'..'"),
    ("https://nex us/repository/r", "HOST[:PORT]"),
])
def test_a_bad_location_says_why_without_echoing_credentials(url: str, reason: str) -> None:
    with pytest.raises(ValueError) as failed:
        parse_location(url)
    assert reason in str(failed.value) and "secret-pass" not in str(failed.value)


def test_the_promote_section_checks_nexus_raw() -> None:
    settings = PromoteSettings(environments={
        "prod": Environment(tags=r"v\d+", nexus_raw="https://nexus/raw/models"),
        "stage": Environment(branches=("main",), nexus_raw="https://nexus/repository/models")})
    assert promote_problems(settings) == [
        "promote.environments.prod.nexus_raw: expected .../repository/REPO (Nexus's content path)"]
