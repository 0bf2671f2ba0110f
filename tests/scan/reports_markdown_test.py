"""The MR section: verdict, counts by severity, worst findings (capped), model files, files not scanned,
exceptions with days left and expired ones, the DB's date and age."""
from __future__ import annotations

import dataclasses

from mlci.scan.reports.markdown import markdown
from tests.scan import reports_support as rs


def test_markdown_section_has_verdict_counts_findings_models_files_exceptions_and_db() -> None:
    text = markdown(rs.verdict(), limit=3)
    page = rs.assert_inert(text)
    assert text.startswith("### Security scan: ❌ failed\n")
    rows = page.rows
    assert rows[0] == ["findings", "CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"]
    assert rows[1] == ["fail the gate", "3", "3", "0", "0", "0"]
    assert rows[2] == ["reported, not failing", "0", "1", "1", "0", "0"]
    assert rows[3][:3] == ["suppressed", "0", "1"] and rows[4] == ["information", "0", "0", "0", "1", "0"]
    top = rows[6:9]  # worst first, capped at 3 of the 7 open findings that are not model files
    assert [r[1:3] for r in top] == [["CRITICAL", "CVE-2026-1000"], ["CRITICAL", "aws-access-key-id"],
                                     ["HIGH", "CVE-2026-5000"]]
    assert top[1][6:] == ["app/config.py:2", "AWS Access Key ID aws_access_key_id = ********************"]
    assert "Top findings (3 of 7, worst first)" in text and "… and 4 more" in text
    assert "Model files (2 findings)" in text and "MLCI-MODEL-UNSAFE" in page.codes and "models/model" in page.codes
    assert "Files not scanned (1)" in text and "models/blob.bin" in page.codes
    active = next(r for r in rows if r[0] == "CVE-2026-4000")
    assert active[1:5] == ["libbar2", "1", "2026-12-31", "30"]
    assert next(r for r in rows if r[0] == "CVE-2020-0001")[3:5] == ["never", ""]
    assert "Expired exceptions (1): no longer suppressing" in text
    assert next(r for r in rows if r[0] == "CVE-2026-5000" and len(r) == 6)[3] == "2026-11-20"
    assert "Vulnerability DB: version 2, updated 2026-11-30 00:00 UTC, 1.5 days old, limit 7 days ✅." in text
    passed = markdown(rs.verdict([(rs.BELOW, "below", None)], reasons=(), warnings=(), exceptions=()))
    assert passed.startswith("### Security scan: ✅ passed\n") and "Expired" not in passed
    no_db = markdown(rs.verdict(output=dataclasses.replace(rs.verdict().output, db=None), db_age=None))
    assert "Vulnerability DB: none (no vulnerability scan)." in no_db
