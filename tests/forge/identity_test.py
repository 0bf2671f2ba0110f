"""Whose comment is the report's, on the forge stand-in: personal access tokens through GET /user,
installation tokens (GITHUB_TOKEN, GitHub App tokens) without it, `forge.bot_login`, and marker comments by
anyone else (a reviewer quoting it, another bot) never updated."""
from __future__ import annotations

import logging

import pytest

from mlci.core.errors import EnvironmentProblem, ExitCode
from mlci.forge import sticky
from mlci.forge.base import Author, Identity
from mlci.forge.github import ACTIONS_BOT_ID, GitHub
from mlci.forge.gitlab import GitLab
from tests.testing.forge import GITHUB_INTEGRATION_403, ForgeServer

MARK = sticky.marker("metrics")


def _github(forge: ForgeServer, token: str, bot_login: str | None = None) -> GitHub:
    return GitHub(forge.github_api, "bank/credit-model", 5, token, "GITHUB_TOKEN", None, bot_login)


@pytest.fixture
def pr(forge: ForgeServer) -> ForgeServer:
    """PR #5 with a reviewer quoting the marker and another bot whose comment starts with it."""
    forge.add_pull_request("bank", "credit-model", 5)
    forge.add_user(None, "renovate[bot]", type="Bot")
    forge.add_comments("bank", "credit-model", 5, [f"> {MARK}\n> quoted"], author="alice")
    forge.add_comments("bank", "credit-model", 5, [f"{MARK}\nanother bot's report"], author="renovate[bot]")
    return forge


def _bodies_by(forge: ForgeServer, login: str) -> list[str]:
    return [c["body"] for c in forge.comments("bank", "credit-model", 5) if c["user"]["login"] == login]


def test_installation_token_finds_github_actions_bot_comment_without_get_user(pr: ForgeServer) -> None:
    pr.add_installation_token("ghs_actions_token")
    github = _github(pr, "ghs_actions_token")
    me = github.whoami()
    assert me == Identity(login="github-actions[bot]", bot=True)  # the id 41898282 is github.com's only
    assert pr.request_count("GET", r"^/user$", status=403) == 1
    first = sticky.upsert(github, "metrics", "v1", "pointer")
    second = sticky.upsert(github, "metrics", "v2", "pointer")
    assert (first.action, second.action) == ("created", "updated") and first.comment_id == second.comment_id
    assert _bodies_by(pr, "github-actions[bot]") == [f"{MARK}\nv2"]
    assert _bodies_by(pr, "renovate[bot]") == [f"{MARK}\nanother bot's report"]
    assert _bodies_by(pr, "alice") == [f"> {MARK}\n> quoted"]


def test_installation_identity_on_github_com_also_needs_the_bots_id() -> None:
    github = GitHub("https://api.github.com", "bank/credit-model", 5, "t", "GITHUB_TOKEN", None)
    assert github.api.base == "https://api.github.com"
    me = Identity(id=ACTIONS_BOT_ID, login="github-actions[bot]", bot=True)
    assert me.wrote(Author(41898282, "github-actions[bot]", bot=True))
    assert not me.wrote(Author(99, "github-actions[bot]", bot=True))  # an impostor id (GHES has its own)
    assert not me.wrote(Author(41898282, "github-actions[bot]", bot=False))
    assert not Identity(login="bot").wrote(None) and not Identity().wrote(Author(1, "x"))
    assert Identity(login="My-App[bot]").wrote(Author(7, "my-app[bot]", bot=True))  # logins: case-insensitive


def test_personal_access_token_is_found_by_get_user_and_other_marker_comments_are_left(pr: ForgeServer) -> None:
    pr.add_user("ghp_pat_token", "ml-bot")
    pr.add_comments("bank", "credit-model", 5, [f"{MARK}\nold"], author="ml-bot")
    github = _github(pr, "ghp_pat_token")
    me = github.whoami()
    assert me.login == "ml-bot" and me.id is not None and not me.bot
    assert sticky.upsert(github, "metrics", "new", "pointer").action == "updated"
    assert _bodies_by(pr, "ml-bot") == [f"{MARK}\nnew"]
    assert _bodies_by(pr, "renovate[bot]") == [f"{MARK}\nanother bot's report"]


def test_app_token_needs_bot_login_and_warns_when_it_posted_as_someone_else(
        pr: ForgeServer, caplog: pytest.LogCaptureFixture) -> None:
    bot = pr.add_installation_token("ghs_app_token", "credit-ml")
    assert (bot.username, bot.type) == ("credit-ml[bot]", "Bot")
    with caplog.at_level(logging.WARNING):
        sticky.upsert(_github(pr, "ghs_app_token"), "metrics", "v1", "pointer")
    assert "set forge.bot_login: credit-ml[bot]" in caplog.text
    configured = _github(pr, "ghs_app_token", bot_login="credit-ml[bot]")
    requests_before = pr.request_count("GET", r"^/user$")
    assert sticky.upsert(configured, "metrics", "v2", "pointer").action == "updated"
    assert pr.request_count("GET", r"^/user$") == requests_before  # the override needs no GET /user
    assert _bodies_by(pr, "credit-ml[bot]") == [f"{MARK}\nv2"]
    (comment,) = [c for c in pr.comments("bank", "credit-model", 5) if c["user"]["login"] == "credit-ml[bot]"]
    assert comment["performed_via_github_app"]["slug"] == "credit-ml"


def test_other_403s_on_get_user_stay_errors(pr: ForgeServer) -> None:
    pr.add_user("ghp_pat_token", "ml-bot")
    pr.fail_next("GET", r"^/user$", 403, body={"message": "Must have admin rights to Repository.",
                                                "documentation_url": "https://docs.github.com/rest"})
    with pytest.raises(EnvironmentProblem, match=r"GitHub 403 on GET /user: Must have admin rights") as caught:
        _github(pr, "ghp_pat_token").whoami()
    assert caught.value.exit_code == ExitCode.ENVIRONMENT


def test_gitlab_project_access_token_bot_calls_get_user_and_bot_login_overrides(forge: ForgeServer) -> None:
    forge.add_merge_request("bank/credit-model", 7)
    bot = forge.add_user("glpat-project-bot", "project_41_bot_3f2a", type="Bot")
    gitlab = GitLab(forge.gitlab_api, "bank/credit-model", 7, "glpat-project-bot", "GITLAB_TOKEN", None)
    assert gitlab.whoami() == Identity(id=bot.id, login="project_41_bot_3f2a")
    forge.add_notes("bank/credit-model", 7, [f"{MARK}\nby a maintainer"], author="alice")
    assert sticky.upsert(gitlab, "metrics", "v1", "pointer").action == "created"
    overridden = GitLab(forge.gitlab_api, "bank/credit-model", 7, "glpat-project-bot", "GITLAB_TOKEN", None,
                        bot_login="alice")
    assert overridden.whoami() == Identity(login="alice")


def test_stand_in_answers_get_user_for_an_installation_token_exactly_as_github(forge: ForgeServer) -> None:
    import requests

    bot = forge.add_installation_token("ghs_actions_token")
    assert (bot.id, bot.username, bot.type) == (41898282, "github-actions[bot]", "Bot")
    with requests.Session() as http:
        http.trust_env = False
        answer = http.get(f"{forge.github_api}/user", headers={"Authorization": "Bearer ghs_actions_token"})
    assert answer.status_code == 403 and answer.json() == GITHUB_INTEGRATION_403
    assert answer.json()["documentation_url"] == "https://docs.github.com/rest/users/users#get-the-authenticated-user"
