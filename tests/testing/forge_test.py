"""The fake forge behaves like GitLab's and GitHub's documented REST APIs: pagination, auth, limits, faults, TLS."""
from __future__ import annotations

import json
import os
import struct
import time
import zlib
from typing import Any

import pytest
import requests

from tests.testing.forge import ForgeServer, start_forge

PROJECT = "bank/credit-model"
ENCODED = "bank%2Fcredit-model"
IID = 7
MARKER = "<!-- mlci-report -->"
BOT_TOKEN = "glpat-bot-token"
OTHER_TOKEN = "glpat-alice-token"
JOB_TOKEN = "glcbt-job-token"


@pytest.fixture
def gitlab(forge: ForgeServer) -> ForgeServer:
    """A forge with the bot, another user and MR !7 in bank/credit-model."""
    forge.add_user(BOT_TOKEN, "mlci-bot", 77, type="Bot")
    forge.add_user(OTHER_TOKEN, "alice")
    forge.add_merge_request(PROJECT, IID)
    return forge


@pytest.fixture
def github(forge: ForgeServer) -> ForgeServer:
    """A forge with the bot, another user and PR #12 in the private repo bank/credit-model."""
    forge.add_user(BOT_TOKEN, "github-actions[bot]", 41898282, type="Bot")
    forge.add_user(OTHER_TOKEN, "alice")
    forge.add_pull_request("bank", "credit-model", 12)
    return forge


def notes_url(server: ForgeServer, project: str = ENCODED, iid: int = IID) -> str:
    """The MR notes collection URL."""
    return f"{server.gitlab_api}/projects/{project}/merge_requests/{iid}/notes"


def comments_url(server: ForgeServer, api: str | None = None) -> str:
    """The comments collection URL of PR #12 (GitHub.com layout, or ``api`` such as GHES)."""
    return f"{api or server.github_api}/repos/bank/credit-model/issues/12/comments"


def bot(token: str = BOT_TOKEN) -> dict[str, str]:
    """GitLab auth headers."""
    return {"PRIVATE-TOKEN": token}


def gh(token: str = BOT_TOKEN, scheme: str = "Bearer") -> dict[str, str]:
    """GitHub auth headers."""
    return {"Authorization": f"{scheme} {token}"}


def populate_250(server: ForgeServer) -> list[int]:
    """250 notes from others: comments, system notes, and notes that quote the marker; returns ids in order."""
    added: list[dict[str, Any]] = []
    added += server.add_notes(PROJECT, IID, (f"review remark {i}" for i in range(120)), author="alice")
    added += server.add_notes(PROJECT, IID, (f"changed the description {i}" for i in range(60)), author="bob",
                             system=True)
    added += server.add_notes(PROJECT, IID, (f"> {MARKER}\n> quoted by carol {i}" for i in range(70)), author="carol")
    return [note["id"] for note in added]


def png_bytes() -> bytes:
    """A valid 2x2 RGB PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        """One PNG chunk with its CRC."""
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + bytes([255, 0, 0, 0, 255, 0]) for _ in range(2))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


# --- GitLab --------------------------------------------------------------------------------------------


def test_gitlab_250_notes_paginate_as_3_pages_of_100_by_x_next_page_and_link(
        gitlab: ForgeServer, http: requests.Session) -> None:
    ids = populate_250(gitlab)
    pages: list[list[dict[str, Any]]] = []
    page = "1"
    while page:
        params: dict[str, str | int] = {"per_page": 100, "page": page, "sort": "asc"}
        response = http.get(notes_url(gitlab), params=params, headers=bot())
        assert response.status_code == 200
        headers = response.headers
        assert (headers["X-Per-Page"], headers["X-Total"], headers["X-Total-Pages"]) == ("100", "250", "3")
        assert headers["X-Page"] == page
        assert headers["X-Prev-Page"] == ("" if page == "1" else str(int(page) - 1))
        pages.append(response.json())
        page = headers["X-Next-Page"]
    assert [len(p) for p in pages] == [100, 100, 50]
    assert [note["id"] for p in pages for note in p] == ids  # asc: oldest first
    assert sum(note["system"] for p in pages for note in p) == 60
    quoting = [n for p in pages for n in p if MARKER in n["body"]]
    assert len(quoting) == 70 and {n["author"]["username"] for n in quoting} == {"carol"}

    # The Link chain (default sort desc: newest first), absolute URLs carrying every param.
    url: str | None = notes_url(gitlab) + "?per_page=100"
    seen: list[int] = []
    rels: list[set[str]] = []
    while url:
        response = http.get(url, headers=bot())
        seen += [note["id"] for note in response.json()]
        rels.append(set(response.links))
        url = response.links.get("next", {}).get("url")
        if url:
            assert url.startswith(notes_url(gitlab) + "?") and "per_page=100" in url and "sort=desc" in url
    assert seen == ids[::-1]
    assert rels == [{"next", "first", "last"}, {"prev", "next", "first", "last"}, {"prev", "first", "last"}]
    assert gitlab.request_count("GET", r"/notes$") == 6


def test_gitlab_per_page_default_cap_and_out_of_range(gitlab: ForgeServer, http: requests.Session) -> None:
    populate_250(gitlab)
    default = http.get(notes_url(gitlab), headers=bot())
    assert len(default.json()) == 20 and default.headers["X-Per-Page"] == "20"
    assert default.headers["X-Total-Pages"] == "13"
    capped = http.get(notes_url(gitlab), params={"per_page": 500}, headers=bot())
    assert len(capped.json()) == 100 and capped.headers["X-Per-Page"] == "100"
    assert capped.headers["X-Total-Pages"] == "3" and "per_page=500" in capped.links["next"]["url"]
    beyond = http.get(notes_url(gitlab), params={"per_page": 100, "page": 9}, headers=bot())
    assert beyond.status_code == 200 and beyond.json() == []
    assert (beyond.headers["X-Next-Page"], beyond.headers["X-Prev-Page"], beyond.headers["X-Page"]) == ("", "", "9")
    cases: list[tuple[dict[str, str | int], str]] = [
        ({"per_page": 0}, "per_page has a value not allowed"), ({"page": "x"}, "page is invalid"),
        ({"sort": "up"}, "sort does not have a valid value"),
        ({"order_by": "id"}, "order_by does not have a valid value")]
    for params, error in cases:
        bad = http.get(notes_url(gitlab), params=params, headers=bot())
        assert (bad.status_code, bad.json()) == (400, {"error": error})


def test_gitlab_default_order_is_newest_first_and_order_by_updated_at(
        gitlab: ForgeServer, http: requests.Session) -> None:
    first, second, third = gitlab.add_notes(PROJECT, IID, ["one", "two", "three"], author="mlci-bot")
    listed = http.get(notes_url(gitlab), headers=bot()).json()
    assert [n["id"] for n in listed] == [third["id"], second["id"], first["id"]]
    edited = http.put(f"{notes_url(gitlab)}/{first['id']}", data={"body": "one, edited"}, headers=bot())
    assert edited.status_code == 200 and edited.json()["updated_at"] > first["updated_at"]
    by_update = http.get(notes_url(gitlab), params={"order_by": "updated_at"}, headers=bot()).json()
    assert by_update[0]["id"] == first["id"] and by_update[0]["body"] == "one, edited"
    comments_only = http.get(notes_url(gitlab), params={"activity_filter": "only_comments"}, headers=bot())
    assert len(comments_only.json()) == 3


def test_gitlab_auth_private_token_bearer_and_job_token(gitlab: ForgeServer, http: requests.Session) -> None:
    assert http.get(f"{gitlab.gitlab_api}/user", headers=bot()).json()["username"] == "mlci-bot"
    assert http.get(f"{gitlab.gitlab_api}/user", headers={"Authorization": f"Bearer {BOT_TOKEN}"}).json()["id"] == 77
    for headers in ({}, bot("glpat-wrong"), {"Authorization": "Bearer glpat-wrong"}):
        for method in ("GET", "POST"):
            response = http.request(method, notes_url(gitlab), data={"body": "x"}, headers=headers)
            assert (response.status_code, response.json()) == (401, {"message": "401 Unauthorized"})
    # The request log keeps the headers: the token went out as PRIVATE-TOKEN.
    assert gitlab.requests[0].header("private-token") == BOT_TOKEN
    assert gitlab.requests[1].header("Authorization") == f"Bearer {BOT_TOKEN}"

    # CI_JOB_TOKEN: documented for GET of MR notes only; elsewhere it is no authentication at all.
    gitlab.add_job_token(JOB_TOKEN, "alice")
    job = {"JOB-TOKEN": JOB_TOKEN}
    assert http.get(notes_url(gitlab), headers=job).status_code == 200
    assert http.get(notes_url(gitlab), headers={"JOB-TOKEN": "glcbt-unknown"}).status_code == 401
    refused = [http.post(notes_url(gitlab), data={"body": "x"}, headers=job),
               http.get(f"{gitlab.gitlab_api}/user", headers=job),
               http.post(f"{gitlab.gitlab_api}/projects/{ENCODED}/uploads", files={"file": ("a.png", b"x")},
                         headers=job)]
    assert [(r.status_code, r.json()) for r in refused] == [(401, {"message": "401 Unauthorized"})] * 3
    assert gitlab.notes(PROJECT, IID) == []


def test_gitlab_create_edit_only_by_author_and_404s(gitlab: ForgeServer, http: requests.Session) -> None:
    created = http.post(notes_url(gitlab), data={"body": f"{MARKER}\nreport v1"}, headers=bot())
    assert created.status_code == 201
    note = created.json()
    assert note["author"] == {**note["author"], "id": 77, "username": "mlci-bot"}
    assert (note["noteable_iid"], note["noteable_type"], note["system"]) == (IID, "MergeRequest", False)
    by_json = http.post(f"{gitlab.gitlab_api}/projects/42/merge_requests/{IID}/notes", json={"body": "json"},
                        headers=bot())
    by_query = http.post(notes_url(gitlab), params={"body": "query"}, headers=bot())
    assert (by_json.status_code, by_query.status_code) == (201, 201)
    assert [n["body"] for n in gitlab.notes(PROJECT, IID)] == [f"{MARKER}\nreport v1", "json", "query"]

    note_url = f"{notes_url(gitlab)}/{note['id']}"
    forbidden = http.put(note_url, data={"body": "hijack"}, headers=bot(OTHER_TOKEN))
    assert (forbidden.status_code, forbidden.json()) == (403, {"message": "403 Forbidden"})
    system = gitlab.add_notes(PROJECT, IID, ["added 1 commit"], author="mlci-bot", system=True)[0]
    assert http.put(f"{notes_url(gitlab)}/{system['id']}", data={"body": "x"}, headers=bot()).status_code == 403
    updated = http.put(note_url, json={"body": f"{MARKER}\nreport v2"}, headers=bot())
    assert updated.status_code == 200 and updated.json()["body"].endswith("report v2")
    assert gitlab.notes(PROJECT, IID)[0]["body"].endswith("report v2")
    assert http.put(note_url, data={"body": ""}, headers=bot()).json() == {"error": "body is empty"}
    missing = http.post(notes_url(gitlab), data={}, headers=bot())
    assert (missing.status_code, missing.json()) == (400, {"error": "body is missing"})

    not_found = [http.put(f"{notes_url(gitlab)}/999", data={"body": "x"}, headers=bot()),
                 http.get(notes_url(gitlab, iid=8), headers=bot()),
                 http.get(notes_url(gitlab, project="bank%2Fother"), headers=bot()),
                 http.get(f"{gitlab.gitlab_api}/projects/{PROJECT}/merge_requests/{IID}/notes", headers=bot())]
    assert [(r.status_code, r.json()) for r in not_found] == [
        (404, {"message": "404 Not found"}), (404, {"message": "404 MergeRequest Not Found"}),
        (404, {"message": "404 Project Not Found"}), (404, {"error": "404 Not Found"})]


def test_gitlab_note_body_limit_is_1000000_characters(gitlab: ForgeServer, http: requests.Session) -> None:
    exact = http.post(notes_url(gitlab), json={"body": "é" * 1_000_000}, headers=bot())
    assert exact.status_code == 201
    too_long = http.post(notes_url(gitlab), json={"body": "x" * 1_000_001}, headers=bot())
    assert too_long.status_code == 400
    assert too_long.json() == {
        "message": '400 Bad request - Note {:note=>["is too long (maximum is 1000000 characters)"]}'}
    edit = http.put(f"{notes_url(gitlab)}/{exact.json()['id']}", json={"body": "x" * 1_000_001}, headers=bot())
    assert edit.status_code == 400 and len(gitlab.notes(PROJECT, IID)) == 1
    assert gitlab.notes(PROJECT, IID)[0]["body"] == "é" * 1_000_000


def test_gitlab_upload_round_trip(gitlab: ForgeServer, http: requests.Session) -> None:
    data = png_bytes() + bytes(range(256)) + b"\r\n--\r\n"  # bytes a multipart parser could trip on
    response = http.post(f"{gitlab.gitlab_api}/projects/{ENCODED}/uploads",
                         files={"file": ("roc curve.png", data, "image/png")}, headers=bot())
    assert response.status_code == 201
    upload = response.json()
    secret = upload["url"].split("/")[2]
    assert len(secret) == 32 and upload["url"] == f"/uploads/{secret}/roc_curve.png"
    assert upload["full_path"] == f"/-/project/42/uploads/{secret}/roc_curve.png"
    assert upload["markdown"] == f"![roc_curve]({upload['url']})" and upload["alt"] == "roc_curve"
    for url, headers in [(gitlab.url + upload["full_path"], {}), (f"{gitlab.url}/{PROJECT}{upload['url']}", {}),
                         (f"{gitlab.gitlab_api}/projects/{ENCODED}/uploads/{secret}/roc_curve.png", bot())]:
        served = http.get(url, headers=headers)
        assert served.status_code == 200 and served.content == data
        assert served.headers["Content-Type"] == "image/png"
    assert gitlab.uploads(PROJECT)[0].data[:8] == b"\x89PNG\r\n\x1a\n"
    assert http.post(f"{gitlab.gitlab_api}/projects/{ENCODED}/uploads", headers=bot()).json() == {
        "error": "file is missing"}


# --- GitHub --------------------------------------------------------------------------------------------


def test_github_250_comments_link_chain(github: ForgeServer, http: requests.Session) -> None:
    ids = [c["id"] for c in github.add_comments("bank", "credit-model", 12, (f"c{i}" for i in range(180)),
                                                author="alice")]
    ids += [c["id"] for c in github.add_comments("bank", "credit-model", 12,
                                                 (f"> {MARKER} {i}" for i in range(70)), author="carol")]
    url: str | None = comments_url(github) + "?per_page=100"
    seen, rels, lengths = [], [], []
    while url:
        response = http.get(url, headers=gh())
        assert response.status_code == 200
        lengths.append(len(response.json()))
        seen += [c["id"] for c in response.json()]
        rels.append(list(response.links))
        url = response.links.get("next", {}).get("url")
    assert lengths == [100, 100, 50] and seen == ids  # ascending id
    assert rels == [["next", "last"], ["prev", "next", "last", "first"], ["prev", "first"]]
    first = http.get(comments_url(github), params={"per_page": 100}, headers=gh())
    repo_id = github.add_pull_request("bank", "credit-model", 13)
    assert first.headers["Link"] == (
        f'<{github.url}/repositories/{repo_id}/issues/12/comments?per_page=100&page=2>; rel="next", '
        f'<{github.url}/repositories/{repo_id}/issues/12/comments?per_page=100&page=3>; rel="last"')


def test_github_per_page_default_cap_and_no_link_on_one_page(github: ForgeServer, http: requests.Session) -> None:
    github.add_comments("bank", "credit-model", 12, (f"c{i}" for i in range(150)), author="alice")
    assert len(http.get(comments_url(github), headers=gh()).json()) == 30
    capped = http.get(comments_url(github), params={"per_page": 1000}, headers=gh())
    assert len(capped.json()) == 100 and capped.links["last"]["url"].endswith("per_page=1000&page=2")
    github.add_pull_request("bank", "credit-model", 14)
    github.add_comments("bank", "credit-model", 14, ["only one"], author="alice")
    single = http.get(f"{github.github_api}/repos/bank/credit-model/issues/14/comments", headers=gh())
    assert len(single.json()) == 1 and "Link" not in single.headers


def test_github_auth(github: ForgeServer, http: requests.Session) -> None:
    assert http.get(f"{github.github_api}/user", headers=gh()).json()["login"] == "github-actions[bot]"
    assert http.get(f"{github.github_api}/user", headers=gh(scheme="token")).json()["type"] == "Bot"
    anonymous = http.get(f"{github.github_api}/user")
    assert anonymous.status_code == 401 and anonymous.json()["message"] == "Requires authentication"
    for method in ("GET", "POST"):
        bad = http.request(method, comments_url(github), json={"body": "x"}, headers=gh("ghp_wrong"))
        assert bad.status_code == 401
        assert bad.json() == {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest",
                              "status": "401"}
    assert http.get(comments_url(github)).status_code == 404  # private repo: hidden from anonymous callers
    github.add_pull_request("octo", "public-repo", 1, public=True)
    public = f"{github.github_api}/repos/octo/public-repo/issues/1/comments"
    assert http.get(public).status_code == 200
    assert http.post(public, json={"body": "x"}).json()["message"] == "Requires authentication"


def test_github_create_update_author_only_and_limits(github: ForgeServer, http: requests.Session) -> None:
    created = http.post(comments_url(github), json={"body": f"{MARKER}\nv1"}, headers=gh())
    assert created.status_code == 201
    comment = created.json()
    assert created.headers["Location"] == comment["url"]
    assert comment["user"]["login"] == "github-actions[bot]" and comment["html_url"].endswith(
        f"/bank/credit-model/pull/12#issuecomment-{comment['id']}")
    edit_url = f"{github.github_api}/repos/bank/credit-model/issues/comments/{comment['id']}"
    forbidden = http.patch(edit_url, json={"body": "hijack"}, headers=gh(OTHER_TOKEN))
    assert forbidden.status_code == 403 and forbidden.json()["status"] == "403"
    updated = http.patch(edit_url, json={"body": f"{MARKER}\nv2"}, headers=gh())
    assert updated.status_code == 200 and github.comments("bank", "credit-model", 12)[0]["body"].endswith("v2")
    assert http.patch(edit_url + "0", json={"body": "x"}, headers=gh()).status_code == 404
    assert http.get(f"{github.github_api}/repos/bank/credit-model/issues/99/comments", headers=gh()).status_code == 404

    assert http.post(comments_url(github), json={"body": "x" * 65_536}, headers=gh()).status_code == 201
    too_long = http.post(comments_url(github), json={"body": "x" * 65_537}, headers=gh())
    assert too_long.status_code == 422
    assert too_long.json()["message"] == "Validation Failed"
    assert too_long.json()["errors"] == [{"resource": "IssueComment", "code": "unprocessable", "field": "data",
                                          "message": "Body is too long (maximum is 65536 characters)"}]
    assert http.patch(edit_url, json={"body": "x" * 65_537}, headers=gh()).status_code == 422
    missing = http.post(comments_url(github), json={}, headers=gh())
    assert missing.status_code == 422 and "wasn't supplied" in missing.json()["message"]
    assert http.post(comments_url(github), data="{", headers=gh()).status_code == 400
    assert len(github.comments("bank", "credit-model", 12)) == 2


def test_github_enterprise_prefix(github: ForgeServer, http: requests.Session) -> None:
    github.add_comments("bank", "credit-model", 12, (f"c{i}" for i in range(3)), author="alice")
    response = http.get(comments_url(github, github.ghes_api), params={"per_page": 2}, headers=gh())
    assert response.status_code == 200 and response.links["next"]["url"].startswith(
        f"{github.ghes_api}/repositories/")
    assert http.get(response.links["next"]["url"], headers=gh()).json()[0]["body"] == "c2"
    assert http.get(f"{github.ghes_api}/user", headers=gh()).status_code == 200


# --- faults --------------------------------------------------------------------------------------------


def test_fault_429_with_retry_after_then_success(gitlab: ForgeServer, http: requests.Session) -> None:
    gitlab.fail_next("GET", r"/merge_requests/\d+/notes$", 429, retry_after=1)
    limited = http.get(notes_url(gitlab), headers=bot())
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert gitlab.pending_faults() == 0
    assert http.get(notes_url(gitlab), headers=bot()).status_code == 200
    assert gitlab.request_count("GET", r"/notes$") == 2 and gitlab.request_count(status=429) == 1
    assert [r.injected for r in gitlab.requests] == [True, False]


def test_fault_502_after_store_keeps_the_note(gitlab: ForgeServer, http: requests.Session) -> None:
    gitlab.fail_next("POST", r"/notes$", 502, store_first=True)
    failed = http.post(notes_url(gitlab), data={"body": f"{MARKER}\nreport"}, headers=bot())
    assert failed.status_code == 502 and failed.headers["Content-Type"] == "text/html"
    stored = gitlab.notes(PROJECT, IID)
    assert [n["body"] for n in stored] == [f"{MARKER}\nreport"]
    # A careful client re-reads before re-posting and finds its note.
    listed = http.get(notes_url(gitlab), params={"per_page": 100}, headers=bot()).json()
    assert [n["id"] for n in listed if MARKER in n["body"]] == [stored[0]["id"]]


def test_fault_times_and_github_store_first(github: ForgeServer, http: requests.Session) -> None:
    github.fail_next("POST", r"/issues/12/comments$", 500, times=2)
    github.fail_next("PATCH", r"/issues/comments/\d+$", 502, store_first=True, body={"message": "Server Error"})
    statuses = [http.post(comments_url(github), json={"body": "x"}, headers=gh()).status_code for _ in range(3)]
    assert statuses == [500, 500, 201]
    comment_id = github.comments("bank", "credit-model", 12)[0]["id"]
    patched = http.patch(f"{github.github_api}/repos/bank/credit-model/issues/comments/{comment_id}",
                         json={"body": "y"}, headers=gh())
    assert patched.status_code == 502 and patched.json() == {"message": "Server Error"}
    assert [c["body"] for c in github.comments("bank", "credit-model", 12)] == ["y"]
    assert github.errors == []


# --- TLS and lifecycle ----------------------------------------------------------------------------------


def test_tls_with_ca_bundle(forge_tls: ForgeServer, http: requests.Session) -> None:
    forge_tls.add_user(BOT_TOKEN, "mlci-bot")
    assert forge_tls.url.startswith("https://127.0.0.1:") and forge_tls.ca_bundle is not None
    assert forge_tls.ca_bundle.read_text().startswith("-----BEGIN CERTIFICATE-----")
    response = http.get(f"{forge_tls.gitlab_api}/user", headers=bot(), verify=str(forge_tls.ca_bundle))
    assert response.json()["username"] == "mlci-bot"
    with pytest.raises(requests.exceptions.SSLError):
        http.get(f"{forge_tls.gitlab_api}/user", headers=bot(), verify=True)  # certifi does not know this CA
    with pytest.raises(requests.exceptions.SSLError):  # nor does the system bundle the environment points at
        requests.get(f"{forge_tls.github_api}/user", headers=gh(), verify=os.environ.get(
            "REQUESTS_CA_BUNDLE", True))
    assert forge_tls.errors == []


def test_stop_closes_the_port_and_keep_alive_connections(http: requests.Session) -> None:
    server = start_forge()
    server.add_user(BOT_TOKEN, "mlci-bot")
    assert http.get(f"{server.gitlab_api}/user", headers=bot()).status_code == 200  # keep-alive connection open
    server.stop()
    server.stop()
    with pytest.raises(requests.exceptions.ConnectionError):
        http.get(f"{server.gitlab_api}/user", headers=bot(), timeout=2)


def test_unknown_routes(forge: ForgeServer, http: requests.Session) -> None:
    assert http.get(f"{forge.gitlab_api}/nope").json() == {"error": "404 Not Found"}
    assert http.get(f"{forge.github_api}/nope").json()["message"] == "Not Found"
    assert json.loads(http.delete(f"{forge.gitlab_api}/user").content) == {"error": "405 Not Allowed"}


# --- token kinds and rate limits ------------------------------------------------------------------------


def test_github_installation_token_is_a_bot_without_get_user_and_a_pat_is_not(
        forge: ForgeServer, http: requests.Session) -> None:
    forge.add_installation_token("ghs_actions")
    forge.add_installation_token("ghs_app", "credit-ml")
    forge.add_user("ghp_pat", "alice")
    forge.add_pull_request("bank", "credit-model", 12)
    assert http.get(f"{forge.github_api}/user", headers=gh("ghp_pat")).json()["login"] == "alice"
    for token in ("ghs_actions", "ghs_app"):
        denied = http.get(f"{forge.ghes_api}/user", headers=gh(token))
        assert denied.status_code == 403 and denied.json()["message"] == "Resource not accessible by integration"
        assert http.post(comments_url(forge), headers=gh(token), json={"body": token}).status_code == 201
    actions, app = http.get(comments_url(forge), headers=gh("ghp_pat")).json()
    assert {k: actions["user"][k] for k in ("login", "id", "type")} == {
        "login": "github-actions[bot]", "id": 41898282, "type": "Bot"}
    assert actions["performed_via_github_app"]["slug"] == "github-actions"
    assert (app["user"]["login"], app["user"]["type"], app["performed_via_github_app"]["slug"]) == (
        "credit-ml[bot]", "Bot", "credit-ml")
    assert http.get(f"{forge.gitlab_api}/user", headers=bot("ghs_actions")).status_code == 401  # GitHub-only


def test_rate_limited_requests_are_not_processed(gitlab: ForgeServer, http: requests.Session) -> None:
    gitlab.fail_next("POST", r"/notes$", 429, rate_limit="gitlab-throttle", retry_after=30)
    refused = http.post(notes_url(gitlab), headers=bot(), json={"body": "x"})
    assert refused.status_code == 429 and refused.headers["Content-Type"] == "text/plain"
    assert {name: refused.headers[name] for name in ("RateLimit-Name", "RateLimit-Remaining", "Retry-After")} == {
        "RateLimit-Name": "throttle_authenticated_api", "RateLimit-Remaining": "0", "Retry-After": "30"}
    assert int(refused.headers["RateLimit-Reset"]) >= time.time() + 29
    assert gitlab.notes(PROJECT, IID) == []
    with pytest.raises(ValueError, match="rate_limit must be one of"):
        gitlab.fail_next("GET", r"/notes$", 429, rate_limit="gitlab")
