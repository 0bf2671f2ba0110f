"""GitLab merge request notes (REST v4), self-managed or gitlab.com."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import requests

from mlci.forge.base import Comment
from mlci.forge.http import ForgeError, make_session, send, server_message

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
        self.api = api_url.rstrip("/")
        self.notes = f"/projects/{quote(project, safe='')}/merge_requests/{mr_iid}/notes"
        self.token_env = token_env
        self.session = make_session({"PRIVATE-TOKEN": token}, ca_bundle)

    def _call(self, method: str, path: str, *, idempotent: bool = True, **kwargs: Any) -> requests.Response:
        try:
            response = send(self.session, method, self.api + path, idempotent=idempotent, **kwargs)
        except requests.RequestException as exc:
            raise ForgeError(self.name, method, path, None, exc.__class__.__name__) from None
        if response.status_code >= 400 and not (not idempotent and response.status_code >= 500):
            hint = HINTS.get(response.status_code, "").format(token_env=self.token_env)
            raise ForgeError(self.name, method, path, response.status_code, server_message(response), hint)
        return response

    def whoami(self) -> int:
        """The token's user id (GET /user)."""
        return int(self._call("GET", "/user").json()["id"])

    def comments(self) -> Iterator[Comment]:
        """All notes, oldest first, following X-Next-Page."""
        page = "1"
        while page:
            response = self._call("GET", self.notes, params={
                "per_page": 100, "page": page, "sort": "asc", "order_by": "created_at"})
            for note in response.json():
                yield Comment(int(note["id"]), str(note.get("body") or ""), int(note["author"]["id"]),
                              bool(note.get("system")))
            page = response.headers.get("X-Next-Page", "")

    def create(self, body: str) -> Comment | None:
        """POST a note once; None if the server failed (5xx) or the connection dropped."""
        try:
            response = self._call("POST", self.notes, idempotent=False, json={"body": body})
        except ForgeError as exc:
            if exc.status is None:
                return None
            raise
        if response.status_code >= 500:
            return None
        note = response.json()
        return Comment(int(note["id"]), str(note["body"]), int(note["author"]["id"]))

    def update(self, comment_id: int, body: str) -> None:
        """PUT a note's body."""
        self._call("PUT", f"{self.notes}/{comment_id}", json={"body": body})
