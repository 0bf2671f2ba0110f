"""The promotion record's facts: metrics read from the model's metrics files, the scan record's facts."""
from __future__ import annotations

import datetime
import json
import logging
from pathlib import Path

import pytest

from mlci.core.errors import UsageError
from mlci.promote.record import MAX_METRICS, ScanFacts, read_metrics
from mlci.scan.record import ScanRecord
from tests.testing.gitremote import T0, record
from tests.testing.repos import EXAMPLE


def test_the_example_s_metrics_are_recorded_as_dvc_shows_them() -> None:
    metrics = read_metrics(EXAMPLE, ["metrics.json"])
    assert metrics == {"metrics.json": json.loads((EXAMPLE / "metrics.json").read_text())}


def test_nested_values_are_flattened_and_only_scalars_kept(tmp_path: Path) -> None:
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "scores.yaml").write_text(
        "test:\n  auc: 0.91\n  ok: true\n  classes: [0.5, 0.7]\n  note: \"line\\nbreak\"\n  gone: null\n")
    (tmp_path / "m.json").write_text('{"loss": NaN, "acc": 0.5, "big": Infinity, "n": 3}')
    assert read_metrics(tmp_path, ["eval/scores.yaml", "m.json"]) == {
        "eval/scores.yaml": {"test.auc": 0.91, "test.ok": True, "test.classes.0": 0.5, "test.classes.1": 0.7,
                             "test.note": "line\\nbreak"},
        "m.json": {"acc": 0.5, "n": 3}}


def test_unreadable_metrics_are_left_out_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "broken.json").write_text("{")
    (tmp_path / "many.json").write_text(json.dumps({f"k{i}": i for i in range(MAX_METRICS + 50)}))
    with caplog.at_level(logging.WARNING, logger="mlci"):
        found = read_metrics(tmp_path, ["missing.json", "broken.json", "many.json"])
    assert list(found) == ["many.json"] and len(found["many.json"]) == MAX_METRICS
    assert [r.getMessage() for r in caplog.records] == [
        "mlci: warning: metrics file missing.json cannot be read (No such file or directory); not recorded",
        "mlci: warning: metrics file broken.json is not valid JSON (JSONDecodeError); not recorded",
        f"mlci: warning: metrics file many.json has more than {MAX_METRICS} values; the first {MAX_METRICS} are "
        "recorded"]


def test_a_metrics_file_linked_out_of_the_repository_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text('{"password": "x"}')
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "metrics.json").symlink_to(secret)
    with pytest.raises(UsageError, match=r"metrics file metrics\.json: leads out of the repository"):
        read_metrics(repo, ["metrics.json"])


def test_the_scan_facts_are_the_scan_record_s() -> None:
    scanned = ScanRecord(image="r/m:v1", digest="sha256:" + "1" * 64, passed=False, counts={}, policy_hash="p-1",
                         scanned_at=T0, db_version=2, db_updated_at=T0 - datetime.timedelta(days=1),
                         trivy_version="0.76.0")
    facts = ScanFacts.of(scanned)
    assert record(1, scan=facts).to_json()["scan"] == {
        "verdict": "fail", "db_updated_at": "2026-11-30T10:00:00Z", "db_version": 2,
        "scanned_at": "2026-12-01T10:00:00Z", "policy_hash": "p-1", "trivy_version": "0.76.0"}


def test_variable_approvals_are_flagged_weak() -> None:
    from mlci.promote.record import Approver

    data = record(1, approval_mode="variable", approvals=(Approver("ops-dave", "variable"),)).to_json()
    assert data["approvals"] == {"mode": "variable", "weak": True,
                                 "by": [{"login": "ops-dave", "mode": "variable", "at": None}]}
