"""The normalised JSON summary of a verdict (`mlci scan --json-out`, `--json`): everything the gate saw and
decided, at full precision, keys in a fixed order; its JSON Schema is summary.schema.json beside this file."""
from __future__ import annotations

import dataclasses
from importlib import resources
from typing import Any

from mlci.scan.findings import SEVERITIES
from mlci.scan.reports.common import OUTCOMES, clean, iso, optional, worst_first
from mlci.scan.verdict import ExceptionState, Judged, Outcome, Verdict

SCHEMA = "mlci-scan-summary/1"  # the document's "schema"; a change that breaks readers bumps it
SCHEMA_FILE = "summary.schema.json"


def schema_text() -> str:
    """The summary's JSON Schema (draft 2020-12), as shipped in the package."""
    return resources.files("mlci.scan.reports").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")


def summary(verdict: Verdict) -> dict[str, Any]:
    """The verdict as plain JSON data: findings worst first, each with its outcome and the exception that
    matched it; counts for every severity (failing: fails the gate; open: reported and neither suppressed nor
    informational; all: every finding)."""
    out = verdict.output
    db = None
    if out.db is not None:
        age = verdict.db_age
        db = {"version": out.db.version, "updated_at": iso(out.db.updated_at), "next_update": iso(out.db.next_update),
              "downloaded_at": iso(out.db.downloaded_at), "age_days": None if age is None else age.age_days,
              "limit_days": None if age is None else age.limit_days, "status": None if age is None else age.status}
    return {
        "schema": SCHEMA,
        "target": clean(out.target),
        "digest": optional(out.digest),
        "os": optional(out.os),
        "verdict": "pass" if verdict.passed else "fail",
        "reasons": [clean(r) for r in verdict.reasons],
        "warnings": [clean(w) for w in verdict.warnings],
        "counts": {
            "failing": _by_severity(verdict.judged, ("fails",)),
            "open": _by_severity(verdict.judged, ("fails", "unfixed", "below")),
            "all": _by_severity(verdict.judged, OUTCOMES),
            "by_outcome": {o: sum(j.outcome == o for j in verdict.judged) for o in OUTCOMES},
        },
        "findings": [_finding(j) for j in worst_first(verdict.judged)],
        "exceptions": [_exception(e) for e in verdict.exceptions],
        "db": db,
        "trivy_version": optional(out.trivy_version),
        "scanners": [clean(s) for s in out.scanners],
        "unscanned": [{"path": clean(u.path), "reason": clean(u.reason)} for u in out.unscanned],
        "policy_hash": clean(verdict.policy_hash),
        "scanned_at": iso(verdict.scanned_at),
    }


def _by_severity(judged: tuple[Judged, ...], outcomes: tuple[Outcome, ...]) -> dict[str, int]:
    return {s: sum(j.outcome in outcomes and j.finding.severity == s for j in judged) for s in reversed(SEVERITIES)}


def _finding(item: Judged) -> dict[str, Any]:
    f = item.finding
    data: dict[str, Any] = {}
    for name, value in ((fl.name, getattr(f, fl.name)) for fl in dataclasses.fields(f)):
        if isinstance(value, str):
            value = clean(value)
        elif isinstance(value, tuple):
            value = [clean(v) for v in value]
        data[name] = value
    data["outcome"] = item.outcome
    data["exception"] = None if item.exception is None else {
        "id": clean(item.exception.id), "source": clean(item.exception.source),
        "expires": None if item.exception.expires is None else item.exception.expires.isoformat(),
        "expired": item.exception.expired}
    return data


def _exception(state: ExceptionState) -> dict[str, Any]:
    return {"id": clean(state.id), "source": clean(state.source), "reason": clean(state.reason),
            "package": optional(state.package), "path": optional(state.path),
            "expires": None if state.expires is None else state.expires.isoformat(), "days_left": state.days_left,
            "expired": state.expired, "matched": state.matched}
