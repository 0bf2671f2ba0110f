"""What mlci needs from a forge: who writes the report, the comments of one MR/PR, create and update,
and uploads for images in a comment."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Author:
    """Who wrote a comment: the user id, login (GitLab username) and whether the account is a bot."""

    id: int
    login: str
    bot: bool = False


@dataclass(frozen=True)
class Identity:
    """Whose comments are the report's: an id and/or a login (every part given must match)."""

    id: int | None = None
    login: str | None = None
    bot: bool = False  # only a bot account matches (GitHub's `type: Bot`)

    def wrote(self, author: Author | None) -> bool:
        """Whether `author` is this identity (logins compare case-insensitively, as both forges do)."""
        if author is None or (self.id is None and self.login is None):
            return False
        return ((self.id is None or author.id == self.id)
                and (self.login is None or author.login.lower() == self.login.lower())
                and (not self.bot or author.bot))

    def __str__(self) -> str:
        """`login (id N)`, as much as is known."""
        parts = [self.login or ""] + ([f"(id {self.id})"] if self.id is not None else [])
        return " ".join(p for p in parts if p) or "nobody"


@dataclass(frozen=True)
class Comment:
    """A note (GitLab) or issue comment (GitHub); `author` is None for a deleted account."""

    id: int
    body: str
    author: Author | None
    system: bool = False


@dataclass(frozen=True)
class Later:
    """A POST that did not create the comment: `wait` seconds when the forge refused it unprocessed (rate
    limit), None when the outcome is unknown (5xx, no answer) and a fresh look must tell."""

    wait: float | None


class Forge(Protocol):
    """A merge request or pull request on one forge, as the report needs it."""

    name: str
    body_limit: int  # the forge's maximum comment length, in characters

    def whoami(self) -> Identity:
        """Whose comments the report updates: the token's user, or `forge.bot_login`."""

    def comments(self) -> Iterator[Comment]:
        """Every comment, across all pages."""

    def create(self, body: str) -> Comment | Later:
        """Post a comment once (never retried here)."""

    def update(self, comment_id: int, body: str) -> bool:
        """Replace a comment's body (idempotent, retried); False when it is gone (deleted since it was listed)."""

    def upload(self, filename: str, data: bytes) -> str | None:
        """Store a file for use in a comment: the URL to put in Markdown, or None when the forge has no
        upload API (GitHub)."""
