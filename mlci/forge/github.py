"""GitHub pull request comments (REST), github.com or GitHub Enterprise Server."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import requests

from mlci.forge.base import Comment
from mlci.forge.http import ForgeError, make_session, send, server_message

HINTS = {
    401: "the token in {token_env} is missing, expired or revoked",
    403: "the token needs `pull-requests: write` (or `issues: write`) permission",
    404: "check the API URL (GitHub Enterprise: GITHUB_API_URL or forge.api_url), the repository and the PR",
}


class GitHub:
    """Issue comments of one pull request."""

    name = "GitHub"
    body_limit = 65_536

    def __init__(self, api_url: str, repository: str, number: int, token: str, token_env: str,
                 ca_bundle: str | None) -> None:
        self.api = api_url.rstrip("/")
        self.repo = f"/repos/{repository}"
        self.number = number
        self.token_env = token_env
        self.session = make_session({"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                                     "X-GitHub-Api-Version": "2022-11-28"}, ca_bundle)

    def _call(self, method: str, url: str, *, idempotent: bool = True, **kwargs: Any) -> requests.Response:
        path = url.removeprefix(self.api)
        try:
            response = send(self.session, method, url, idempotent=idempotent, **kwargs)
        except requests.RequestException as exc:
            raise ForgeError(self.name, method, path, None, exc.__class__.__name__) from None
        if response.status_code >= 400 and not (not idempotent and response.status_code >= 500):
            hint = HINTS.get(response.status_code, "").format(token_env=self.token_env)
            raise ForgeError(self.name, method, path, response.status_code, server_message(response), hint)
        return response

    def whoami(self) -> int:
        """The token's user id (GET /user)."""
        return int(self._call("GET", f"{self.api}/user").json()["id"])

    def comments(self) -> Iterator[Comment]:
        """All comments, oldest first, following the Link header."""
        url: str | None = f"{self.api}{self.repo}/issues/{self.number}/comments?per_page=100"
        while url:
            response = self._call("GET", url)
            for item in response.json():
                yield Comment(int(item["id"]), str(item.get("body") or ""), int(item["user"]["id"]))
            url = response.links.get("next", {}).get("url")

    def create(self, body: str) -> Comment | None:
        """POST a comment once; None if the server failed (5xx) or the connection dropped."""
        try:
            response = self._call("POST", f"{self.api}{self.repo}/issues/{self.number}/comments",
                                  idempotent=False, json={"body": body})
        except ForgeError as exc:
            if exc.status is None:
                return None
            raise
        if response.status_code >= 500:
            return None
        item = response.json()
        return Comment(int(item["id"]), str(item["body"]), int(item["user"]["id"]))

    def update(self, comment_id: int, body: str) -> None:
        """PATCH a comment's body."""
        self._call("PATCH", f"{self.api}{self.repo}/issues/comments/{comment_id}", json={"body": body})
