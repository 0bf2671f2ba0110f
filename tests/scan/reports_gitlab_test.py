"""GitLab's container-scanning report, written by mlci (not gitlab.tpl): valid against GitLab's published 15.2.4
schema (tests/scan/schemas/), vulnerabilities only, suppressed ones left out, ids stable across re-runs."""
from __future__ import annotations

import dataclasses
import datetime
import uuid

from mlci.scan.reports import gitlab
from tests.scan import reports_support as rs

STARTED, FINISHED = rs.NOW - datetime.timedelta(seconds=42.7), rs.NOW


def test_gitlab_report_holds_the_vulnerabilities_with_stable_ids() -> None:
    report = gitlab.container_scanning(rs.verdict(), started=STARTED, finished=FINISHED, image=rs.IMAGE)
    assert rs.problems(rs.GITLAB, report) == []
    assert report["version"] == "15.2.4" and report["scan"]["type"] == "container_scanning"
    assert (report["scan"]["start_time"], report["scan"]["end_time"]) == ("2026-12-01T11:59:17", "2026-12-01T12:00:00")
    assert report["scan"]["status"] == "success" and report["scan"]["scanner"]["version"] == "0.76.0"
    vulns = {v["identifiers"][0]["value"]: v for v in report["vulnerabilities"]}
    # vulnerabilities only; the suppressed one left out as GitLab's allowlist does; the expired one back in
    assert list(vulns) == ["CVE-2026-1000", "CVE-2026-5000", "GHSA-9wx4-h78v-vm56", "CVE-2026-2000", "CVE-2026-3000"]
    openssl = vulns["CVE-2026-1000"]
    assert openssl["identifiers"] == [{"type": "cve", "name": "CVE-2026-1000", "value": "CVE-2026-1000",
                                       "url": "https://www.cve.org/CVERecord?id=CVE-2026-1000"}]
    assert openssl["location"] == {"dependency": {"package": {"name": "openssl"}, "version": "3.0.11-1~deb12u2"},
                                   "operating_system": "debian 12.5", "image": rs.IMAGE}
    assert openssl["severity"] == "Critical" and openssl["solution"] == "Upgrade openssl to 3.0.13-1~deb12u1"
    ghsa = vulns["GHSA-9wx4-h78v-vm56"]
    assert ghsa["identifiers"][0]["type"] == "ghsa" and ghsa["identifiers"][0]["url"].endswith("GHSA-9wx4-h78v-vm56")
    assert ghsa["links"] == [{"url": "https://github.com/advisories/GHSA-9wx4-h78v-vm56"}]  # "not a url" left out
    assert "solution" not in vulns["CVE-2026-2000"] and vulns["CVE-2026-3000"]["severity"] == "Medium"
    messages = [m["value"] for m in report["scan"]["messages"]]
    assert any("1 secret, 1 misconfiguration, 2 model finding(s)" in m for m in messages)
    assert any(m.startswith("1 vulnerability suppressed") for m in messages)
    assert any("expired on 2026-11-20" in m for m in messages)
    ids = [v["id"] for v in report["vulnerabilities"]]
    assert all(uuid.UUID(i).version == 5 for i in ids) and len(set(ids)) == len(ids)
    again = gitlab.container_scanning(rs.verdict(), started=rs.NOW, finished=rs.NOW, image=rs.IMAGE)
    assert [v["id"] for v in again["vulnerabilities"]] == ids  # a re-run gives GitLab the same ids


def test_gitlab_ids_stay_distinct_for_repeated_findings_and_the_report_stays_valid_when_empty() -> None:
    twice = rs.verdict([(rs.OS_VULN, "fails", None), (rs.OS_VULN, "fails", None)])
    report = gitlab.container_scanning(twice, started=STARTED, finished=FINISHED, image="")
    assert rs.problems(rs.GITLAB, report) == []
    assert len({v["id"] for v in report["vulnerabilities"]}) == 2
    assert report["vulnerabilities"][0]["location"]["image"] == rs.IMAGE  # the target when no name is given
    naive = datetime.datetime(2026, 12, 1, 12, 0, 0, 999999)
    empty = gitlab.container_scanning(rs.verdict([], warnings=()), started=naive, finished=naive, image="x")
    assert rs.problems(rs.GITLAB, empty) == [] and empty["vulnerabilities"] == []
    assert empty["scan"]["start_time"] == "2026-12-01T12:00:00"
    informational = rs.verdict([(dataclasses.replace(rs.BELOW, informational=True), "informational", None)])
    shown = gitlab.container_scanning(informational, started=STARTED, finished=FINISHED, image="x")
    assert shown["vulnerabilities"][0]["severity"] == "Info" and rs.problems(rs.GITLAB, shown) == []
