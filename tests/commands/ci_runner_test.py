"""Conditions of CI runners that the commands meet: a cache directory that cannot be written (a read-only
HOME, a cache path that is not a directory). mlci's caches are hints: never a failed job."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlci.dvcstage import dvc
from tests.testing import repos


def test_an_unwritable_cache_dir_leaves_dvcs_site_cache_where_dvc_puts_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / ".dvc").mkdir()
    (tmp_path / "a-file").write_text("")
    monkeypatch.delenv("DVC_SITE_CACHE_DIR")
    monkeypatch.setenv("MLCI_CACHE_DIR", str(tmp_path / "a-file" / "cache"))  # as a read-only HOME would
    with caplog.at_level(logging.WARNING, logger="mlci"):
        assert dvc.dvc_env(tmp_path) == {"DVC_NO_ANALYTICS": "1"}  # (before: the DVC API raised, exit 70)
    assert [r.getMessage() for r in caplog.records] == [
        f"mlci: warning: cannot write mlci's cache dir {tmp_path}/a-file/cache/dvc-site (not a directory): DVC's "
        "site cache stays in its default place; set MLCI_CACHE_DIR to a writable directory"]


def test_an_unwritable_cache_dir_is_a_warning_for_build(tmp_path: Path) -> None:
    repo = repos.tiny_dvc_repo(tmp_path / "repo", repos.ONE_STAGE, {"make.py": repos.MAKE})
    (tmp_path / "a-file").write_text("")
    env = {**os.environ, "MLCI_CACHE_DIR": str(tmp_path / "a-file" / "cache"), "MLCI_IMAGE_CODE": "make.py",
           "MLCI_IMAGE_NAME": f"oci:{tmp_path / 'layout'}", "MLCI_LOG_FILE": str(tmp_path / "crash.log")}
    done = subprocess.run([sys.executable, "-m", "mlci", "build", "--tag", "t1"], cwd=repo, capture_output=True,
                          text=True, env=env, check=False, timeout=120)
    assert done.returncode == 0, done.stderr  # (before: exit 2, "cannot write .../file-hashes.json")
    assert done.stderr.count("set MLCI_CACHE_DIR to a writable directory") == 1
    assert not (tmp_path / "crash.log").exists()
