"""GitLab merge request notes (REST v4), self-managed or gitlab.com."""
from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

from mlci.forge.base import Comment
from mlci.forge.http import Api

HINTS = {
    401: "the token in {token_env} is missing, expired or revoked",
    403: "the token needs the `api` scope and at least Reporter access; CI_JOB_TOKEN cannot post merge "
         "request notes: store a project or personal access token in {token_env}",
    404: "check the API URL (self-managed: CI_API_V4_URL or forge.api_url), the project and the merge request",
}


class GitLab:
    """Notes of one merge request."""

    name = "GitLab"
    body_limit = 1_000_000

    def __init__(self, api_url: str, project: str, mr_iid: int, token: str, token_env: str,
                 ca_bundle: str | None) -> None:
        self.notes = f"/projects/{quote(project, safe='')}/merge_requests/{mr_iid}/notes"
        hints = {status: text.format(token_env=token_env) for status, text in HINTS.items()}
        self.api = Api(self.name, api_url, {"PRIVATE-TOKEN": token}, ca_bundle, hints)

    def whoami(self) -> int:
        """The token's user id (GET /user)."""
        return int(self.api.call("GET", "/user").json()["id"])

    def comments(self) -> Iterator[Comment]:
        """All notes, oldest first, following X-Next-Page."""
        page = "1"
        while page:
            response = self.api.call("GET", self.notes, params={
                "per_page": 100, "page": page, "sort": "asc", "order_by": "created_at"})
            for note in response.json():
                yield Comment(int(note["id"]), str(note.get("body") or ""), int(note["author"]["id"]),
                              bool(note.get("system")))
            page = response.headers.get("X-Next-Page", "")

    def create(self, body: str) -> Comment | None:
        """POST a note once; None if the outcome is unknown."""
        note = self.api.post_once(self.notes, body)
        return None if note is None else Comment(int(note["id"]), str(note["body"]), int(note["author"]["id"]))

    def update(self, comment_id: int, body: str) -> None:
        """PUT a note's body."""
        self.api.call("PUT", f"{self.notes}/{comment_id}", json={"body": body})
