"""The normalised JSON summary: every finding with its outcome and exception, counts, exceptions, the DB at
full precision, keys in a fixed order; valid against its own JSON Schema (shipped in the package)."""
from __future__ import annotations

import dataclasses
import datetime
import json

from mlci.scan.reports import summary
from mlci.scan.verdict import DbAge
from tests.scan import reports_support as rs


def test_the_summary_has_every_finding_its_outcome_and_exception_at_full_precision() -> None:
    age = DbAge(updated_at=rs.NOW - datetime.timedelta(days=1.5), age_days=1.2345678901234567, limit_days=7,
                status="ok")
    moment = rs.NOW.replace(microsecond=250001)
    doc = summary.summary(rs.verdict(db_age=age, scanned_at=moment))
    assert rs.problems(rs.SUMMARY, doc) == []
    assert list(doc) == ["schema", "target", "digest", "os", "verdict", "reasons", "warnings", "counts", "findings",
                         "exceptions", "db", "trivy_version", "scanners", "unscanned", "policy_hash", "scanned_at"]
    assert doc["verdict"] == "fail" and doc["digest"] == rs.DIGEST and doc["reasons"] == list(rs.verdict().reasons)
    assert doc["counts"]["failing"] == {"CRITICAL": 3, "HIGH": 3, "MEDIUM": 0, "LOW": 0, "UNKNOWN": 0}
    assert doc["counts"]["open"] == {"CRITICAL": 3, "HIGH": 4, "MEDIUM": 1, "LOW": 0, "UNKNOWN": 0}
    assert sum(doc["counts"]["all"].values()) == len(rs.OUTCOMES) == sum(doc["counts"]["by_outcome"].values())
    outcomes = [f["outcome"] for f in doc["findings"]]
    assert outcomes == ["fails"] * 6 + ["unfixed", "below", "suppressed", "informational"]  # worst first
    assert [f["severity"] for f in doc["findings"][:6]] == ["CRITICAL"] * 3 + ["HIGH"] * 3
    lapsed = next(f for f in doc["findings"] if f["id"] == "CVE-2026-5000")
    assert lapsed["exception"] == {"id": "CVE-2026-5000", "source": "mlci.yaml:18", "expires": "2026-11-20",
                                   "expired": True} and lapsed["outcome"] == "fails"
    assert [(e["id"], e["days_left"], e["expired"]) for e in doc["exceptions"]] == [
        ("CVE-2026-4000", 30, False), ("CVE-2026-5000", -11, True), ("CVE-2020-0001", None, False)]
    assert doc["db"]["age_days"] == 1.2345678901234567 and doc["db"]["updated_at"] == "2026-11-30T00:00:00Z"
    assert doc["scanned_at"] == "2026-12-01T12:00:00.250001Z"
    assert doc["unscanned"] == [{"path": "models/blob.bin", "reason": "truncated pickle: stops at byte 4096"}]
    secret = next(f for f in doc["findings"] if f["kind"] == "secret")
    assert secret["detail"] == rs.SECRET.detail and secret["line"] == 2
    assert json.loads(json.dumps(doc)) == doc  # plain JSON, nothing lost on the way to the file


def test_the_summary_schema_refuses_what_readers_cannot_rely_on() -> None:
    doc = summary.summary(rs.verdict())
    wrong_line = {**doc, "findings": [{**doc["findings"][0], "line": "2"}]}
    for broken in ({**doc, "verdict": "maybe"}, {**doc, "extra": 1}, {k: v for k, v in doc.items() if k != "db"},
                   {**doc, "scanned_at": "2026-12-01 12:00"}, wrong_line):
        assert rs.problems(rs.SUMMARY, broken)
    clean = summary.summary(rs.verdict([], reasons=(), warnings=(), db_age=None, exceptions=()))
    assert rs.problems(rs.SUMMARY, clean) == [] and clean["verdict"] == "pass"
    no_db = rs.verdict(output=dataclasses.replace(rs.verdict().output, db=None, trivy_version=None), db_age=None)
    assert rs.problems(rs.SUMMARY, summary.summary(no_db)) == [] and summary.summary(no_db)["db"] is None
