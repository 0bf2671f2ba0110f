"""Running scripts/build-job-image and ci/job-image/lock.py as a release manager does (subprocesses)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.testing.repos import ROOT

SCRIPT = Path("scripts") / "build-job-image"
LOCK_PY = ROOT / "ci" / "job-image" / "lock.py"


def script_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test's environment without the CI variables the script reads, plus `extra`; the build's Python is this
    venv's (it has mlci's pinned dependencies)."""
    drop = ("CI_REGISTRY", "CI_PROJECT_URL", "GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "MLCI_JOB_IMAGE_BASE",
            "MLCI_DEBIAN_MIRROR", "SOURCE_DATE_EPOCH")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("MLCI_IMAGE_")}
    return {**env, "MLCI_PYTHON": sys.executable, **(extra or {})}


def build_job_image(checkout: Path, *args: str, env: dict[str, str] | None = None
                    ) -> subprocess.CompletedProcess[str]:
    """`scripts/build-job-image ARGS` of `checkout`."""
    return subprocess.run([str(checkout / SCRIPT), *args], cwd=checkout, capture_output=True, text=True,
                          env=script_env(env), check=False, timeout=900)


def lock_py(*args: str) -> subprocess.CompletedProcess[str]:
    """`python ci/job-image/lock.py ARGS` of this checkout."""
    return subprocess.run([sys.executable, str(LOCK_PY), *args], capture_output=True, text=True, check=False)
