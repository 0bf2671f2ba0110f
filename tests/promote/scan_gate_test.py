"""The promotion's scan gate over a digest's records: the newest under today's policy decides, within its age,
and a record dated in the future is refused."""
from __future__ import annotations

import datetime
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlci.core.errors import GateFailed
from mlci.promote.policy import check_scan
from mlci.promote.settings import Environment
from mlci.scan.record import ScanRecord

NOW = datetime.datetime(2026, 12, 4, 12, 0, tzinfo=datetime.UTC)
DIGEST = "sha256:" + "a" * 64
POLICY = "sha256:" + "b" * 64
ENV = Environment(image="docker://reg.bank/ml/m", scan_max_age_days=7)


def _record(hours_ago: float, passed: bool, policy: str = POLICY) -> ScanRecord:
    return ScanRecord(image="docker://reg.bank/ml/m:1", digest=DIGEST, passed=passed, counts={}, policy_hash=policy,
                      scanned_at=NOW - datetime.timedelta(hours=hours_ago))


def test_a_newer_failing_rescan_is_not_outvoted_by_an_older_pass() -> None:
    with pytest.raises(GateFailed, match=r"the newest scan record of sha256:a+ under the scan policy now in force "
                                         r"fails \(scanned 2026-12-04 11:00 UTC\): an older pass does not count"):
        check_scan("stage", ENV, [_record(48, True), _record(1, False)], POLICY, DIGEST, NOW)
    newest = _record(1, True)
    assert check_scan("stage", ENV, [_record(48, False), newest], POLICY, DIGEST, NOW) is newest
    other_policy = _record(0.5, False, "sha256:" + "c" * 64)  # made under another policy: not today's verdict
    assert check_scan("stage", ENV, [other_policy, newest], POLICY, DIGEST, NOW) is newest


def test_a_record_dated_in_the_future_is_refused() -> None:
    with pytest.raises(GateFailed, match=r"is dated 2099-.* in the future: the clock of the machine that scanned"):
        check_scan("stage", ENV, [_record(-(24 * 365 * 73), True)], POLICY, DIGEST, NOW)
    skewed = _record(-0.1, True)  # six minutes ahead: the clocks of two runners
    assert check_scan("stage", ENV, [skewed], POLICY, DIGEST, NOW) is skewed


@given(st.lists(st.tuples(st.floats(min_value=-0.15, max_value=400), st.booleans()), max_size=6))
def test_the_gate_passes_exactly_when_the_newest_record_passed_within_its_age(rows: list[tuple[float, bool]]) -> None:
    records = [_record(hours, passed) for hours, passed in rows]
    newest = max(records, key=lambda r: r.scanned_at, default=None)
    expected = newest is not None and newest.passed and newest.age(NOW) <= datetime.timedelta(days=7)
    try:
        found = check_scan("stage", ENV, records, POLICY, DIGEST, NOW)
    except GateFailed:
        found = None
    assert (found is not None) == expected and (found is None or found.scanned_at == newest.scanned_at)  # type: ignore[union-attr]


def test_a_tag_pattern_that_backtracks_for_ever_is_exit_2_in_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """`tags: '(a+)+$'` against a pushed tag `aaa...a_b` spun at 100% CPU until the job was killed."""
    from mlci.core.errors import ConfigError
    from mlci.promote import policy

    monkeypatch.setattr(policy, "MATCH_SECONDS", 1.0)
    env = Environment(image="docker://reg.bank/ml/m", tags="(a+)+$")
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"promote\.environments\.prod\.tags: '\(a\+\)\+\$' took over 1 s to match "
                                          r"the tag 'a+_b': a pattern that backtracks"):
        policy.check_source("prod", env, policy.SourceRef("tag", "a" * 60 + "_b", "git"), DIGEST)
    assert time.monotonic() - started < 5
    release = Environment(image="docker://reg.bank/ml/m", tags=r"v\d+\.\d+\.\d+")
    policy.check_source("prod", release, policy.SourceRef("tag", "v1.2.3", "git"), DIGEST)  # accepted
    with pytest.raises(GateFailed, match="accepts tags matching"):
        policy.check_source("prod", release, policy.SourceRef("tag", "v1.2.3-rc1", "git"), DIGEST)
