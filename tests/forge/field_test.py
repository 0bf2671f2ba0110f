"""Forges and networks as CI runners meet them: redirects to another host, caches that repeat a page, a
proxy that drops X-Next-Page, a comment deleted mid-run, fork merge requests, job tokens given by mistake,
CA bundles that are not there, TLS and proxy failures. Each answer comes from the stand-in over real HTTP."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from mlci.core.errors import ConfigError, EnvironmentProblem
from mlci.core.http import make_session, no_answer, send
from mlci.forge import sticky
from mlci.forge.github import GitHub
from mlci.forge.gitlab import GitLab
from mlci.forge.http import ForgeError
from mlci.forge.select import connect
from mlci.forge.settings import ForgeSettings
from tests.testing.forge import ForgeServer, start_forge

MARK = sticky.marker("metrics")
NOTES = r"/merge_requests/7/notes$"


@pytest.fixture
def elsewhere() -> Iterator[ForgeServer]:
    """A second forge on another port: another origin."""
    server = start_forge()
    try:
        yield server
    finally:
        server.stop()


def test_the_token_never_follows_a_redirect_to_another_origin(forge: ForgeServer, elsewhere: ForgeServer,
                                                               gitlab: GitLab) -> None:
    forge.fail_next("GET", r"/api/v4/user$", 302, headers={"Location": f"{elsewhere.gitlab_api}/user"})
    with pytest.raises(ForgeError, match=rf"GitLab 302 on GET /user: redirected to {elsewhere.gitlab_api}/user, "
                                         r"another origin, where mlci does not send the token \(set forge.api_url"):
        gitlab.whoami()
    (followed,) = elsewhere.requests
    assert followed.path == "/api/v4/user" and followed.header("PRIVATE-TOKEN") is None
    assert followed.header("Authorization") is None


def test_a_redirect_within_the_api_keeps_the_token(forge: ForgeServer) -> None:
    """GitHub answers 301 for a renamed repository, to /repositories/:id/... on the same host."""
    forge.add_user("ghp_pat", "ml-bot")
    repo_id = forge.add_pull_request("bank", "credit-model", 5)
    forge.add_comments("bank", "credit-model", 5, [f"{MARK}\nold"], author="ml-bot")
    forge.fail_next("GET", r"^/repos/bank/old-name/issues/5/comments$", 301,
                    headers={"Location": f"{forge.github_api}/repositories/{repo_id}/issues/5/comments?per_page=100"})
    renamed = GitHub(forge.github_api, "bank/old-name", 5, "ghp_pat", "GITHUB_TOKEN", None)
    assert [c.body for c in renamed.comments()] == [f"{MARK}\nold"]
    assert forge.requests[-1].header("Authorization") == "Bearer ghp_pat"


def test_a_pagination_link_to_another_host_is_not_followed(forge: ForgeServer, elsewhere: ForgeServer) -> None:
    forge.add_user("ghp_pat", "ml-bot")
    forge.add_pull_request("bank", "credit-model", 5)
    forge.fail_next("GET", r"/issues/5/comments$", 200, body=[],
                    headers={"Link": f'<{elsewhere.github_api}/repositories/1/issues/5/comments?page=2>; rel="next"'})
    github = GitHub(forge.github_api, "bank/credit-model", 5, "ghp_pat", "GITHUB_TOKEN", None)
    with pytest.raises(ForgeError, match="the API's link points away from"):
        list(github.comments())
    assert elsewhere.requests == []


def test_a_cache_that_repeats_a_page_fails_instead_of_looping(forge: ForgeServer, gitlab: GitLab) -> None:
    """A cache in front of the API that ignores the query string: page 1 with X-Next-Page: 2, forever."""
    forge.fail_next("GET", NOTES, 200, times=50, body=[], headers={"X-Next-Page": "2"})
    started = time.monotonic()
    with pytest.raises(ForgeError, match="the same page again: the pages do not end"):
        list(gitlab.comments())
    assert forge.request_count("GET", NOTES) == 2 and time.monotonic() - started < 5
    forge.fail_next("GET", r"/issues/5/comments$", 200, times=50, body=[],
                    headers={"Link": f'<{forge.github_api}/repos/bank/credit-model/issues/5/comments?per_page=100>; '
                                     'rel="next"'})
    forge.add_user("ghp_pat", "ml-bot")
    forge.add_pull_request("bank", "credit-model", 5)
    github = GitHub(forge.github_api, "bank/credit-model", 5, "ghp_pat", "GITHUB_TOKEN", None)
    with pytest.raises(ForgeError, match="the same page again"):
        list(github.comments())


def test_without_x_next_page_the_link_header_leads_on(forge: ForgeServer, gitlab: GitLab) -> None:
    """A proxy that drops X-* headers: page 1 still says rel="next"; the report's note on page 2 is found."""
    forge.add_notes("bank/credit-model", 7, [f"review {i}" for i in range(100)], author="alice")
    forge.add_notes("bank/credit-model", 7, [f"{MARK}\nold"], author="mlci-bot")
    first = forge.notes("bank/credit-model", 7)[:100]
    link = (f'<{forge.gitlab_api}/projects/bank%2Fcredit-model/merge_requests/7/notes?order_by=created_at&page=2'
            '&per_page=100&sort=asc>; rel="next"')
    forge.fail_next("GET", NOTES, 200, body=first, headers={"Link": link})
    posted = sticky.upsert(gitlab, "metrics", "new", "pointer")
    assert posted.action == "updated"
    assert [n["body"] for n in forge.notes("bank/credit-model", 7)][-1] == f"{MARK}\nnew"
    assert forge.request_count("POST", NOTES) == 0


class _DeletedMeanwhile(GitHub):
    """The report's comment is deleted (by its author, through the API) between the list and the PATCH."""

    def update(self, comment_id: int, body: str) -> bool:
        self.api.session.delete(f"{self.api.base}{self.repo}/issues/comments/{comment_id}").raise_for_status()
        return super().update(comment_id, body)


def test_a_comment_deleted_between_list_and_update_is_posted_anew(forge: ForgeServer) -> None:
    forge.add_installation_token("ghs_actions")
    forge.add_pull_request("bank", "credit-model", 5)
    github = GitHub(forge.github_api, "bank/credit-model", 5, "ghs_actions", "GITHUB_TOKEN", None)
    sticky.upsert(github, "metrics", "first", "pointer")
    deleting = _DeletedMeanwhile(forge.github_api, "bank/credit-model", 5, "ghs_actions", "GITHUB_TOKEN", None)
    posted = sticky.upsert(deleting, "metrics", "second", "pointer")
    assert posted.action == "created"
    assert [c["body"] for c in forge.comments("bank", "credit-model", 5)] == [f"{MARK}\nsecond"]


def test_a_fork_merge_request_is_commented_in_its_own_project(forge: ForgeServer) -> None:
    """A fork's MR pipeline runs in the fork (CI_PROJECT_ID); the MR, and the note, are in the target project."""
    forge.add_user("glpat-bot", "mlci-bot")
    target, fork = forge.add_project("bank/credit-model"), forge.add_project("alice/credit-model")
    forge.add_merge_request(target, 7)
    forge.add_merge_request(fork, 7)  # the fork's own, unrelated !7
    env = {"GITLAB_CI": "true", "CI_API_V4_URL": forge.gitlab_api, "CI_PROJECT_ID": str(fork),
           "CI_PROJECT_PATH": "alice/credit-model", "CI_MERGE_REQUEST_PROJECT_ID": str(target),
           "CI_MERGE_REQUEST_PROJECT_PATH": "bank/credit-model", "CI_MERGE_REQUEST_IID": "7",
           "GITLAB_TOKEN": "glpat-bot"}
    client = connect(ForgeSettings(), env)
    assert client is not None
    sticky.upsert(client, "metrics", "body", "pointer")
    client.upload("roc.png", b"\x89PNG")
    assert len(forge.notes(target, 7)) == 1 and forge.notes(fork, 7) == []
    assert len(forge.uploads(target)) == 1 and forge.uploads(fork) == []


@pytest.mark.parametrize("token", ["the-job-token-value", "glcbt-64_abcdefghijklmnopqrst"])
def test_a_job_token_in_gitlab_token_is_named_before_any_call(forge: ForgeServer, token: str) -> None:
    env = {"GITLAB_CI": "true", "CI_API_V4_URL": forge.gitlab_api, "CI_PROJECT_ID": "1", "CI_MERGE_REQUEST_IID": "7",
           "CI_JOB_TOKEN": "the-job-token-value", "GITLAB_TOKEN": token}
    with pytest.raises(EnvironmentProblem, match=r"GITLAB_TOKEN holds a CI job token \(CI_JOB_TOKEN\), which cannot "
                                                 r"post merge request notes: store a project access token"):
        connect(ForgeSettings(), env)
    assert forge.requests == []


def test_a_ca_bundle_that_is_not_there_is_named(forge: ForgeServer, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"GITLAB_CI": "true", "CI_API_V4_URL": forge.gitlab_api, "CI_PROJECT_ID": "1", "CI_MERGE_REQUEST_IID": "7",
           "GITLAB_TOKEN": "glpat-x"}
    missing = str(tmp_path / "corp-ca.pem")
    with pytest.raises(ConfigError, match=r"forge.ca_bundle .*corp-ca.pem: no such file"):
        connect(ForgeSettings(ca_bundle=missing), env)
    with pytest.raises(EnvironmentProblem, match=r"^REQUESTS_CA_BUNDLE .*corp-ca.pem: no such file"):
        connect(ForgeSettings(), {**env, "REQUESTS_CA_BUNDLE": missing})
    # A bundle requests finds by itself (CURL_CA_BUNDLE in the process environment) is exit 3 too, never 70.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.setenv("CURL_CA_BUNDLE", missing)
    tls = start_forge(tls=True, directory=tmp_path / "tls")
    try:
        with pytest.raises(EnvironmentProblem, match=r"GET https://127.0.0.1:\d+/x: Could not find a suitable TLS CA"):
            send(make_session({}, None), "GET", f"{tls.url}/x", idempotent=True)
    finally:
        tls.stop()


def test_an_untrusted_certificate_says_so_at_once(forge_tls: ForgeServer) -> None:
    forge_tls.add_user("glpat-bot", "mlci-bot")
    waits: list[float] = []
    with pytest.raises(requests.exceptions.SSLError):
        send(make_session({}, None), "GET", f"{forge_tls.gitlab_api}/user", idempotent=True, verify=True,
             sleep=waits.append)
    assert waits == []  # not retried: a certificate does not change in 7 seconds
    with_userinfo = forge_tls.gitlab_api.replace("https://", "https://alice:s3cret-pw@")  # never shown
    client = GitLab(with_userinfo, "1", 7, "glpat-bot", "GITLAB_TOKEN", None)
    client.api.session.verify = True  # the system's CAs (the machine's REQUESTS_CA_BUNDLE), not the forge's
    with pytest.raises(ForgeError, match=r"GitLab: GET /user failed: 127.0.0.1:\d+: TLS: certificate verify failed: "
                                         r"unable to get local issuer certificate .*set forge.ca_bundle") as caught:
        client.whoami()
    assert "s3cret" not in str(caught.value)


class _Proxy(BaseHTTPRequestHandler):
    """A corporate proxy that wants credentials: 407 to every CONNECT."""

    def do_CONNECT(self) -> None:
        self.send_response(407)
        self.send_header("Proxy-Authenticate", 'Basic realm="corp"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        """Quiet."""


def test_a_proxy_that_wants_credentials_is_named_at_once(forge_tls: ForgeServer,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    for name in ("NO_PROXY", "no_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
    try:
        client = GitLab(forge_tls.gitlab_api, "1", 7, "glpat-bot", "GITLAB_TOKEN", str(forge_tls.ca_bundle))
        started = time.monotonic()
        with pytest.raises(ForgeError, match=r"GET /user failed: 127.0.0.1:\d+: the proxy: 407 Proxy Authentication "
                                             r"Required \(check HTTPS_PROXY"):
            client.whoami()
        assert time.monotonic() - started < 2  # not retried with backoff
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_nothing_listening_names_the_reason() -> None:
    with pytest.raises(requests.ConnectionError) as caught:
        send(make_session({}, None), "GET", "http://127.0.0.1:9/api/v4/user", idempotent=True, sleep=lambda _: None)
    assert no_answer(caught.value) == "cannot connect: Connection refused"
