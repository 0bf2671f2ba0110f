"""One comment per MR/PR per report id, updated in place: found by a hidden marker at the start of a
comment written by the token's own user (system notes and quoted copies by others never match)."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from mlci.core.errors import EnvironmentProblem
from mlci.forge.base import Comment, Forge

CREATE_ATTEMPTS = 3


@dataclass(frozen=True)
class Posted:
    """What happened to the comment."""

    action: str  # created | updated | unchanged
    comment_id: int


def marker(report_id: str) -> str:
    """The hidden HTML comment that identifies a report."""
    return f"<!-- mlci-report:{report_id} -->"


def fit(body: str, limit: int, pointer: str) -> str:
    """The body cut to the forge's limit, ending with a pointer to the full report."""
    if len(body) <= limit:
        return body
    tail = f"\n\n… truncated: {pointer}\n"
    return body[: limit - len(tail)] + tail


def find(forge: Forge, me: int, mark: str) -> Comment | None:
    """The oldest comment by `me` that starts with the marker (all pages searched)."""
    for comment in forge.comments():
        if comment.author_id == me and not comment.system and comment.body.startswith(mark):
            return comment
    return None


def upsert(forge: Forge, report_id: str, body: str, pointer: str,
           sleep: Callable[[float], None] = time.sleep) -> Posted:
    """Create the report comment, or update it in place; a POST is repeated only when a fresh look
    shows the previous one did not land."""
    mark = marker(report_id)
    text = fit(f"{mark}\n{body}", forge.body_limit, pointer)
    me = forge.whoami()
    for attempt in range(CREATE_ATTEMPTS):
        existing = find(forge, me, mark)
        if existing is not None:
            if existing.body == text:
                return Posted("unchanged" if attempt == 0 else "created", existing.id)
            forge.update(existing.id, text)
            return Posted("updated" if attempt == 0 else "created", existing.id)
        made = forge.create(text)
        if made is not None:
            return Posted("created", made.id)
        sleep(2.0 * (attempt + 1))  # unknown outcome: look again before another POST
    raise EnvironmentProblem(f"{forge.name}: could not post the report after {CREATE_ATTEMPTS} attempts")
