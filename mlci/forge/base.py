"""What mlci needs from a forge: who the token is, the comments of one MR/PR, create and update."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Comment:
    """A note (GitLab) or issue comment (GitHub)."""

    id: int
    body: str
    author_id: int
    system: bool = False


class Forge(Protocol):
    """A merge request or pull request on one forge, as the report needs it."""

    name: str
    body_limit: int  # the forge's maximum comment length, in characters

    def whoami(self) -> int:
        """The id of the user the token belongs to."""

    def comments(self) -> Iterator[Comment]:
        """Every comment, across all pages."""

    def create(self, body: str) -> Comment | None:
        """Post a comment once (no retry); None when the outcome is unknown (5xx, timeout)."""

    def update(self, comment_id: int, body: str) -> None:
        """Replace a comment's body (idempotent, retried)."""
