"""mlci/ is fully typed: mypy --strict (configured in pyproject.toml) must pass."""
from __future__ import annotations

import subprocess
import sys

from tests.testing.repos import ROOT


def test_mypy_strict_passes() -> None:
    done = subprocess.run([sys.executable, "-m", "mypy", "mlci"], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
