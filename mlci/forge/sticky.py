"""One comment per MR/PR per report id, updated in place: found by a hidden marker at the start of a
comment written by the report's own identity (system notes, quoted copies by reviewers and other bots'
comments never match)."""
from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from mlci.core.errors import EnvironmentProblem
from mlci.core.log import logger
from mlci.forge.base import Comment, Forge, Identity

CREATE_ATTEMPTS = 3
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")  # a CommonMark code fence opening (or closing) line


@dataclass(frozen=True)
class Posted:
    """What happened to the comment."""

    action: str  # created | updated | unchanged
    comment_id: int


def marker(report_id: str) -> str:
    """The hidden HTML comment that identifies a report."""
    return f"<!-- mlci-report:{report_id} -->"


def fit(body: str, limit: int, pointer: str) -> str:
    """The body cut to the forge's limit, ending with a pointer to the full report. The cut is at the end of a
    line outside any code fence: a table keeps whole rows and a Mermaid chart is kept whole or left out, so the
    pointer is never swallowed by an unclosed fence. The marker (the first line) always stays."""
    if len(body) <= limit:
        return body
    tail = f"\n\n… truncated: {pointer}\n"
    room = limit - len(tail)
    cut = end = 0
    fence: str | None = None
    for line in body.split("\n"):
        end += len(line) + 1
        if end > room:
            break
        opening = _FENCE.match(line)
        if fence is None and opening:
            fence = opening[1]
        elif fence is not None and re.fullmatch(rf" {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*", line):
            fence = None
        if fence is None:
            cut = end
    return body[:cut].rstrip("\n") + tail


def find(forge: Forge, me: Identity, mark: str) -> Comment | None:
    """The oldest comment by `me` that starts with the marker (all pages searched)."""
    for comment in forge.comments():
        if me.wrote(comment.author) and not comment.system and comment.body.startswith(mark):
            return comment
    return None


def upsert(forge: Forge, report_id: str, body: str, pointer: str,
           sleep: Callable[[float], None] = time.sleep) -> Posted:
    """Create the report comment, or update it in place. A POST is repeated only after a fresh look shows
    the previous one did not land: at once after a rate limit's wait (the forge did not process it), or
    after a short pause when its outcome is unknown."""
    mark = marker(report_id)
    text = fit(f"{mark}\n{body}", forge.body_limit, pointer)
    me = forge.whoami()
    for attempt in range(CREATE_ATTEMPTS):
        existing = find(forge, me, mark)
        if existing is not None:
            if existing.body == text:
                return Posted("unchanged" if attempt == 0 else "created", existing.id)
            if forge.update(existing.id, text):
                return Posted("updated" if attempt == 0 else "created", existing.id)
            logger.info("mlci: %s: comment %d was deleted after it was listed; posting the report anew", forge.name,
                        existing.id)
            continue
        made = forge.create(text)
        if isinstance(made, Comment):
            _check_author(forge, me, made)
            return Posted("created", made.id)
        why = "its outcome is unknown" if made.wait is None else "rate limited"
        if attempt + 1 == CREATE_ATTEMPTS:
            raise EnvironmentProblem(f"{forge.name}: could not post the report after {CREATE_ATTEMPTS} attempts "
                                     f"(the last: {why})")
        wait = 2.0 * (attempt + 1) if made.wait is None else made.wait
        logger.info("mlci: %s: posting the report: %s; looking again in %.1f s", forge.name, why, wait)
        sleep(wait)
    raise EnvironmentProblem(f"{forge.name}: could not post the report after {CREATE_ATTEMPTS} attempts (the comment "
                             "it found was deleted each time before it could be updated)")


def _check_author(forge: Forge, me: Identity, made: Comment) -> None:
    """Warn when the new comment is not by the identity the next run looks for (it would add another)."""
    if made.author is not None and not me.wrote(made.author):
        logger.warning("mlci: warning: %s: the report was posted as %s, but mlci looks for comments by %s: set "
                       "forge.bot_login: %s (MLCI_FORGE_BOT_LOGIN) so the next run updates it instead of adding "
                       "another", forge.name, made.author.login, me, made.author.login)
