"""GitLab merge request notes (REST v4), self-managed or gitlab.com."""
from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote, urlencode

from mlci.forge.base import Author, Comment, Identity, Later
from mlci.forge.http import Api, Fields, ForgeError, Reply

HINTS = {
    401: "the token in {token_env} is missing, expired or revoked",
    403: "the token needs the `api` scope and at least Reporter access; CI_JOB_TOKEN cannot post merge "
         "request notes: store a project or personal access token in {token_env}",
    404: "check the API URL (self-managed: CI_API_V4_URL or forge.api_url), the project and the merge request",
}
API_HINT = "is forge.api_url (or CI_API_V4_URL) GitLab's API root, https://HOST/api/v4?"


class GitLab:
    """Notes of one merge request."""

    name = "GitLab"
    body_limit = 1_000_000

    def __init__(self, api_url: str, project: str, mr_iid: int, token: str, token_env: str,
                 ca_bundle: str | None, bot_login: str | None = None) -> None:
        self.project = f"/projects/{quote(project, safe='')}"
        self.notes = f"{self.project}/merge_requests/{mr_iid}/notes"
        self.bot_login = bot_login
        hints = {status: text.format(token_env=token_env) for status, text in HINTS.items()}
        self.api = Api(self.name, api_url, {"PRIVATE-TOKEN": token}, ca_bundle, hints, API_HINT)

    def whoami(self) -> Identity:
        """`forge.bot_login`, else the token's user (GET /user; project and group access tokens are bot
        users that may call it too)."""
        if self.bot_login:
            return Identity(login=self.bot_login)
        user = self.api.call("GET", "/user").fields()
        return Identity(id=user.number("id"), login=user.text("username"))

    def comments(self) -> Iterator[Comment]:
        """All notes, oldest first, following X-Next-Page (or the Link header when a proxy dropped X-Next-Page)."""
        for reply in self.api.pages(self._page("1"), self._following):
            for note in reply.items():
                yield _note(note)

    def _page(self, page: str) -> str:
        return f"{self.notes}?{urlencode({'per_page': 100, 'page': page, 'sort': 'asc', 'order_by': 'created_at'})}"

    def _following(self, reply: Reply) -> str | None:
        """The next page: X-Next-Page (empty on the last page), else rel="next" of the Link header."""
        page = reply.headers.get("X-Next-Page")
        if page is None:
            return reply.next_link()
        return self._page(page.strip()) if page.strip() else None

    def create(self, body: str) -> Comment | Later:
        """POST a note once."""
        made = self.api.post_once(self.notes, body)
        return made if isinstance(made, Later) else _note(made.fields())

    def update(self, comment_id: int, body: str) -> bool:
        """PUT a note's body; False for a note that is gone (404)."""
        return self.api.update("PUT", f"{self.notes}/{comment_id}", body)

    def upload(self, filename: str, data: bytes) -> str:
        """POST /projects/:id/uploads (multipart `file`): the project-relative URL (`/uploads/<secret>/<name>`)
        that GitLab renders in the project's notes. Retried like an idempotent call: a repeated upload
        only stores an unused copy, never a visible duplicate."""
        path = f"{self.project}/uploads"
        url = self.api.call("POST", path, files={"file": (filename, data)}).fields().text("url")
        if not url.startswith(("/", "https://", "http://")):
            raise ForgeError(self.name, "POST", path, None, f"the answer's `url` is not a URL: {url[:80]!r}",
                             API_HINT)
        return url


def _note(note: Fields) -> Comment:
    author = note.optional_child("author")
    return Comment(note.number("id"), note.text("body", default=""),
                   None if author is None else Author(author.number("id"), author.text("username"),
                                                      author.flag("bot")),
                   note.flag("system"))
