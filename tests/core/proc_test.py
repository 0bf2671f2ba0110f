from __future__ import annotations

import sys

import pytest

from mlci.core import log, proc
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
