"""The two include forms through the pinned gitlab-ci-local 4.73.0 (previews and job lists only; the e2e tests
run pipelines): the example repo with the plain `include: project:` (from a seeded include cache) and the
templates project with `include: component:` (gitlab-ci-local resolves a component locally when the project
path is the git remote's and the ref is the HEAD sha) render the same jobs, for the default inputs and for
non-default inputs given as inputs vs as variables; the per-stage components add up to ml-pipeline; and the
job lists of each pipeline kind are the contract's."""
from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.testing import repos
from tests.testing.gitlab_ci_local import (
    GitlabCiLocalUnavailable,
    gcl_executable,
    git_commit_all,
    list_jobs,
    make_git_repo,
    seed_project_include,
    state_dir,
)

PROJECT, REF = "mlci/mlci", "v0.1.0"
PLAIN_INCLUDE = {"project": PROJECT, "ref": REF, "file": "/.gitlab-ci/ml-pipeline.gitlab-ci.yml"}
NON_DEFAULT: dict[str, str | bool | int] = {
    "ci-image": "registry.bank.internal/mirror/mlci/ci@sha256:" + "ab" * 32, "stage-environment": "uat",
    "prod-environment": "production", "data-test": False, "scan": False, "report": False,
    "report-git-depth": 50}
VARIABLE = {"ci-image": "MLCI_CI_IMAGE", "stage-environment": "MLCI_STAGE_ENVIRONMENT",
            "prod-environment": "MLCI_PROD_ENVIRONMENT", "data-test": "MLCI_RUN_DATA_TEST", "scan": "MLCI_RUN_SCAN",
            "report": "MLCI_RUN_REPORT", "report-git-depth": "MLCI_MR_GIT_DEPTH"}


def _as_variable(value: str | bool | int) -> str:
    """An input's value as the plain include's CI variable (a string: a boolean input is true/false)."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)
STAGES = ["validate", "train", "test", "build", "scan", "report", "promote"]
# The contract of issue 13: the jobs each pipeline kind runs (and how).
CONNECTED = ["mlci-config-check", "mlci-train", "mlci-build", "mlci-scan"]
KINDS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "merge-request": ({"CI_PIPELINE_SOURCE": "merge_request_event", "CI_COMMIT_BRANCH": "",
                       "CI_MERGE_REQUEST_IID": "3"},
                      {**dict.fromkeys(CONNECTED, "on_success"), "mlci-data-test": "on_success",
                       "mlci-report": "on_success"}),
    "default-branch": ({"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "main"},
                       {**dict.fromkeys(CONNECTED, "on_success"), "mlci-promote-stage": "on_success"}),
    "tag": ({"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "", "CI_COMMIT_TAG": "v1.0.0"},
            {**dict.fromkeys(CONNECTED, "on_success"), "mlci-promote-prod": "manual"}),
    "inside-tag": ({"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "", "CI_COMMIT_TAG": "v1.0.0",
                    "MLCI_AIRGAP_SIDE": "inside"}, {"mlci-bundle-import": "manual"}),
    "inside-default-branch": ({"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "main",
                               "MLCI_AIRGAP_SIDE": "inside"}, {}),
    "feature-branch": ({"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "feature"}, {}),
}


@pytest.fixture(scope="module")
def gcl() -> Path:
    try:
        return gcl_executable()
    except GitlabCiLocalUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


def _write_pipeline(repo: Path, pipeline: dict[str, Any]) -> None:
    """The pipeline file is read from the work tree: it need not be committed (a component's ref is HEAD)."""
    (repo / ".gitlab-ci.yml").write_text(yaml.safe_dump(pipeline, sort_keys=False))


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory, gcl: Path) -> Path:
    """The example model repo including the pipeline from mlci/mlci@v0.1.0, seeded as the e2e tests do."""
    repo = repos.example_repo(tmp_path_factory.mktemp("plain") / "credit-model")
    seed_project_include(repo, None, PROJECT, REF,
                         {f".gitlab-ci/{p.name}": p for p in (repos.ROOT / ".gitlab-ci").glob("*.yml")})
    return repo


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory, gcl: Path) -> tuple[Path, str]:
    """The example's files in a repo whose remote is the templates project, with templates/ committed."""
    root = tmp_path_factory.mktemp("component") / "mlci"
    shutil.copytree(repos.EXAMPLE, root, ignore=shutil.ignore_patterns("data", "model", "cache", "tmp"))
    shutil.copytree(repos.ROOT / "templates", root / "templates")
    repo = make_git_repo(root, remote_url=f"https://gitlab.example.com/{PROJECT}.git")
    return repo, git_commit_all(repo, "templates")


def _component(name: str, sha: str, inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"component": f"$CI_SERVER_FQDN/{PROJECT}/{name}@{sha}"}
    if inputs:
        entry["inputs"] = inputs
    return entry


def _preview(gcl: Path, repo: Path) -> dict[str, Any]:
    done = subprocess.run([str(gcl), "--no-color", "--home", str(state_dir(repo) / "home"), "--preview",
                           "--no-json-schema-validation"], cwd=repo, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    rendered: dict[str, Any] = yaml.safe_load(done.stdout)
    return rendered


@pytest.mark.parametrize("inputs", [{}, NON_DEFAULT], ids=["default-inputs", "non-default-inputs"])
def test_the_component_renders_the_jobs_of_the_plain_include(
        gcl: Path, plain: Path, templates: tuple[Path, str], inputs: dict[str, str | bool | int]) -> None:
    repo, sha = templates
    _write_pipeline(plain, {"include": [PLAIN_INCLUDE], **(
        {"variables": {VARIABLE[k]: _as_variable(v) for k, v in inputs.items()}} if inputs else {})})
    _write_pipeline(repo, {"include": [_component("ml-pipeline", sha, inputs)]})
    from_plain, from_component = _preview(gcl, plain), _preview(gcl, repo)
    assert from_component == from_plain
    assert [s for s in from_plain["stages"] if not s.startswith(".")] == STAGES
    jobs = {k for k, v in from_plain.items() if isinstance(v, dict) and "script" in v}
    assert jobs == {"mlci-config-check", "mlci-train", "mlci-data-test", "mlci-build", "mlci-scan", "mlci-report",
                    "mlci-promote-stage", "mlci-promote-prod", "mlci-bundle-import"}
    expected = {**{VARIABLE[k]: _as_variable(v["default"]) for k, v in _ml_pipeline_spec().items()}, **{
        VARIABLE[k]: _as_variable(v) for k, v in inputs.items()}}
    assert {k: from_plain["variables"][k] for k in expected} == expected
    assert from_plain["mlci-promote-stage"]["environment"]["name"] == "$MLCI_STAGE_ENVIRONMENT"


def _refused(gcl: Path, repo: Path) -> str:
    """gitlab-ci-local's output for a pipeline it refuses to render (it must exit non-zero)."""
    done = subprocess.run([str(gcl), "--no-color", "--home", str(state_dir(repo) / "home"), "--preview",
                           "--no-json-schema-validation"], cwd=repo, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode != 0
    return done.stdout + done.stderr


def _ml_pipeline_spec() -> dict[str, Any]:
    spec: dict[str, Any] = next(yaml.safe_load_all((repos.ROOT / "templates" / "ml-pipeline.yml").read_text()))
    return dict(spec["spec"]["inputs"])


def test_the_component_refuses_an_input_its_spec_does_not_allow(
        gcl: Path, templates: tuple[Path, str]) -> None:
    repo, sha = templates
    _write_pipeline(repo, {"include": [_component("ml-pipeline", sha, {"stage-environment": "Stage; rm -rf /"})]})
    assert "`stage-environment` input: `Stage; rm -rf /` does not match required regex" in _refused(gcl, repo)


def test_the_per_stage_components_add_up_to_ml_pipeline(gcl: Path, templates: tuple[Path, str]) -> None:
    repo, sha = templates
    _write_pipeline(repo, {"include": [_component("ml-pipeline", sha)]})
    whole = _preview(gcl, repo)
    names = ["config-check", "train", "data-test", "build", "scan", "report", "promote", "bundle-import"]
    _write_pipeline(repo, {"stages": STAGES, "workflow": whole["workflow"],
                           "include": [_component(n, sha) for n in names]})
    parts = _preview(gcl, repo)
    assert parts == whole
    # bundle-export is not in ml-pipeline: on its own, in a stage of the user's, after build and scan.
    _write_pipeline(repo, {"stages": ["build", "scan", "release"], "include": [
        _component("build", sha), _component("scan", sha), _component("bundle-export", sha, {"stage": "release"})]})
    export = _preview(gcl, repo)["mlci-bundle-export"]
    assert export["stage"] == "release" and export["script"] == ["mlci bundle export"]
    assert export["environment"] == {"name": "$MLCI_PROD_ENVIRONMENT", "action": "prepare"}


def test_the_needs_input_points_the_per_stage_jobs_at_the_users_own(gcl: Path, templates: tuple[Path, str]) -> None:
    """An array input: a pipeline that builds and scans under its own job names gives them to `needs` (with
    `stage` beside it); a value that is not an array is refused."""
    repo, sha = templates
    own = [{"job": "build-model", "artifacts": True}, {"job": "scan-model", "artifacts": False}]
    users = {"build-model": {"stage": "build", "script": ["mlci build --dotenv mlci-build.env"]},
             "scan-model": {"stage": "scan", "script": ["mlci scan"]}}
    _write_pipeline(repo, {"stages": ["build", "scan", "promote", "release"], **users, "include": [
        _component("promote", sha, {"needs": own}),
        _component("bundle-export", sha, {"stage": "release", "needs": own[:1]})]})
    rendered = _preview(gcl, repo)
    for name, wanted in (("mlci-promote-stage", own), ("mlci-promote-prod", own), ("mlci-bundle-export", own[:1])):
        assert [{k: v for k, v in need.items() if k != "optional"} for need in rendered[name]["needs"]] == wanted
    assert rendered["mlci-bundle-export"]["stage"] == "release"
    _write_pipeline(repo, {"include": [_component("promote", sha, {"needs": "build-model"})]})
    assert "`needs` input: provided value is not a array" in _refused(gcl, repo)


@pytest.mark.parametrize("kind", KINDS)
def test_each_pipeline_kind_runs_the_contracts_jobs_in_both_forms(
        gcl: Path, plain: Path, templates: tuple[Path, str], kind: str) -> None:
    variables, expected = KINDS[kind]
    repo, sha = templates
    _write_pipeline(plain, {"include": [PLAIN_INCLUDE]})
    _write_pipeline(repo, {"include": [_component("ml-pipeline", sha)]})
    # gitlab-ci-local sets CI_COMMIT_BRANCH from git; a tag or MR pipeline has it empty (GitLab: unset).
    env = {"GCL_IGNORE_PREDEFINED_VARS": ",".join(variables)}
    with ThreadPoolExecutor(2) as pool:
        lists = list(pool.map(lambda form: list_jobs(form, variables=variables, env=env), (plain, repo)))
    for form, listed in zip((plain, repo), lists, strict=True):
        runs = {str(j["name"]): str(j["when"]) for j in listed if j["when"] != "never"}
        assert runs == expected, f"{kind} ({form.name}): {runs}"
        stages = {str(j["name"]): j["stage"] for j in listed}
        assert stages["mlci-data-test"] == "test" and stages["mlci-promote-prod"] == "promote"


def test_the_boolean_inputs_leave_their_jobs_out_in_both_forms(
        gcl: Path, plain: Path, templates: tuple[Path, str]) -> None:
    """`data-test: false`, `scan: false`, `report: false` as inputs, and as the plain include's variables."""
    variables, expected = KINDS["merge-request"]
    off = {"data-test": False, "scan": False, "report": False}
    repo, sha = templates
    _write_pipeline(plain, {"include": [PLAIN_INCLUDE], "variables": {VARIABLE[k]: _as_variable(v)
                                                                     for k, v in off.items()}})
    _write_pipeline(repo, {"include": [_component("ml-pipeline", sha, off)]})
    env = {"GCL_IGNORE_PREDEFINED_VARS": ",".join(variables)}
    with ThreadPoolExecutor(2) as pool:
        lists = list(pool.map(lambda form: list_jobs(form, variables=variables, env=env), (plain, repo)))
    left = {k: v for k, v in expected.items() if k not in ("mlci-data-test", "mlci-scan", "mlci-report")}
    for form, listed in zip((plain, repo), lists, strict=True):
        assert {str(j["name"]): str(j["when"]) for j in listed if j["when"] != "never"} == left, form.name
