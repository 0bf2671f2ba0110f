"""The promotion audit log: one JSON line per promotion (the record's facts, as in the GitOps file) appended to
promote.audit_log, a CI artifact. Each line is one append (O_APPEND), so concurrent writers never interleave
within a line; registered secrets and URL credentials are masked before it is written."""
from __future__ import annotations

from pathlib import Path

from mlci.core import fsutil, log
from mlci.promote.record import PromotionRecord


def audit_line(record: PromotionRecord) -> str:
    """The record as one line of JSON (keys sorted, secrets masked), newline-terminated."""
    return log.dumps_json(record.to_json(), indent=None, sort_keys=True) + "\n"


def append_audit(path: Path, record: PromotionRecord) -> None:
    """Append the record's line to `path` (created per the umask; a symlink is never followed)."""
    fsutil.append_text(path, audit_line(record))
