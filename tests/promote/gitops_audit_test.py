"""The audit log: one JSON line per promotion, appended whole even by concurrent writers, never a secret."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlci.core import log
from mlci.core.errors import UsageError
from mlci.promote.audit import append_audit
from tests.testing.gitremote import bare_repo, record, settings
from tests.testing.repos import ROOT


def test_one_line_per_promotion_with_the_record_s_facts(tmp_path: Path) -> None:
    path = tmp_path / "artifacts" / "mlci-promote-audit.jsonl"
    append_audit(path, record(1))
    append_audit(path, record(2, forced=True, previous_digest=record(1).digest))
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert sorted(first) == ["approvals", "environment", "format", "image", "model", "promotion", "scan",
                             "signature"]
    assert first["image"]["ref"] == "127.0.0.1:5000/risk/credit-scoring@sha256:" + "1" * 64
    assert first["promotion"] == {"id": "promotion-1", "by": "release-bob", "at": "2026-12-01T10:01:00Z",
                                  "source": "docker://127.0.0.1:5001/risk/credit-scoring:v1.1.0", "forced": False,
                                  "previous_digest": None, "rollback": False, "job": None}
    assert (second["promotion"]["forced"], second["promotion"]["previous_digest"]) == (True, record(1).digest)
    assert first == json.loads(json.dumps(record(1).to_json()))


def test_the_line_is_the_record_the_gitops_file_holds(tmp_path: Path) -> None:
    from mlci.promote import gitops
    from tests.testing.gitremote import read_file

    remote = bare_repo(tmp_path / "gitops.git")
    gitops.record_promotion(settings(remote), record(1))
    written = gitops.record_promotion(settings(remote), record(2))
    append_audit(tmp_path / "audit.jsonl", written.record)
    line = json.loads((tmp_path / "audit.jsonl").read_text())
    state = read_file(remote)
    state.pop("history")
    assert line == state
    assert line["promotion"]["previous_digest"] == record(1).digest


def test_no_secret_in_the_audit_log(tmp_path: Path, fresh_secrets: None) -> None:
    log.add_secret("ghp_AuditS3cretToken")
    path = tmp_path / "audit.jsonl"
    append_audit(path, record(1, promoted_by="ghp_AuditS3cretToken", job="https://x:pw-in-url-77@ci.example/j/1"))
    text = path.read_text()
    assert "ghp_AuditS3cretToken" not in text and "pw-in-url-77" not in text
    assert json.loads(text)["promotion"]["job"] == "https://[MASKED]@ci.example/j/1"


def test_a_symlinked_audit_log_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("")
    (tmp_path / "audit.jsonl").symlink_to(target)
    with pytest.raises(UsageError, match="a symlink, which mlci does not write through"):
        append_audit(tmp_path / "audit.jsonl", record(1))
    assert target.read_text() == ""


_WRITER = """
import sys
from pathlib import Path
from mlci.promote.audit import append_audit
from tests.testing.gitremote import record
n = int(sys.argv[2])
for i in range(50):
    append_audit(Path(sys.argv[1]), record(n, id=f"writer-{n}-{i}", metrics={"m.json": {"pad": "x" * 20000}}))
"""


def test_concurrent_writers_never_interleave_within_a_line(tmp_path: Path) -> None:
    """Four processes append 50 lines of 20 kB each (well past PIPE_BUF): every line arrives whole."""
    path = tmp_path / "audit.jsonl"
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(n)], cwd=ROOT) for n in range(1, 5)]
    assert [w.wait(timeout=60) for w in writers] == [0] * 4
    ids = sorted(json.loads(line)["promotion"]["id"] for line in path.read_text().splitlines())
    assert ids == sorted(f"writer-{n}-{i}" for n in range(1, 5) for i in range(50))


@pytest.mark.parametrize("make, refusal", [
    (lambda p: p.mkdir(), "promote.audit_log {path}: is a directory"),
    (lambda p: p.symlink_to(p.parent / "elsewhere.jsonl"), "promote.audit_log {path}: a symlink"),
    (lambda p: (p.parent / "file").write_text("x"), "promote.audit_log {path}: a parent is not a directory"),
])
def test_an_audit_log_that_cannot_be_appended_to_is_refused_before_any_write(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: object, refusal: str) -> None:
    """They were found when the line was appended: after the image was tagged and recorded (exit 2, promoted)."""
    from mlci.promote.audit import check_audit

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "audit.jsonl"
    make(path)  # type: ignore[operator]
    target = tmp_path / "file" / "audit.jsonl" if "parent" in refusal else path
    with pytest.raises(UsageError) as refused:
        check_audit(target)
    assert str(refused.value).startswith(refusal.format(path=target)), refused.value
    check_audit(tmp_path / "new" / "audit.jsonl")  # a new file in a new directory: fine
