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
GITLAB_HIDDEN = ROOT / ".gitlab-ci" / "mlci.yml"
# Every generated GitLab file (scripts/ci-templates); a component's jobs are its second YAML document.
GITLAB_FILES = [GITLAB_HIDDEN, ROOT / ".gitlab-ci" / "ml-pipeline.gitlab-ci.yml",
                *sorted((ROOT / "templates").glob("*.yml"))]
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
    # The components' jobs documents: tests/ci/schema_test.py.
    ("vendor.gitlab-ci", [".gitlab-ci/mlci.yml", ".gitlab-ci/ml-pipeline.gitlab-ci.yml",
                          "example-model-repo/.gitlab-ci.yml"],
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


def _gitlab_jobs(path: Path) -> dict[str, Any]:
    jobs: dict[str, Any] = list(yaml.safe_load_all(path.read_text()))[-1]
    return jobs


def _merged(jobs: dict[str, Any], name: str) -> dict[str, Any]:
    """A job with what it extends (one level of keys is enough for script and after_script)."""
    job = jobs[name]
    parent = _merged(jobs, job["extends"]) if "extends" in job else {}
    return {**parent, **job}


@pytest.mark.parametrize("path", GITLAB_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_gitlab_job_runs_one_mlci_command(path: Path) -> None:
    jobs = _gitlab_jobs(path)
    runnable = [name for name, job in jobs.items() if isinstance(job, dict) and name not in (
        "variables", "workflow", "stages", "spec") and (name != ".mlci-base")]
    assert runnable
    for name in runnable:
        job = _merged(jobs, name)
        assert len(job["script"]) == 1 and job["script"][0].startswith("mlci "), f"{path.name}: {name}"
        assert "after_script" not in job, name  # gitlab-ci-local drops artifacts after an after_script
        assert "before_script" not in job, name


def test_the_hidden_jobs_are_the_contracts() -> None:
    jobs = _gitlab_jobs(GITLAB_HIDDEN)
    assert {n for n in jobs if n.startswith(".")} - {".mlci-base"} == {
        ".mlci-config-check", ".mlci-train", ".mlci-data-test", ".mlci-report", ".mlci-build", ".mlci-scan",
        ".mlci-promote", ".mlci-bundle-export", ".mlci-bundle-import"}


def test_every_github_step_that_runs_is_one_mlci_command() -> None:
    runs = [run for path in WORKFLOWS for _, run in _run_steps(path)]
    assert runs and all(r.startswith("mlci ") and "\n" not in r.strip() for r in runs)


def test_the_github_workflow_has_every_gitlab_job_and_hands_on_the_image() -> None:
    gitlab = {name.removeprefix(".mlci-").removesuffix("-check"): job["script"][0].split()[1]
              for name, job in _gitlab_jobs(GITLAB_HIDDEN).items() if isinstance(job, dict) and "script" in job}
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


@pytest.mark.parametrize("path", GITLAB_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_gitlab_build_job_always_runs(path: Path) -> None:
    """`rules:` cannot read mlci.yaml: a rule on MLCI_IMAGE_NAME never builds a repo that sets image.name there.
    `mlci build` itself skips with success when no image is configured (the real job's rules name only the
    pipeline kinds)."""
    jobs = _gitlab_jobs(path)
    if ".mlci-build" not in jobs:
        return
    assert "rules" not in jobs[".mlci-build"] and "only" not in jobs[".mlci-build"]
    for job in (j for j in jobs.values() if isinstance(j, dict) and j.get("extends") == ".mlci-build"):
        assert all("IMAGE" not in rule.get("if", "") for rule in job["rules"])
