from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mlci import __version__, cli
from mlci.commands import config as config_cmd


def mlci(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os
    return subprocess.run([sys.executable, "-m", "mlci", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, check=False)


def test_version() -> None:
    done = mlci("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"mlci {__version__}"


def test_bad_flag_is_a_usage_error() -> None:
    done = mlci("repro", "--no-such-flag")
    assert done.returncode == 2 and "unrecognized arguments: --no-such-flag" in done.stderr


def test_broken_config_gives_one_line_per_problem_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "mlci.yaml").write_text("version: 1\ntrain:\n  pul: true\n  push: 3\n")
    done = mlci("config", "check", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "mlci.yaml:3: train.pul: unknown key (did you mean 'pull'?)",
        "mlci.yaml:4: train.push: expected true or false, got int 3",
    ]
    assert done.stdout == ""


def test_config_check_and_show_json(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "mlci.yaml").write_text("version: 1\ntrain:\n  push: true\n")
    assert mlci("config", "check", cwd=tmp_path).stdout.strip() == "mlci.yaml: ok"
    import json
    shown = json.loads(mlci("config", "show", "--json", cwd=tmp_path, env={"MLCI_TRAIN_PULL": "0"}).stdout)
    assert shown["config"]["train"]["push"] is True and shown["config"]["train"]["pull"] is False
    assert shown["overrides"] == ["MLCI_TRAIN_PULL"]


def test_internal_error_is_one_line_with_traceback_in_a_redacted_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLCI_LOG_FILE", str(tmp_path / "crash.log"))
    monkeypatch.setenv("FORGE_TOKEN", "tok-123456789")

    def boom(**_: object) -> int:
        raise RuntimeError("bug while using tok-123456789")

    monkeypatch.setattr(config_cmd, "run", boom)
    assert cli.main(["config", "check"]) == 70
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: RuntimeError" in err and "tok-123456789" not in err
    logged = (tmp_path / "crash.log").read_text()
    assert "Traceback" in logged and "[MASKED]" in logged and "tok-123456789" not in logged


def test_interrupt_exits_130(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(**_: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(config_cmd, "run", interrupted)
    assert cli.main(["config", "check"]) == 130
    assert capsys.readouterr().err == "mlci: interrupted\n"


def test_help_imports_no_heavy_module() -> None:
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "mlci", "--help"],
                          capture_output=True, text=True, check=True)
    imported = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines() if "|" in line}
    assert "mlci" in imported
    assert not imported & {"dvc", "duckdb", "jinja2", "requests", "yaml", "git"}


def test_config_show_masks_passwords_in_urls(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "mlci.yaml").write_text("version: 1\ndata_tests:\n  s3_endpoint_url: https://svc:s3cr3t-pw@s3.bank\n")
    done = mlci("config", "show", cwd=tmp_path)
    assert done.returncode == 0
    assert "s3_endpoint_url: https://[MASKED]@s3.bank" in done.stdout and "s3cr3t-pw" not in done.stdout
