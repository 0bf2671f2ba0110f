"""A forge answer that is not the API's (a wrong api_url serving HTML, a proxy's login page, a 200 without
the fields mlci reads) is one line naming the URL, exit 3; every forge body goes through the checked
accessors of forge/http.py."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlci.core.errors import EnvironmentProblem, ExitCode
from mlci.forge import sticky
from mlci.forge.github import GitHub
from mlci.forge.gitlab import GitLab
from tests.testing.forge import ForgeServer

FORGE_PACKAGE = Path(__file__).resolve().parents[2] / "mlci" / "forge"
LOGIN_PAGE = "<!DOCTYPE html><html><head><title>Sign in · GitLab</title></head><body>sign in</body></html>"


@pytest.fixture
def github(forge: ForgeServer) -> GitHub:
    forge.add_user("ghp_pat", "ml-bot")
    forge.add_pull_request("bank", "credit-model", 5)
    return GitHub(forge.github_api, "bank/credit-model", 5, "ghp_pat", "GITHUB_TOKEN", None)


def _fails(action: object, *patterns: str) -> str:
    assert callable(action)
    with pytest.raises(EnvironmentProblem) as caught:
        action()
    message = str(caught.value)
    assert caught.value.exit_code == ExitCode.ENVIRONMENT and "\n" not in message
    for pattern in patterns:
        assert re.search(pattern, message), message
    return message


def test_html_from_a_wrong_api_url_names_the_url(forge: ForgeServer, gitlab: GitLab) -> None:
    forge.fail_next("GET", r"/user$", 200, body=LOGIN_PAGE, content_type="text/html; charset=utf-8")
    _fails(gitlab.whoami, rf"GitLab: GET {re.escape(forge.gitlab_api)}/user: answered 200 with text/html, not JSON",
           r"CI_API_V4_URL", r"/api/v4")


def test_a_200_without_the_fields_mlci_reads(forge: ForgeServer, gitlab: GitLab, github: GitHub) -> None:
    forge.fail_next("GET", r"/api/v4/user$", 200, body={"username": "mlci-bot"})
    _fails(gitlab.whoami, r"GET \S+/api/v4/user: answered without an integer `id` \(no such field\)")
    forge.fail_next("GET", r"^/user$", 200, body={"id": "12", "login": "ml-bot"})
    _fails(github.whoami, r"GET \S+/user: answered without an integer `id` \(got str\)")
    forge.fail_next("GET", r"/notes$", 200, body={"notes": []})
    _fails(lambda: list(gitlab.comments()), r"/notes: answered a JSON dict, not a list of objects")
    forge.fail_next("GET", r"/notes$", 200, body=[{"id": 1, "body": "x", "author": {"name": "no id"}}])
    _fails(lambda: list(gitlab.comments()), r"/notes item 0 `author`: answered without an integer `id`")
    forge.fail_next("GET", r"/comments$", 200, body=[{"id": 1, "body": 5, "user": None}])
    _fails(lambda: list(github.comments()), r"/comments item 0: answered without a string `body` \(got int\)")
    forge.fail_next("POST", r"/notes$", 201, body=b"", content_type="application/json")
    _fails(lambda: gitlab.create("x"), r"POST \S+/notes: answered 201 with application/json, not JSON")


def test_a_redirected_write_is_refused_not_turned_into_a_get(forge: ForgeServer, gitlab: GitLab) -> None:
    forge.fail_next("POST", r"/notes$", 302, body="", content_type="text/html")
    _fails(lambda: sticky.upsert(gitlab, "metrics", "body", "pointer"), r"GitLab 302 on POST \S+/notes: redirected")
    assert forge.request_count("GET", r"/notes$") == 1  # the look before the POST; no GET from a redirect


def test_deleted_authors_and_null_bodies_are_read(forge: ForgeServer, github: GitHub) -> None:
    forge.fail_next("GET", r"/comments$", 200, body=[{"id": 9, "body": None, "user": None}])
    (comment,) = list(github.comments())
    assert (comment.id, comment.body, comment.author) == (9, "", None)


def test_server_messages_are_one_line(forge: ForgeServer, gitlab: GitLab) -> None:
    forge.fail_next("GET", r"/user$", 403, body={
        "error": "insufficient_scope",
        "error_description": "The request requires higher privileges than provided by the access token.",
        "scope": "api read_user"})
    _fails(gitlab.whoami, r"GitLab 403 on GET /user: insufficient_scope: The request requires higher privileges",
           r"the `api` scope")
    forge.fail_next("POST", r"/notes$", 400, body={"message": {"note": ["is too long\n(maximum)"]}})
    _fails(lambda: gitlab.create("x"), r"GitLab 400 on POST \S+: note \['is too long\\n\(maximum\)'\]")


def test_every_forge_body_is_read_through_the_checked_accessors() -> None:
    unchecked = []
    for path in sorted(FORGE_PACKAGE.glob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\.json\(\)|\.response\.(content|text)\b", line) and path.name != "http.py":
                unchecked.append(f"{path.name}:{number}: {line.strip()}")
    assert unchecked == [], "read forge bodies through Reply/Fields (forge/http.py):\n" + "\n".join(unchecked)


def test_no_answer_names_the_api_url_and_what_to_check() -> None:
    api = "gitlab.bank/api/v4"  # no scheme: requests cannot even send it (a refused connection reads the same)
    gitlab = GitLab(api, "bank/credit-model", 7, "glpat-bot", "GITLAB_TOKEN", None)
    _fails(gitlab.whoami, r"GitLab: GET /user failed: gitlab\.bank: MissingSchema \(is forge.api_url "
                          r"\(or CI_API_V4_URL\) GitLab's API root")
