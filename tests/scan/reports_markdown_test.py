"""The MR section: verdict, counts by severity, worst findings (capped), model files, files not scanned,
exceptions with days left and expired ones, the DB's date and age."""
from __future__ import annotations

import dataclasses
import json

from mlci.core import log
from mlci.scan.reports import gitlab, sarif, summary
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


HOSTILE_TITLES = ["<img src=x onerror=alert(1)>", "<!-- the rest is hidden", "[click](https://evil.example/x)",
                  "![px](https://t.example/p.png)", "@all please look", "closes #1 and !2", "a|b|c", "``two`` ticks",
                  "line\nbreak **bold** _em_", "</td></tr></table><script>x()</script>", "&lt;b&gt; $x$ ~~s~~",
                  "https://bare.example/autolink", ":+1: \\| \\"]


def test_hostile_titles_ids_packages_and_paths_stay_text_in_their_cells() -> None:
    findings = [(dataclasses.replace(rs.OS_VULN, id=f"CVE-{title}", title=title, package=title, path=title,
                                     version="1|2"), "fails", None) for title in HOSTILE_TITLES]
    findings.append((dataclasses.replace(rs.MODEL, path="<b>m</b>.pkl", title="@here", detail="[x](y)"), "fails",
                     None))
    hostile = rs.verdict(findings, reasons=("1 finding: CVE-<!-- (HIGH, @all)",), warnings=("[w](https://w.example)",),
                         exceptions=(dataclasses.replace(rs.ACTIVE, reason="<script>", id="#3", source="@you"),))
    page = rs.assert_inert(markdown(hostile, limit=len(HOSTILE_TITLES)))
    top = [row for row in page.rows if len(row) == 8][1:]  # the findings table, without its header
    assert len(top) == len(HOSTILE_TITLES)  # no title added or swallowed a row or a cell
    for row, title in zip(top, sorted(HOSTILE_TITLES, key=lambda t: f"CVE-{t}"), strict=True):
        assert row[2:5] == [f"CVE-{title}".replace("\n", " "), title.replace("\n", " "), "1|2"]
    assert all(mark not in "".join(page.plain) for mark in ("@", "#1", "<", "[", "!2")), page.plain
    assert "@here" in page.codes and "<script>" in page.codes and "1 finding: CVE-<!-- (HIGH, @all)" in page.codes


def test_a_registered_secret_never_reaches_any_report() -> None:
    secret = "s3cr3t_Tok|en*x`y"  # characters each format escapes differently: the value is masked before
    log.add_secret(secret)
    leaky = dataclasses.replace(rs.SECRET, detail=f"token = {secret}", title=f"found {secret}",
                                path=f"app/{secret}.py")
    package = dataclasses.replace(rs.OS_VULN, package=f"pkg-{secret}", references=(f"https://x.example/{secret}",))
    excepted = dataclasses.replace(rs.ACTIVE, reason=secret)
    verdict = rs.verdict([(leaky, "fails", None), (package, "fails", None)], reasons=(f"2 findings: {secret}",),
                         exceptions=(excepted,))
    text = markdown(verdict)
    docs = [summary.summary(verdict), sarif.sarif(verdict),
            gitlab.container_scanning(verdict, started=rs.NOW, finished=rs.NOW, image=f"img-{secret}")]
    for shown in (text, *(json.dumps(doc) for doc in docs)):
        assert "s3cr3t" not in shown and log.MASK in shown
    assert rs.problems(rs.SUMMARY, docs[0]) == rs.problems(rs.SARIF, docs[1]) == rs.problems(rs.GITLAB, docs[2]) == []
    page = rs.assert_inert(text)
    assert "token = [MASKED]" in " ".join(page.codes)
