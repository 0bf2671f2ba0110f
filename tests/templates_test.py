"""The CI templates: valid against GitLab's and GitHub's schemas (offline), and thin."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.testing.repos import ROOT

CHECK = [str(Path(sys.executable).parent / "check-jsonschema")]


@pytest.mark.parametrize("schema, files, extra", [
    ("vendor.gitlab-ci", [".gitlab-ci/mlci.yml", "example-model-repo/.gitlab-ci.yml"],
     ["--data-transform", "gitlab-ci"]),
    ("vendor.github-workflows", [".github/workflows/mlci.yml"], []),
])
def test_templates_match_the_forge_schemas(schema: str, files: list[str], extra: list[str]) -> None:
    done = subprocess.run([*CHECK, "--builtin-schema", schema, *extra, *files], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_gitlab_job_runs_one_mlci_command() -> None:
    jobs = yaml.safe_load((ROOT / ".gitlab-ci" / "mlci.yml").read_text())
    scripts = {name: job["script"] for name, job in jobs.items() if isinstance(job, dict) and "script" in job}
    assert set(scripts) == {".mlci-config-check", ".mlci-train", ".mlci-data-test", ".mlci-report", ".mlci-build"}
    for name, script in scripts.items():
        assert len(script) == 1 and script[0].startswith("mlci "), name
        assert "after_script" not in jobs[name]  # gitlab-ci-local drops artifacts after an after_script


def test_every_github_step_that_runs_is_one_mlci_command() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "mlci.yml").read_text())
    runs = [step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step]
    assert len(runs) == 4 and all(r.startswith("mlci ") and "\n" not in r.strip() for r in runs)
