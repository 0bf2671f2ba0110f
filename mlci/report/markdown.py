"""Text from files the MR controls (metric and param names and values, plot titles, class labels, branch
names, DVC's messages) made inert in the report's Markdown: it can neither break a table, nor open an HTML
comment that hides the rest of the report, nor add links, images (a tracking pixel on every reviewer's
screen) or raw HTML."""
from __future__ import annotations

import re

# Inline Markdown/HTML a value could start: code, emphasis, links and images, HTML and entities, table cells,
# strikethrough, math. Backslash-escaping any ASCII punctuation is CommonMark's (and GFM's) rule.
_INLINE = re.compile(r"[\\`*_\[\]<&|~$]")
_SPAN = re.compile(r"`[^`]+`")  # a code span in mlci's own messages (`dvc.yaml`, `metrics:`) stays one
# Forge references the forges find in rendered text (not in code): @user/@all mentions, #issue, !MR, ~label,
# %milestone, &epic, $snippet. A WORD JOINER (U+2060, invisible) after the sigil breaks each: a hostile metric
# name cannot ping everyone in the MR or cross-link issues. Backslash escapes do not: the text stays "@all".
_REFERENCE = re.compile(r"([@#!~%&$])(?=\w)")
WORD_JOINER = "\u2060"


def flat(value: str) -> str:
    """One line: control characters (newlines, tabs, NUL, ...) become spaces."""
    return "".join(ch if ch.isprintable() else " " for ch in value)


def code(value: object) -> str:
    """`value` as an inline code span that is safe in a table cell: nothing in it is Markdown or HTML. The
    fence is longer than any run of backticks in the text; `|` is escaped (GFM tables split cells first)."""
    text = flat(str(value))
    if not text:
        return '`""`'
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.strip() and (text[0] in "` " or text[-1] in "` ") else ""  # CommonMark strips one each
    return f"{fence}{pad}{text.replace('|', chr(92) + '|')}{pad}{fence}"


def text(value: object, spans: bool = False) -> str:
    """`value` as plain inline text, shown as it is: every character that could start Markdown or HTML is
    backslash-escaped. `spans`: balanced `code spans` stay code (mlci's own messages name files that way;
    only their `|` is escaped)."""
    line = flat(str(value))
    if not spans:
        return _inert(line)
    out, last = [], 0
    for span in _SPAN.finditer(line):
        out.append(_inert(line[last:span.start()]))
        out.append(span[0].replace("|", "\\|"))
        last = span.end()
    out.append(_inert(line[last:]))
    return "".join(out)


def _inert(line: str) -> str:
    """Plain text with every Markdown/HTML start escaped and every forge reference broken."""
    return _INLINE.sub(r"\\\g<0>", _REFERENCE.sub(r"\g<1>" + WORD_JOINER, line))
