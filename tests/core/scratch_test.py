"""Private temp dirs that a SIGTERM cannot leave behind, even one that arrives while they are removed."""
from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest

from mlci.core import scratch, signals


def test_a_sigterm_during_the_removal_waits_for_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The GitOps clone was left in TMPDIR 4 times out of 4 when SIGTERM came as `mlci promote` cleaned up:
    the signal's exception cut the rmtree short. It is delivered once the directory is gone."""
    real = shutil.rmtree
    seen: list[bool] = []

    def interrupted(path: Path, ignore_errors: bool = False) -> None:
        real(path / "half", ignore_errors=ignore_errors)
        signal.raise_signal(signal.SIGTERM)  # in the middle of the removal
        seen.append(path.exists())
        real(path, ignore_errors=ignore_errors)

    monkeypatch.setattr(scratch.shutil, "rmtree", interrupted)
    with signals.sigterm_raises(), pytest.raises(signals.Terminated):
        with scratch.scratch_dir("mlci-test-", tmp_path) as made:
            (made / "half").mkdir()
            (made / "half" / "f").write_text("x")
            (made / "rest").write_text("y")
    assert seen == [True]  # the removal went on after the signal
    assert list(tmp_path.iterdir()) == []


def test_the_directory_is_private_and_gone_after_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), scratch.scratch_dir("mlci-test-", tmp_path) as made:
        assert made.parent == tmp_path and made.name.startswith("mlci-test-")
        assert made.stat().st_mode & 0o777 == 0o700
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
