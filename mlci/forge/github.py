"""GitHub pull request comments (REST), github.com or GitHub Enterprise Server."""
from __future__ import annotations

from collections.abc import Iterator

from mlci.core.log import logger
from mlci.forge.base import Author, Comment, Identity, Later
from mlci.forge.http import Api, Fields, ForgeError, Reply

HINTS = {
    401: "the token in {token_env} is missing, expired or revoked",
    403: "the token needs `pull-requests: write` (or `issues: write`) permission; a pull request from a fork "
         "gets a read-only GITHUB_TOKEN",
    404: "check the API URL (GitHub Enterprise: GITHUB_API_URL or forge.api_url), the repository and the PR",
}
API_HINT = ("is forge.api_url (or GITHUB_API_URL) GitHub's API root, https://api.github.com or "
            "https://HOST/api/v3?")
GITHUB_COM_API = "https://api.github.com"
# Installation tokens (Actions' GITHUB_TOKEN, GitHub App tokens) cannot call GET /user; GitHub answers 403.
INSTALLATION_MESSAGE = "resource not accessible by integration"
# Who GITHUB_TOKEN's comments are by: the GitHub Actions app's bot user (this id on github.com only).
ACTIONS_BOT_LOGIN = "github-actions[bot]"
ACTIONS_BOT_ID = 41898282


class GitHub:
    """Issue comments of one pull request."""

    name = "GitHub"
    body_limit = 65_536

    def __init__(self, api_url: str, repository: str, number: int, token: str, token_env: str,
                 ca_bundle: str | None, bot_login: str | None = None) -> None:
        self.issue = f"/repos/{repository}/issues/{number}"
        self.repo = f"/repos/{repository}"
        self.bot_login = bot_login
        hints = {status: text.format(token_env=token_env) for status, text in HINTS.items()}
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                   "X-GitHub-Api-Version": "2022-11-28"}
        self.api = Api(self.name, api_url, headers, ca_bundle, hints, API_HINT)

    def whoami(self) -> Identity:
        """`forge.bot_login`; else the token's user (GET /user, personal access tokens); else, for an
        installation token, GitHub Actions' bot (a GitHub App token needs `forge.bot_login: <slug>[bot]`)."""
        if self.bot_login:
            return Identity(login=self.bot_login)
        try:
            user = self.api.call("GET", "/user").fields()
        except ForgeError as exc:
            if exc.status != 403 or INSTALLATION_MESSAGE not in exc.message.lower():
                raise
            logger.info("mlci: GitHub: an installation token (GET /user: 403): the report is the comment by %s; "
                        "a GitHub App's token needs forge.bot_login: <app-slug>[bot]", ACTIONS_BOT_LOGIN)
            on_github_com = self.api.base == GITHUB_COM_API
            return Identity(id=ACTIONS_BOT_ID if on_github_com else None, login=ACTIONS_BOT_LOGIN, bot=True)
        return Identity(id=user.number("id"), login=user.text("login"))

    def comments(self) -> Iterator[Comment]:
        """All comments, oldest first, following the Link header."""
        for reply in self.api.pages(f"{self.issue}/comments?per_page=100", Reply.next_link):
            for item in reply.items():
                yield _comment(item)

    def create(self, body: str) -> Comment | Later:
        """POST a comment once."""
        made = self.api.post_once(f"{self.issue}/comments", body)
        return made if isinstance(made, Later) else _comment(made.fields())

    def update(self, comment_id: int, body: str) -> bool:
        """PATCH a comment's body; False for a comment that is gone (404)."""
        return self.api.update("PATCH", f"{self.repo}/issues/comments/{comment_id}", body)

    def upload(self, filename: str, data: bytes) -> None:
        """GitHub has no API to attach a file to a comment: image plots are linked to the run's artifacts."""
        return None


def _comment(item: Fields) -> Comment:
    user = item.optional_child("user")  # null for a deleted account
    author = None if user is None else Author(user.number("id"), user.text("login"),
                                              user.text("type", default="User") == "Bot")
    return Comment(item.number("id"), item.text("body", default=""), author)
