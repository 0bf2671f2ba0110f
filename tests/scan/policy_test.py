"""The gate: severities, unfixed, exceptions (mlci.yaml and .trivyignore.yaml) with expiry on a fixed clock,
and the DB's age."""
from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

import pytest

from mlci import settings as cfg
from mlci.core.errors import ConfigError
from mlci.scan import policy, trivyignore
from mlci.scan.findings import DbInfo, Finding, ScanOutput
from mlci.scan.settings import Exception_, ScanSettings

NOW = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)
VULN = Finding(kind="vulnerability", id="CVE-2026-0001", severity="HIGH", title="t", target="requirements.txt",
               package="requests", version="2.5.0", fixed_version="2.6.0", purl="pkg:pypi/requests@2.5.0")
UNFIXED = dataclasses.replace(VULN, id="CVE-2026-0002", severity="CRITICAL", fixed_version=None)
LOW = dataclasses.replace(VULN, id="CVE-2026-0003", severity="LOW")
MODEL = Finding(kind="model", id="MLCI-MODEL-UNSAFE", severity="CRITICAL", title="os.system on load",
                target="models/model", path="models/model")
BENIGN = dataclasses.replace(MODEL, id="MLCI-MODEL-GLOBAL", severity="LOW", informational=True)


def _output(*findings: Finding, updated: datetime.datetime | None = None) -> ScanOutput:
    db = DbInfo(version=2, updated_at=updated or NOW - datetime.timedelta(hours=6))
    return ScanOutput(target="t", findings=findings, db=db)


def test_severities_fail_and_others_are_reported_only() -> None:
    verdict = policy.judge(_output(VULN, LOW, BENIGN), ScanSettings(), None, now=NOW)
    assert [j.outcome for j in verdict.judged] == ["fails", "below", "informational"]
    assert not verdict.passed
    assert verdict.reasons == ("1 finding at HIGH/CRITICAL: CVE-2026-0001 (HIGH, requests 2.5.0)",)
    assert verdict.counts() == {"HIGH": 1, "LOW": 1}
    assert policy.judge(_output(LOW, BENIGN), ScanSettings(), None, now=NOW).passed


def test_model_findings_go_through_the_same_gate() -> None:
    verdict = policy.judge(_output(MODEL), ScanSettings(), None, now=NOW)
    assert verdict.reasons == ("1 finding at HIGH/CRITICAL: MLCI-MODEL-UNSAFE (CRITICAL, models/model)",)


def test_ignore_unfixed() -> None:
    assert not policy.judge(_output(UNFIXED), ScanSettings(), None, now=NOW).passed
    verdict = policy.judge(_output(UNFIXED), ScanSettings(ignore_unfixed=True), None, now=NOW)
    assert verdict.passed and verdict.judged[0].outcome == "unfixed"


def _exception(expires: str, **kw: str) -> Exception_:
    return Exception_(id="cve-2026-0001", reason="not reachable", expires=expires, where="mlci.yaml:9", **kw)


def test_an_exception_suppresses_until_it_expires() -> None:
    live = ScanSettings(exceptions=(_exception("2026-12-01"),))  # the last day it holds
    verdict = policy.judge(_output(VULN), live, None, now=NOW)
    assert verdict.passed and verdict.judged[0].outcome == "suppressed"
    assert verdict.exceptions[0].days_left == 0 and verdict.exceptions[0].matched == 1 and not verdict.warnings
    expired = policy.judge(_output(VULN), ScanSettings(exceptions=(_exception("2026-11-30"),)), None, now=NOW)
    assert not expired.passed and expired.judged[0].outcome == "fails"
    assert expired.judged[0].exception is not None and expired.judged[0].exception.expired
    assert expired.warnings == ("exception cve-2026-0001 (mlci.yaml:9) expired on 2026-11-30: it no longer "
                                "suppresses (1 finding)",)


def test_an_exception_limited_to_a_package_or_path_matches_only_there() -> None:
    other_package = ScanSettings(exceptions=(_exception("2027-01-01", package="urllib3"),))
    assert not policy.judge(_output(VULN), other_package, None, now=NOW).passed
    same_path = ScanSettings(exceptions=(_exception("2027-01-01", path="**/requirements.txt"),))
    assert policy.judge(_output(VULN), same_path, None, now=NOW).passed
    other_path = ScanSettings(exceptions=(_exception("2027-01-01", path="src/*"),))
    assert not policy.judge(_output(VULN), other_path, None, now=NOW).passed


def _ignore_file(tmp_path: Path, text: str) -> trivyignore.IgnoreFile:
    path = tmp_path / ".trivyignore.yaml"
    path.write_text(text)
    return trivyignore.load(path, ".trivyignore.yaml")


def test_a_trivyignore_file_is_honoured_with_its_expiry_paths_and_purls(tmp_path: Path) -> None:
    ignore = _ignore_file(tmp_path, (
        "vulnerabilities:\n"
        "  - id: CVE-2026-0001\n    purls: [pkg:pypi/requests@2.5.0]\n    statement: accepted\n"
        "  - id: CVE-2026-0002\n    expired_at: 2026-12-01\n"
        "secrets:\n  - id: CVE-2026-0003\n"  # another kind: does not apply to vulnerabilities
    ))
    verdict = policy.judge(_output(VULN, UNFIXED, LOW), ScanSettings(severities=("LOW", "HIGH", "CRITICAL")),
                           ignore, now=NOW)
    assert [j.outcome for j in verdict.judged] == ["suppressed", "fails", "fails"]
    assert verdict.exceptions[1].expired and verdict.exceptions[1].source == ".trivyignore.yaml:5"
    assert any("CVE-2026-0002" in w and "expired on 2026-12-01" in w for w in verdict.warnings)


def test_a_bad_trivyignore_file_names_its_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        _ignore_file(tmp_path, "vulnerabilities:\n  - id: X\n    expired_at: soon\n")
    assert raised.value.problems == [
        ".trivyignore.yaml:2: vulnerabilities['X'].expired_at: a date YYYY-MM-DD (or an RFC 3339 time), got 'soon'"]


@pytest.mark.parametrize("action, passed", [("fail", False), ("warn", True)])
def test_an_old_db_fails_or_warns_naming_its_date_and_the_fix(action: str, passed: bool) -> None:
    old = NOW - datetime.timedelta(days=10)
    verdict = policy.judge(_output(updated=old), ScanSettings(max_db_age_days=7, db_age=action),  # type: ignore[arg-type]
                           None, now=NOW)
    assert verdict.passed is passed
    line = (verdict.warnings if passed else verdict.reasons)[0]
    assert line.startswith("the vulnerability DB is 10.0 days old (UpdatedAt 2026-11-21T12:00:00+00:00), over "
                           "scan.max_db_age_days 7: refresh the mirror")
    assert verdict.db_age is not None and verdict.db_age.status == action
    assert policy.judge(_output(updated=old), ScanSettings(max_db_age_days=None), None, now=NOW).passed


def test_the_policy_hash_changes_with_the_policy_not_with_where_it_is_written() -> None:
    base = policy.policy_hash(ScanSettings(exceptions=(_exception("2027-01-01"),)), None)
    moved = dataclasses.replace(_exception("2027-01-01"), where="mlci.yaml:30")
    assert policy.policy_hash(ScanSettings(exceptions=(moved,)), None) == base
    assert policy.policy_hash(ScanSettings(exceptions=(_exception("2027-01-02"),)), None) != base
    assert policy.policy_hash(ScanSettings(ignore_unfixed=True), None) != policy.policy_hash(ScanSettings(), None)


@pytest.mark.parametrize("expires, shown", [
    ("2026-12-31T00:00:00", "'2026-12-31T00:00:00'"),  # YAML reads it as a timestamp
    ("'20261231'", "'20261231'"),  # a date to fromisoformat, not the documented form
    ("'2026-13-01'", "'2026-13-01'"),
])
def test_an_exception_expiry_that_is_no_calendar_date_is_a_config_problem(tmp_path: Path, expires: str,
                                                                          shown: str) -> None:
    (tmp_path / "mlci.yaml").write_text("version: 1\nscan:\n  exceptions:\n"
                                        f"    - {{id: CVE-2026-0001, reason: r, expires: {expires}}}\n")
    with pytest.raises(ConfigError) as raised:
        cfg.load(None, tmp_path, environ={})
    assert raised.value.problems == [
        f"mlci.yaml:4: scan.exceptions['CVE-2026-0001'].expires: a date YYYY-MM-DD, got {shown}"]


@pytest.mark.parametrize("expired_at", ["2026-12-01T08:00:00", "'2026-12-01T08:00:00Z'", "2026-12-02T01:00:00+05:00"])
def test_a_trivyignore_timestamp_expires_from_its_utc_date_on(tmp_path: Path, expired_at: str) -> None:
    """trivy's expired_at is a time: an entry valid for trivy is read, never later than trivy expires it."""
    ignore = _ignore_file(tmp_path, f"vulnerabilities:\n  - id: CVE-2026-0001\n    expired_at: {expired_at}\n")
    verdict = policy.judge(_output(VULN), ScanSettings(), ignore, now=NOW)
    assert verdict.exceptions[0].expires == datetime.date(2026, 12, 1) and verdict.exceptions[0].expired
    assert [j.outcome for j in verdict.judged] == ["fails"]


def test_a_db_from_the_future_passes_with_a_warning_about_the_clock() -> None:
    ahead = policy.judge(_output(updated=NOW + datetime.timedelta(days=3)), ScanSettings(max_db_age_days=7), None,
                         now=NOW)
    assert ahead.passed and ahead.warnings == (
        "the vulnerability DB's UpdatedAt 2026-12-04T12:00:00+00:00 is 3.0 days in the future: check this machine's "
        "clock (the age gate cannot judge a DB from the future)",)
    skew = policy.judge(_output(updated=NOW + datetime.timedelta(hours=6)), ScanSettings(), None, now=NOW)
    assert skew.passed and not skew.warnings
