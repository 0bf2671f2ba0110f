"""GitHub pull request comments (REST), github.com or GitHub Enterprise Server."""
from __future__ import annotations

from collections.abc import Iterator

from mlci.forge.base import Comment
from mlci.forge.http import Api

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
        self.issue = f"/repos/{repository}/issues/{number}"
        self.repo = f"/repos/{repository}"
        hints = {status: text.format(token_env=token_env) for status, text in HINTS.items()}
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                   "X-GitHub-Api-Version": "2022-11-28"}
        self.api = Api(self.name, api_url, headers, ca_bundle, hints)

    def whoami(self) -> int:
        """The token's user id (GET /user)."""
        return int(self.api.call("GET", "/user").json()["id"])

    def comments(self) -> Iterator[Comment]:
        """All comments, oldest first, following the Link header."""
        url: str | None = f"{self.issue}/comments?per_page=100"
        while url:
            response = self.api.call("GET", url)
            for item in response.json():
                yield Comment(int(item["id"]), str(item.get("body") or ""), int(item["user"]["id"]))
            url = response.links.get("next", {}).get("url")

    def create(self, body: str) -> Comment | None:
        """POST a comment once; None if the outcome is unknown."""
        item = self.api.post_once(f"{self.issue}/comments", body)
        return None if item is None else Comment(int(item["id"]), str(item["body"]), int(item["user"]["id"]))

    def update(self, comment_id: int, body: str) -> None:
        """PATCH a comment's body."""
        self.api.call("PATCH", f"{self.repo}/issues/comments/{comment_id}", json={"body": body})
