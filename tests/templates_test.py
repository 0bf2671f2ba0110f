"""The CI templates: valid against GitLab's and GitHub's schemas (offline), linted by actionlint, thin, and
free of expression interpolation inside scripts."""
from __future__ import annotations

import json
import os
import re
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
# mlci's own CI workflow is not shipped to users: it runs the project's test command, not one mlci command a step.
PROJECT_CI = ROOT / ".github" / "workflows" / "ci.yml"
SHIPPED = [path for path in WORKFLOWS if path != PROJECT_CI]
# The pipeline's jobs (THE CONTRACT of issue 13) -> the hidden GitLab job whose one mlci command each runs.
GITHUB_JOBS = {"config-check": ".mlci-config-check", "train": ".mlci-train", "data-test": ".mlci-data-test",
               "build": ".mlci-build", "scan": ".mlci-scan", "report": ".mlci-report",
               "promote-stage": ".mlci-promote", "promote-prod": ".mlci-promote",
               "bundle-import": ".mlci-bundle-import"}
PINNED = re.compile(r"^(?P<action>[\w.-]+/[\w.-]+(?:/[\w./-]+)?)@(?P<sha>[0-9a-f]{40})  # v\d+\.\d+\.\d+$")
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


def test_every_shipped_github_step_that_runs_is_one_mlci_command() -> None:
    """Every workflow but the project's own CI (exempt by name, PROJECT_CI) is shipped to users."""
    assert PROJECT_CI in WORKFLOWS and len(SHIPPED) == len(WORKFLOWS) - 1
    runs = [run for path in SHIPPED for _, run in _run_steps(path)]
    assert runs and all(r.startswith("mlci ") and "\n" not in r.strip() for r in runs)


def test_the_project_ci_workflow_runs_the_readme_test_command() -> None:
    workflow = _workflow(PROJECT_CI)
    assert set(workflow[True]) == {"push", "pull_request"}  # PyYAML reads the key `on` as True
    assert [run for _, run in _run_steps(PROJECT_CI)][-1] == "bash .ci/run"


def test_the_github_workflow_has_every_gitlab_job_and_hands_on_the_image() -> None:
    gitlab = {name: job["script"][0] for name, job in _gitlab_jobs(GITLAB_HIDDEN).items()
              if isinstance(job, dict) and "script" in job}
    workflow = _workflow(ROOT / ".github" / "workflows" / "mlci.yml")
    github = {job: run for path in SHIPPED for job, run in _run_steps(path)}
    assert set(github) == set(GITHUB_JOBS)  # the contract's jobs (the inside's import in its own workflow)
    for job, run in github.items():  # the same mlci command (and subcommand) as the GitLab job
        words = 3 if run.split()[1] == "bundle" else 2
        assert run.split()[:words] == gitlab[GITHUB_JOBS[job]].split()[:words], job
    build = workflow["jobs"]["build"]
    assert [s["run"] for s in build["steps"] if "run" in s] == ['mlci build --dotenv "$GITHUB_OUTPUT"']
    step_id = next(s["id"] for s in build["steps"] if "run" in s)
    # The dotenv keys `mlci build` writes (tests/commands/build_test.py) become the job's outputs.
    assert build["outputs"] == {"image": f"${{{{ steps.{step_id}.outputs.MLCI_IMAGE }}}}",
                                "digest": f"${{{{ steps.{step_id}.outputs.MLCI_IMAGE_DIGEST }}}}"}
    outputs = workflow[True]["workflow_call"]["outputs"]  # PyYAML reads the key `on` as True
    assert {k: v["value"] for k, v in outputs.items()} == {
        "image": "${{ jobs.build.outputs.image }}", "image-digest": "${{ jobs.build.outputs.digest }}",
        "promoted-image": "${{ jobs.promote-stage.outputs.image || jobs.promote-prod.outputs.image }}",
        "promoted-digest": "${{ jobs.promote-stage.outputs.digest || jobs.promote-prod.outputs.digest }}"}
    for job in ("promote-stage", "promote-prod"):  # the dotenv keys `mlci promote` writes
        promote = workflow["jobs"][job]
        step_id = next(s["id"] for s in promote["steps"] if "run" in s)
        assert promote["outputs"] == {"image": f"${{{{ steps.{step_id}.outputs.MLCI_PROMOTED_IMAGE }}}}",
                                      "digest": f"${{{{ steps.{step_id}.outputs.MLCI_PROMOTED_DIGEST }}}}"}


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


def _steps_using(path: Path) -> list[tuple[str, dict[Any, Any]]]:
    return [(name, step) for name, job in _workflow(path)["jobs"].items() for step in job.get("steps", [])
            if "uses" in step]


def test_every_action_is_pinned_by_commit_sha_with_its_version() -> None:
    """A tag can be moved; a commit cannot. `uses: owner/repo@<40 hex>  # vX.Y.Z`, on every workflow."""
    lines = [line.split("uses:", 1)[1].strip() for path in WORKFLOWS for line in path.read_text().splitlines()
             if line.strip().startswith(("uses:", "- uses:"))]
    assert lines and [line for line in lines if not PINNED.match(line)] == []
    shas: dict[str, set[str]] = {}
    for line in lines:
        found = PINNED.match(line)
        assert found
        shas.setdefault(found["action"], set()).add(found["sha"])
    assert all(len(pins) == 1 for pins in shas.values()), shas  # one version of each action


def test_every_shipped_job_runs_in_the_job_image_input() -> None:
    """The job image (GitLab's MLCI_CI_IMAGE) is an input, so it can point at an internal mirror; empty: the
    runner itself. Its default is this release's image, by version."""
    from mlci import __version__

    for path in SHIPPED:
        workflow = _workflow(path)
        assert "ci-image" in workflow[True]["workflow_call"]["inputs"], path.name
        for name, job in workflow["jobs"].items():
            assert job.get("container") == "${{ inputs.ci-image }}", f"{path.name}: {name}"
    default = _workflow(ROOT / ".github" / "workflows" / "mlci.yml")[True]["workflow_call"]["inputs"]["ci-image"]
    assert default["default"] == f"ghcr.io/mlci/mlci/ci:{__version__}"


def test_the_caches_are_keyed_on_the_lock_files() -> None:
    caches = [(job, step["with"]) for job, step in _steps_using(ROOT / ".github" / "workflows" / "mlci.yml")
              if step["uses"].startswith("actions/cache@")]
    assert {job for job, _ in caches} == {"train", "data-test", "build"}
    for job, spec in caches:
        assert spec["key"].startswith(f"mlci-{job}-${{{{ runner.os }}}}-${{{{ hashFiles(") and "dvc.lock" in spec["key"]
        assert spec["restore-keys"] == f"mlci-{job}-${{{{ runner.os }}}}-"
    build = dict(caches)["build"]
    assert "inputs.lock-files" in build["key"] and set(build["path"].split()) == {
        "~/.cache/pip", "~/.cache/mlci", ".dvc/cache"}


def test_every_shipped_action_has_an_offline_stand_in_for_act() -> None:
    """tests/e2e/github_test.py maps each standard action to tests/testing/actions/: one without a stand-in would
    make act reach for the network."""
    from tests.testing.act import check_offline, standin_mappings

    check_offline(SHIPPED, standin_mappings(SHIPPED))


def test_docs_github_tables_are_generated_from_the_workflows() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "github-docs"), "--check"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    text = (ROOT / "docs" / "github.md").read_text()
    assert text.count("<!-- /workflow -->") == text.count("<!-- workflow: ") == len(SHIPPED)  # every block closed
    for path in SHIPPED:
        assert f"<!-- workflow: {path.name} -->" in text
        call = _workflow(path)[True]["workflow_call"]
        for name in [*call["inputs"], *(call.get("secrets") or {}), *(call.get("outputs") or {})]:
            assert f"| `{name}` |" in text, name
