from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from mlci.core import log, proc, signals
from mlci.core.errors import EnvironmentProblem


def test_missing_tool_is_an_environment_error() -> None:
    with pytest.raises(EnvironmentProblem, match="`no-such-tool-xyz` not found on PATH"):
        proc.run(["no-such-tool-xyz"])


def test_failure_message_has_command_code_and_redacted_tail() -> None:
    log.add_secret("sekret-value-1")
    with pytest.raises(proc.CommandFailed) as caught:
        proc.run([sys.executable, "-c", "import sys; print('a\\nsekret-value-1'); sys.exit(3)"])
    message = str(caught.value)
    assert "exited with 3" in message and "[MASKED]" in message and "sekret-value-1" not in message


def test_streaming_keeps_the_output_and_echoes_it(capsys: pytest.CaptureFixture[str]) -> None:
    result = proc.run([sys.executable, "-u", "-c", "import sys; print('out'); print('err', file=sys.stderr)"],
                      stream=True)
    assert result.returncode == 0 and result.stdout.splitlines() == ["out", "err"]
    assert capsys.readouterr().err.splitlines() == ["out", "err"]
    assert result.tail(1) == "err"


TREE = """\
import subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
open(sys.argv[1], "w").write(f"{grandchild.pid}")
print("started", flush=True)
time.sleep(60)
"""


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.parametrize("stream", [False, True])
def test_sigterm_stops_the_child_and_everything_it_started(tmp_path: Path, stream: bool) -> None:
    pid_file = tmp_path / "grandchild"

    def terminate_when_started() -> None:
        while not pid_file.exists() or not pid_file.read_text():
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=terminate_when_started, daemon=True).start()
    started = time.monotonic()
    with signals.sigterm_raises(), pytest.raises(signals.Terminated):
        proc.run([sys.executable, "-c", TREE, str(pid_file)], stream=stream)
    assert time.monotonic() - started < 20
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while not _gone(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(grandchild)


LITTER = """\
import os, sys, tempfile, time
fd, name = tempfile.mkstemp()  # in the child's TMPDIR, never removed by the child itself
print(name, flush=True)
time.sleep(float(sys.argv[1]))
"""


@pytest.mark.parametrize("stopped", [False, True])
def test_a_child_gets_a_private_tmpdir_removed_after_it_exits_or_is_stopped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stopped: bool) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # what mlci's own TMPDIR gave it
    printed: list[str] = []
    if stopped:
        def terminate_when_written() -> None:
            while not any(tmp_path.glob("mlci-tmp-*/*")):
                time.sleep(0.02)
            os.kill(os.getpid(), signal.SIGTERM)
        threading.Thread(target=terminate_when_written, daemon=True).start()
        with signals.sigterm_raises(), pytest.raises(signals.Terminated):
            proc.run([sys.executable, "-c", LITTER, "60"])
    else:
        printed = proc.run([sys.executable, "-c", LITTER, "0"]).stdout.split()
        assert Path(printed[0]).parent.parent == tmp_path  # private, inside the TMPDIR mlci was given
    assert list(tmp_path.iterdir()) == []


def test_a_tmpdir_named_by_the_caller_or_not_private_is_the_childs_own(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path / "inherited"))
    (tmp_path / "inherited").mkdir()
    (tmp_path / "named").mkdir()
    show = [sys.executable, "-c", "import os; print(os.environ['TMPDIR'])"]
    assert proc.run(show, env={"TMPDIR": str(tmp_path / "named")}).stdout.strip() == str(tmp_path / "named")
    assert proc.run(show, private_tmp=False).stdout.strip() == str(tmp_path / "inherited")


def test_a_timeout_stops_the_child_and_is_an_environment_problem() -> None:
    started = time.monotonic()
    with pytest.raises(EnvironmentProblem, match=r"timed out after 1 s"):
        proc.run([sys.executable, "-c", "import time; time.sleep(60)"], timeout=1)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(("sig", "raised"), [(signal.SIGTERM, signals.Terminated), (signal.SIGINT, KeyboardInterrupt)])
def test_a_signal_while_the_child_starts_still_stops_it(
        monkeypatch: pytest.MonkeyPatch, sig: signal.Signals, raised: type[BaseException]) -> None:
    """The signal lands inside Popen, after the exec and before mlci watches the child: the child is stopped
    and reaped all the same, never left running behind an exited mlci."""
    started: list[int] = []
    execute = subprocess.Popen._execute_child  # type: ignore[attr-defined]

    def execute_then_signal(self: subprocess.Popen[str], *args: object) -> None:
        execute(self, *args)
        started.append(self.pid)
        os.kill(os.getpid(), sig)

    monkeypatch.setattr(subprocess.Popen, "_execute_child", execute_then_signal)
    with signals.sigterm_raises(), pytest.raises(raised):
        proc.run([sys.executable, "-c", "import time; time.sleep(60)"])
    assert started and not Path(f"/proc/{started[0]}").exists()


IGNORED = "import signal; print(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)"


def test_a_child_inherits_an_ignored_sigint() -> None:
    """Run in the background by a shell, mlci has SIGINT ignored and so must its children: watching them
    while they start must not hand them a default SIGINT instead."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        result = proc.run([sys.executable, "-c", IGNORED])
    finally:
        signal.signal(signal.SIGINT, previous)
    assert result.stdout.strip() == "True"
