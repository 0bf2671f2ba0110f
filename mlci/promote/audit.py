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


def check_audit(path: Path) -> None:
    """Before any write: the audit log can be appended to (not a directory, not a symlink, which append never
    follows, nor below a file). A promotion that took effect must not fail on its audit line."""
    import errno
    import os

    if os.path.islink(path) and not fsutil.is_special(path):
        raise fsutil.write_error(path, OSError(errno.ELOOP, "a symlink"), "promote.audit_log")
    fsutil.check_writable(path, "promote.audit_log")


def append_audit(path: Path, record: PromotionRecord) -> None:
    """Append the record's line to `path` (created per the umask; a symlink is never followed)."""
    fsutil.append_text(path, audit_line(record))
