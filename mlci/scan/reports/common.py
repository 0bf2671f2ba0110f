"""What every report shares: scan text made safe to carry, the order findings are shown in, stable ids, times."""
from __future__ import annotations

import datetime
import hashlib
import json
import uuid
from collections.abc import Iterable, Iterator

from mlci.core import log
from mlci.scan.findings import SEVERITIES, Finding
from mlci.scan.verdict import Judged, Outcome

OUTCOMES: tuple[Outcome, ...] = ("fails", "unfixed", "below", "suppressed", "informational")  # shown in this order
# Findings with the same identity in one scan get ids from this namespace (uuid5 of the identity, numbered).
_NAMESPACE = uuid.UUID("6f1d4b52-3f0e-5c1a-9a57-1c2b8e0d7a31")


def clean(value: object) -> str:
    """Scan text as it may be carried: registered secrets masked, and what UTF-8 cannot encode (a lone
    surrogate from a `\\ud800` escape in trivy's JSON) replaced, so the document can always be written."""
    text = log.redact(str(value))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def optional(value: str | None) -> str | None:
    """`clean` for a value that may be absent."""
    return None if value is None else clean(value)


def cut(text: str, limit: int) -> str:
    """At most `limit` characters, an ellipsis marking the cut (call it on clean text: a secret is masked
    whole before any cut could leave a part of it)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def rank(item: Judged) -> tuple[int, int, str, str, str, str]:
    """Worst first: what fails the gate, then the other open findings, suppressed, informational; within
    each, by severity, then id, package and place (a total order: a re-run lists them the same way)."""
    f = item.finding
    return (OUTCOMES.index(item.outcome), -SEVERITIES.index(f.severity), f.id, f.package or "", f.path or "",
            f.target)


def worst_first(judged: Iterable[Judged]) -> list[Judged]:
    return sorted(judged, key=rank)


def identity(finding: Finding) -> str:
    """What makes a finding the same finding in another run of the same scan (never its severity or text)."""
    return json.dumps([finding.kind, finding.id, finding.package, finding.version, finding.path, finding.target,
                       finding.line, finding.purl], ensure_ascii=True)


def stable_ids(findings: Iterable[Finding]) -> Iterator[str]:
    """A UUID per finding from its identity: the same in a re-run, distinct within one scan (a repeated
    identity is numbered in order)."""
    seen: dict[str, int] = {}
    for finding in findings:
        key = log.redact(identity(finding))
        seen[key] = seen.get(key, -1) + 1
        yield str(uuid.uuid5(_NAMESPACE, key if not seen[key] else f"{key}#{seen[key]}"))


def fingerprint(finding: Finding) -> str:
    """sha256 of the finding's identity (SARIF's partialFingerprints)."""
    return hashlib.sha256(log.redact(identity(finding)).encode()).hexdigest()


def utc(moment: datetime.datetime) -> datetime.datetime:
    """An aware time in UTC (a naive one is taken to be UTC already; one beyond year 1..9999 in UTC, such as a
    DB's `UpdatedAt` of 0001-01-01T00:00:00+05:00, is held at the limit)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=datetime.UTC)
    try:
        return moment.astimezone(datetime.UTC)
    except OverflowError:
        limit = datetime.datetime.min if moment.year == 1 else datetime.datetime.max
        return limit.replace(tzinfo=datetime.UTC)


def iso(moment: datetime.datetime | None) -> str | None:
    """RFC 3339 in UTC at full precision (`2026-12-01T12:00:00.250000Z`)."""
    return None if moment is None else utc(moment).isoformat().replace("+00:00", "Z")
