"""Nonsense numbers in the `report` section are exit 2 with the file and key, never an internal error."""
from __future__ import annotations

from pathlib import Path

import pytest

from mlci import cli


@pytest.mark.parametrize("line, expected", [
    ("precision: -1", "report.precision (or MLCI_REPORT_PRECISION): must be from 1 to 17, got -1"),
    ("precision: 0", "report.precision (or MLCI_REPORT_PRECISION): must be from 1 to 17, got 0"),
    ("precision: 400", "report.precision (or MLCI_REPORT_PRECISION): must be from 1 to 17, got 400"),
    ("plot_points: 0", "report.plot_points (or MLCI_REPORT_PLOT_POINTS): must be from 2 to 500, got 0"),
    ("plot_points: 1", "report.plot_points (or MLCI_REPORT_PLOT_POINTS): must be from 2 to 500, got 1"),
    ("plot_points: 100000", "report.plot_points (or MLCI_REPORT_PLOT_POINTS): must be from 2 to 500, got 100000"),
    ("gates: {'m.json:auc': {min: .nan}}", "report.gates.m.json:auc.min: must be a number, got NaN"),
    ("gates: {'m.json:auc': {max_drop: .nan}}", "report.gates.m.json:auc.max_drop: must be a number, got NaN"),
    ("id: 'a --> <b>'", "report.id (or MLCI_REPORT_ID): letters, digits, `.`, `_` and `-` only (at most 64)"),
    ("id: ''", "report.id (or MLCI_REPORT_ID): letters, digits"),
    ("gates: {'m.json:auc': {}}", "report.gates.m.json:auc: give at least one of min, max, max_drop, max_rise, better"),
    ("gates: {'m.json:auc': {better: up}}",
     "report.gates.m.json:auc.better: expected one of higher, lower, got str 'up'"),
])
def test_report_numbers_out_of_range_are_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str], line: str,
                                                expected: str) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "mlci.yaml").write_text(f"version: 1\nreport:\n  {line}\n")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["config", "check"]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.startswith("mlci.yaml")


def test_an_override_out_of_range_is_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "mlci.yaml").write_text("version: 1\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLCI_REPORT_PLOT_POINTS", "-3")
    assert cli.main(["config", "check"]) == 2
    assert "MLCI_REPORT_PLOT_POINTS): must be from 2 to 500, got -3" in capsys.readouterr().err


def test_a_gate_may_only_say_which_way_is_better(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "mlci.yaml").write_text("version: 1\nreport:\n  gates: {'m.json:drift_score': {better: lower}}\n")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["config", "check"]) == 0


def test_the_limits_themselves_are_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "mlci.yaml").write_text("version: 1\nreport:\n  precision: 17\n  plot_points: 2\n")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["config", "check"]) == 0
