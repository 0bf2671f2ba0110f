"""Static checks over the whole tree: mypy --strict on mlci/ and ruff on everything (both configured in
pyproject.toml)."""
from __future__ import annotations

import subprocess
import sys

from tests.testing.repos import ROOT


def test_mypy_strict_passes() -> None:
    done = subprocess.run([sys.executable, "-m", "mypy", "mlci"], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_passes() -> None:
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=ROOT, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_core_imports_no_feature_package() -> None:
    """core/ is shared by every command; it may import only itself and the package root."""
    import ast

    offenders = []
    for path in sorted((ROOT / "mlci" / "core").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            offenders += [f"{path.name}: {n}" for n in names
                          if n.startswith("mlci.") and not n.startswith("mlci.core")]
    assert offenders == []
