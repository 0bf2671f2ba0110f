"""The Nexus stand-ins keep Nexus's documented behaviour: nginx's redeploy and auth rules, the REST API's paging,
its 401, and the multipart components upload with its validation and its non-atomic redeploy refusal."""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.testing.nexus import REALM, Nexus, start_nexus, stop_nexus


@pytest.fixture
def nexus(tmp_path: Path) -> Iterator[Nexus]:
    server = start_nexus(tmp_path / "nexus", auth=True, assets_page_size=3)
    yield server
    stop_nexus(server)


def _auth(nexus: Nexus) -> tuple[str, str]:
    assert nexus.nginx.username and nexus.nginx.password
    return nexus.nginx.username, nexus.nginx.password


def test_nginx_refuses_a_redeploy_only_after_authenticating(nexus: Nexus, http: requests.Session) -> None:
    url = f"{nexus.repository_url}/m/v1/a.bin"
    assert http.put(url, data=b"one", auth=_auth(nexus)).status_code == 201
    assert http.put(url, data=b"two").status_code == 401  # not 400: existence is not told to strangers
    again = http.put(url, data=b"two", auth=_auth(nexus))
    assert (again.status_code, again.text) == (400, "mlci-raw/m/v1/a.bin cannot be updated\n")
    assert nexus.nginx.reader and nexus.nginx.reader_password
    reader = (nexus.nginx.reader, nexus.nginx.reader_password)
    assert http.put(f"{nexus.repository_url}/m/v1/b.bin", data=b"x", auth=reader).status_code == 403
    assert http.get(url, auth=reader).content == b"one"


def test_the_assets_list_pages_like_nexus(nexus: Nexus, http: requests.Session) -> None:
    for i in range(6):
        http.put(f"{nexus.repository_url}/d/f{i}", data=str(i).encode(), auth=_auth(nexus))
    url = f"{nexus.nginx.url}/service/rest/v1/assets"
    assert http.get(url, params={"repository": "mlci-raw"}).status_code == 401
    assert http.get(url, params={"repository": "mlci-raw"}).headers["WWW-Authenticate"] == f'BASIC realm="{REALM}"'

    pages, token = [], None
    while True:
        params = {"repository": "mlci-raw", **({"continuationToken": token} if token else {})}
        body = http.get(url, params=params, auth=_auth(nexus)).json()
        pages.append([item["path"] for item in body["items"]])
        token = body["continuationToken"]
        if token is None:
            break

    assert [len(p) for p in pages] == [3, 3, 0]  # the second page is full: a token, then an empty page
    paths = [p for page in pages for p in page]
    assert sorted(paths) == [f"/d/f{i}" for i in range(6)] and paths != sorted(paths)
    item = http.get(url, params={"repository": "mlci-raw"}, auth=_auth(nexus)).json()["items"][0]
    data = nexus.stored(item["path"].lstrip("/")).read_bytes()
    assert item["checksum"] == {"sha1": hashlib.sha1(data).hexdigest(), "sha256": hashlib.sha256(data).hexdigest(),
                                "sha512": hashlib.sha512(data).hexdigest(), "md5": hashlib.md5(data).hexdigest()}
    assert item["downloadUrl"] == f"{nexus.repository_url}{item['path']}"
    bad = http.get(url, params={"repository": "mlci-raw", "continuationToken": "nope"}, auth=_auth(nexus))
    assert bad.status_code == 400


def test_the_components_upload_validates_and_refuses_a_redeploy(nexus: Nexus, http: requests.Session) -> None:
    url = f"{nexus.nginx.url}/service/rest/v1/components"
    files = {"raw.directory": (None, "/m//v2/"), "raw.asset1": ("a.bin", b"A"),
             "raw.asset1.filename": (None, "a.bin")}

    done = http.post(url, params={"repository": "mlci-raw"}, files=files, auth=_auth(nexus))
    assert (done.status_code, done.content) == (204, b"")
    assert nexus.stored("m/v2/a.bin").read_bytes() == b"A"

    invalid = http.post(url, params={"repository": "mlci-raw"}, files={"raw.asset1": ("x", b"x")}, auth=_auth(nexus))
    assert invalid.status_code == 400
    assert [e["message"] for e in invalid.json()] == ["Missing required component field 'Directory'",
                                                      "Missing required asset field 'Filename' on '1'"]
    two = {"raw.directory": (None, "m/v2"), "raw.asset1": ("b", b"B"), "raw.asset1.filename": (None, "b.bin"),
           "raw.asset2": ("a", b"other"), "raw.asset2.filename": (None, "a.bin")}
    refused = http.post(url, params={"repository": "mlci-raw"}, files=two, auth=_auth(nexus))
    assert (refused.status_code, refused.text) == (400, "mlci-raw/m/v2/a.bin cannot be updated")
    assert nexus.stored("m/v2/b.bin").read_bytes() == b"B"  # stored before the refusal: not atomic
    assert nexus.stored("m/v2/a.bin").read_bytes() == b"A"
    assert http.post(url, files=files, auth=_auth(nexus)).status_code == 422
