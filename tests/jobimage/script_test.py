"""scripts/build-job-image's argument handling and ci/job-image's lock, without building anything (offline, fast).
The buildah variant is a release step that needs a Debian mirror: only what it refuses before reaching one is
tested here (docs/job-image.md says what was tried by hand)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.jobimage.support import build_job_image, lock_py
from tests.testing.repos import ROOT


@pytest.mark.parametrize(("args", "env", "message"), [
    ([], {}, "--dest REPO is required (or CI_REGISTRY"),
    (["--dest", "oci:/tmp/x"], {}, "--base REF is required (or MLCI_JOB_IMAGE_BASE)"),
    (["--base", "oci:/tmp/b"], {"CI_REGISTRY": "registry.bank.example"}, ""),  # dest from CI_REGISTRY: then the wheels
    (["--variant", "kaniko"], {}, "--variant kaniko: expected plain or buildah"),
    (["--colour", "blue"], {}, "unknown argument --colour"),
    (["--dest"], {}, "--dest needs a value"),
    (["--base", ""], {}, "--base needs a value"),
    (["--dest", "oci:/tmp/x", "--base", "oci:/tmp/b", "--wheels", "/nonexistent/wheels"], {},
     "--wheels /nonexistent/wheels: not a directory"),
    (["--variant", "buildah", "--dest", "oci:/tmp/x"], {}, "--variant buildah needs --debian-mirror URL"),
    (["--variant", "buildah", "--dest", "oci:/tmp/x", "--debian-mirror", "ftp://mirror'; rm -rf /"], {},
     "expected an http(s) URL"),
    (["--variant", "buildah", "--dest", "oci:/tmp/x", "--debian-mirror", "http://127.0.0.1:9/debian"], {},
     "--from REF is required (the plain job image), or CI_REGISTRY"),
])
def test_refusals_are_exit_2_with_one_line(args: list[str], env: dict[str, str], message: str, tmp_path: Path) -> None:
    env = {**env, "MLCI_DEBIAN_MIRROR": ""}
    if args == ["--base", "oci:/tmp/b"]:  # the default destination is taken: the next refusal is the wheels dir
        args = [*args, "--wheels", str(tmp_path / "none")]
        message = f"--wheels {tmp_path / 'none'}: not a directory"
    done = build_job_image(ROOT, *args, env=env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("build-job-image: ") and message in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1 and done.stdout == ""


def test_help_names_both_variants() -> None:
    done = build_job_image(ROOT, "--help")
    assert done.returncode == 0
    assert "--variant buildah --debian-mirror URL" in done.stdout and "--base REF" in done.stdout


def test_the_lock_is_what_the_constraints_say(tmp_path: Path) -> None:
    """requirements.lock holds exactly requirements.in's closure at ci/constraints.txt's pins, each hashed; a pin
    moved in the lock (or one entry dropped) is reported by name."""
    done = lock_py("check")
    assert done.returncode == 0, done.stderr
    lock = (ROOT / "ci" / "job-image" / "requirements.lock").read_text()
    assert "\ntrivy-py-ecc==0.76.0.1 \\\n    --hash=sha256:" in lock and "\ndvc==3.67.1 \\\n" in lock
    stale = tmp_path / "stale.lock"
    stale.write_text(lock.replace("\ndvc==3.67.1 \\\n", "\ndvc==3.66.0 \\\n").replace("\nrich==", "\n# rich=="))
    done = lock_py("check", "--lock", str(stale))
    assert done.returncode == 1
    assert "dvc: the lock has 3.66.0, the constraints say 3.67.1" in done.stderr, done.stderr
    assert "rich: the lock has nothing, the constraints say 15.0.0" in done.stderr, done.stderr
