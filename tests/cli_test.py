from __future__ import annotations

import argparse
import json
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


SECRETS = {"MY_FORGE": "glpat-EveryCommandToken1", "WAREHOUSE": "postgresql://etl:Dsn-pass-77@127.0.0.1:1/dwh"}
EVERY_COMMAND_CONFIG = """\
version: 1
forge: {token_env: MY_FORGE}
image:
  build_args: {PIP_INDEX_URL: "https://etl:Dsn-pass-77@pypi.bank/simple"}
data_tests:
  datasets:
    - name: d
      path: data.csv
      checks:
        - row_count: {min: 1, name: "rows Dsn-pass-77 glpat-EveryCommandToken1"}
    - {name: w, dsn_env: WAREHOUSE, table: loans}
"""


def test_a_token_and_a_dsn_in_the_environment_are_masked_by_every_command(tmp_path: Path) -> None:
    import base64

    from tests.testing import repos

    basic = base64.b64encode(b"oauth2:glpat-EveryCommandToken1").decode()  # an Authorization: Basic header
    stage = ("import base64, os\nprint(os.environ['MY_FORGE'], os.environ['WAREHOUSE'])\n"
             "print('Basic', base64.b64encode(b'oauth2:' + os.environ['MY_FORGE'].encode()).decode())\n"
             "open('out.txt', 'w').write('x')\n")
    repo = repos.tiny_dvc_repo(tmp_path / "repo", "stages:\n  s:\n    cmd: python stage.py\n    outs: [out.txt]\n",
                               {"stage.py": stage, "data.csv": "a\n1\n", "mlci.yaml": EVERY_COMMAND_CONFIG,
                                "leak.md": f"a section quoting glpat-EveryCommandToken1 and Dsn-pass-77, {basic}\n"})
    runs = {
        "config show --json": mlci("config", "show", "--json", cwd=repo, env=SECRETS),
        "repro": mlci("repro", "--json", "--summary-out", "repro.json", cwd=repo, env=SECRETS),
        "data-test": mlci("data-test", "--dataset", "d", "--json-out", "dt.json", "--md", "dt.md", "--junit",
                          "dt.xml", cwd=repo, env=SECRETS),
        "report": mlci("report", "--base", "HEAD", "--dry-run", "--section", "leak.md", "--out", "report.md",
                       cwd=repo, env=SECRETS),
    }
    leaks = ("glpat-EveryCommandToken1", "EveryCommandToken1", "Dsn-pass-77", SECRETS["WAREHOUSE"], basic[12:24])
    for command, done in runs.items():
        assert done.returncode == 0, (command, done.stderr)
        assert "[MASKED]" in done.stdout + done.stderr, command
        assert not [leak for leak in leaks if leak in done.stdout + done.stderr], command
    for name in ("repro.json", "dt.json", "dt.md", "dt.xml", "report.md"):
        assert not [leak for leak in leaks if leak in (repo / name).read_text()], name
    json.loads(runs["config show --json"].stdout)
    json.loads(runs["repro"].stdout)
    json.loads((repo / "repro.json").read_text())


def test_internal_error_with_a_many_line_message_is_still_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLCI_LOG_FILE", str(tmp_path / "crash.log"))
    monkeypatch.setenv("SERVICE_PASSWORD", "pw-1234567890")

    def boom(**_: object) -> int:
        raise ValueError("first line\nsecond line with pw-1234567890\n\nthird")

    monkeypatch.setattr(config_cmd, "run", boom)
    assert cli.main(["config", "check"]) == 70
    err = capsys.readouterr().err
    assert err == (f"mlci: internal error: ValueError: first line [...] (traceback in {tmp_path / 'crash.log'}; "
                   "please report it)\n")
    logged = (tmp_path / "crash.log").read_text()
    assert "second line with [MASKED]" in logged and "pw-1234567890" not in logged


def test_sigterm_exits_143_with_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import signal

    def terminated(**_: object) -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not interrupt")

    monkeypatch.setattr(config_cmd, "run", terminated)
    previous = signal.getsignal(signal.SIGTERM)
    assert cli.main(["config", "check"]) == 143
    assert capsys.readouterr().err == "mlci: terminated (SIGTERM)\n"
    assert signal.getsignal(signal.SIGTERM) == previous  # restored for whoever called main()


def test_non_regular_config_is_exit_2_never_defaults_never_a_hang(tmp_path: Path) -> None:
    import os
    (tmp_path / ".git").mkdir()
    os.mkfifo(tmp_path / "mlci.yaml")
    done = subprocess.run([sys.executable, "-m", "mlci", "config", "check"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=30, check=False)
    assert (done.returncode, done.stderr, done.stdout) == (2, "mlci.yaml: is a FIFO, not a regular file\n", "")


def test_a_closed_output_pipe_is_141_not_an_internal_error(tmp_path: Path) -> None:
    import os
    read, write = os.pipe()
    os.close(read)  # the reader (`| head`) is gone before mlci prints
    done = subprocess.run([sys.executable, "-m", "mlci", "config", "show"], cwd=tmp_path, stdout=write,
                          stderr=subprocess.PIPE, text=True, check=False, timeout=60)
    os.close(write)
    assert (done.returncode, done.stderr) == (141, "")


@pytest.mark.parametrize("args", [("config", "check"), ("--help",), ("--version",)])
def test_stdout_closed_before_mlci_starts_is_141_not_an_internal_error(tmp_path: Path, args: tuple[str, ...]) -> None:
    # `mlci ... >&-`: no descriptor 1 at all, so Python has no sys.stdout (a closed pipe is the test above)
    done = subprocess.run(["sh", "-c", 'exec "$0" -m mlci "$@" >&-', sys.executable, *args], cwd=tmp_path,
                          stderr=subprocess.PIPE, text=True, check=False, timeout=60)
    assert (done.returncode, done.stderr) == (141, "")


def test_usage_errors_are_masked_too() -> None:
    token = "glpat-pasted-0123456789"
    done = mlci("config", "check", "--token", token, env={"GITLAB_TOKEN": token})
    assert done.returncode == 2
    assert "unrecognized arguments: --token [MASKED]" in done.stderr and "glpat-pasted" not in done.stderr


@pytest.mark.parametrize("command", [["report", "--dry-run"], ["build"], ["repro"]])
def test_a_repo_that_is_no_directory_is_exit_2_before_any_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    (tmp_path / "file").write_text("")
    for repo, why in ((tmp_path / "gone", "not found"), (tmp_path / "file", "not a directory")):
        with pytest.raises(SystemExit) as exited:  # argparse's own exit, before any command runs
            cli.main([*command, "--repo", str(repo)])
        assert exited.value.code == 2
        assert capsys.readouterr().err.splitlines()[-1].endswith(f"error: argument --repo: {repo}: {why}")


def test_an_os_error_no_command_handled_is_one_line_never_an_internal_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.testing import repos

    monkeypatch.chdir(repos.tiny_dvc_repo(tmp_path / "repo", "metrics:\n- m.json\n", {"m.json": '{"a": 1}'}))
    long_name = "s" * 5000
    assert cli.main(["report", "--base", "HEAD", "--dry-run", "--section", long_name]) == 2
    assert capsys.readouterr().err == f"mlci: error: {long_name}: File name too long\n"

    def full_disk(**_: object) -> int:
        raise OSError(28, "No space left on device", str(tmp_path / "out.json"))

    monkeypatch.setattr(config_cmd, "run", full_disk)
    assert cli.main(["config", "check"]) == 3
    assert capsys.readouterr().err == f"mlci: error: {tmp_path / 'out.json'}: No space left on device\n"


def test_each_command_is_registered_under_the_name_it_is_listed_by() -> None:
    subparsers = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert list(subparsers.choices) == list(cli.COMMANDS)
    for name in cli.COMMANDS:
        only = next(a for a in cli.build_parser(name)._actions if isinstance(a, argparse._SubParsersAction))
        assert list(only.choices) == [name]


@pytest.mark.parametrize(("argv", "command"), [
    (["promote", "--env", "stage"], "promote"),
    (["--config", "promote", "scan", "IMAGE"], "scan"),  # the value of --config is not the command
    (["--config=x.yaml", "-v", "data-test"], "data-test"),
    (["-q", "--json", "bundle", "export"], "bundle"),
    (["promot", "x"], None),
    (["--help"], None),
    ([], None),
    (["--", "promote"], None),
])
def test_the_command_is_found_before_the_parser_is_built(argv: list[str], command: str | None) -> None:
    assert cli.command_in(argv) == command


def test_a_misspelt_command_still_lists_every_command() -> None:
    done = mlci("promot", "x")
    assert done.returncode == 2
    assert "invalid choice: 'promot'" in done.stderr and all(name in done.stderr for name in cli.COMMANDS)
