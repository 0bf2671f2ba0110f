"""Self-test of the gitlab-ci-local harness against the real, pinned gitlab-ci-local."""

from __future__ import annotations

import os
import re
import stat
import time
from pathlib import Path

import pytest

from .gitlab_ci_local import (
    DEFAULT_REMOTE_URL,
    GCL_VERSION,
    INSTALL_SCRIPT,
    GitlabCiLocalUnavailable,
    gcl_executable,
    gitlab_remote,
    include_cache_dir,
    list_jobs,
    make_git_repo,
    parse_remote_url,
    run_pipeline,
    safe_job_name,
    seed_artifacts,
    seed_project_include,
    state_dir,
)

INCLUDE_PROJECT = "mlci/mlci"
INCLUDE_REF = "v0.1.0"

# The "mlci/mlci" project as it would be at tag v0.1.0: the base file includes a
# sibling file with include:local, which gitlab-ci-local maps to the same project/ref.
MLCI_PROJECT_FILES = {
    ".gitlab-ci/mlci-base.yml": """\
include:
  - local: /.gitlab-ci/mlci-extra.yml
.mlci-base:
  variables:
    FROM_TEMPLATE: "template-var"
  before_script:
    - echo "mlci-base before_script ran"
""",
    ".gitlab-ci/mlci-extra.yml": """\
.mlci-extra:
  script:
    - echo "mlci-extra script ran"
""",
}

PIPELINE = """\
include:
  - project: 'mlci/mlci'
    ref: 'v0.1.0'
    file: '/.gitlab-ci/mlci-base.yml'

stages: [build, test, deploy]

variables:
  GREETING: from-yaml

prepare:
  extends: .mlci-base
  stage: build
  script:
    - echo "GREETING=$GREETING FROM_TEMPLATE=$FROM_TEMPLATE HOST_ONLY=$HOST_ONLY"
    - mlci-probe
    - test ! -e untracked.txt && echo "untracked file not visible"
    - mkdir -p out && echo "payload-$GREETING" > out/data.txt
    - echo "prepare-marker"
  artifacts:
    paths: [out/]

consume:
  stage: test
  image: registry.example.com/mlci/runner:1.0  # ignored: --force-shell-executor
  needs: [prepare]
  script:
    - cat out/data.txt
    - echo "consume-marker"

boom:
  stage: test
  script:
    - echo "boom-marker"
    - exit 4

tolerated:
  stage: test
  allow_failure: true
  script:
    - exit 3

from_extra:
  extends: .mlci-extra
  stage: test

publish:
  stage: deploy
  script:
    - echo "publish-marker"

by_hand:
  stage: deploy
  when: manual
  script:
    - echo "by-hand-marker"
"""


@pytest.fixture(scope="module")
def gcl() -> Path:
    """The pinned gitlab-ci-local, or skip when .ci/install-gitlab-ci-local.sh has not run."""
    try:
        return gcl_executable()
    except GitlabCiLocalUnavailable as exc:
        pytest.skip(str(exc))


def _probe_bin(tmp_path: Path) -> Path:
    """A bin dir with an `mlci-probe` tool, standing in for a venv's bin."""
    bin_dir = tmp_path / "venv-bin"
    bin_dir.mkdir()
    probe = bin_dir / "mlci-probe"
    probe.write_text("#!/bin/sh\necho probe-on-path\n")
    probe.chmod(probe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return bin_dir


def _seeded_repo(path: Path, *, remote_url: str = DEFAULT_REMOTE_URL, pipeline: str = PIPELINE) -> Path:
    """A committed repo whose project include is served from the seeded cache."""
    repo = make_git_repo(path, {".gitlab-ci.yml": pipeline}, remote_url=remote_url)
    seed_project_include(repo, None, INCLUDE_PROJECT, INCLUDE_REF, MLCI_PROJECT_FILES)
    return repo


def test_pipeline_statuses_logs_artifacts_and_env(gcl: Path, tmp_path: Path) -> None:
    repo = _seeded_repo(tmp_path / "repo")
    (repo / "untracked.txt").write_text("not committed\n")
    bin_dir = _probe_bin(tmp_path)
    result = run_pipeline(
        repo,
        env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HOST_ONLY": "host-value"},
        variables={"GREETING": "from-cli"},
        timeout=120,
    )
    why = result.describe()

    assert result.returncode == 1, why
    statuses = {name: job.status for name, job in result.jobs.items()}
    assert statuses == {
        "prepare": "success",
        "consume": "success",
        "boom": "failed",
        "tolerated": "warning",
        "from_extra": "success",
        "publish": "skipped",
        "by_hand": "manual",
    }, why
    assert result.job("boom").exit_code == 4
    assert result.job("tolerated").exit_code == 3 and result.job("tolerated").allow_failure
    assert result.job("prepare").exit_code == 0
    assert result.job("publish").exit_code is None and result.job("publish").log == ""
    assert result.failed_jobs == ["boom"]

    prepare_log = result.job("prepare").log
    assert "mlci-base before_script ran" in prepare_log  # hidden job from the project include
    # --variable beats YAML; template variables and host env reach the shell job.
    assert "GREETING=from-cli FROM_TEMPLATE=template-var HOST_ONLY=host-value" in prepare_log
    assert "probe-on-path" in prepare_log  # env PATH reaches the job
    assert "untracked file not visible" in prepare_log  # --shell-isolation copies tracked files only
    assert "boom-marker" not in prepare_log  # each log is that job's own
    assert "boom-marker" in result.job("boom").log
    assert "mlci-extra script ran" in result.job("from_extra").log  # nested include:local in the project

    # Artifacts travel prepare -> consume through gitlab-ci-local, not through the repo.
    assert "payload-from-cli" in result.job("consume").log, why
    assert (result.artifacts_dir("prepare") / "out" / "data.txt").read_text() == "payload-from-cli\n"
    assert not (repo / "out").exists()
    assert "FAIL 4" in result.output


def test_unseeded_project_include_fails_fast_without_network(gcl: Path, tmp_path: Path) -> None:
    repo = make_git_repo(tmp_path / "repo", {".gitlab-ci.yml": PIPELINE})
    started = time.monotonic()
    result = run_pipeline(repo, timeout=60)
    assert time.monotonic() - started < 20
    assert result.returncode == 1
    assert result.jobs == {}
    assert "Project include could not be fetched" in result.output
    assert "transport 'https' not allowed" in result.output  # GIT_ALLOW_PROTOCOL=file guard


@pytest.mark.parametrize(
    "remote_url",
    [
        "https://gitlab.example.com/bank/credit-model.git",
        "https://gitlab.example.com:8443/bank/credit-model",
        "ssh://git@gitlab.example.com:2222/bank/credit-model.git",
        "git@gitlab.example.com:bank/credit-model.git",
    ],
)
def test_include_cache_host_comes_from_origin_remote(gcl: Path, tmp_path: Path, remote_url: str) -> None:
    repo = _seeded_repo(tmp_path / "repo", remote_url=remote_url)
    assert gitlab_remote(repo).host == "gitlab.example.com"
    assert gitlab_remote(repo).path == "bank/credit-model"
    cached = include_cache_dir(repo, "gitlab.example.com", INCLUDE_PROJECT, INCLUDE_REF)
    assert (cached / ".gitlab-ci/mlci-base.yml").is_file()
    names = [job["name"] for job in list_jobs(repo)]  # resolving includes would fail if unseeded
    assert "prepare" in names and "from_extra" in names


def test_only_selected_jobs_run(gcl: Path, tmp_path: Path) -> None:
    repo = _seeded_repo(tmp_path / "repo")
    path = f"{_probe_bin(tmp_path)}{os.pathsep}{os.environ['PATH']}"
    result = run_pipeline(repo, jobs=["consume"], needs=True, env={"PATH": path})
    why = result.describe()
    assert result.returncode == 0, why
    assert result.job("prepare").status == "success", why
    assert result.job("consume").status == "success", why
    assert "payload-from-yaml" in result.job("consume").log, why
    assert result.job("boom").status == "skipped"


HANDED_ON = """\
stages: [build, use]
make:
  stage: build
  script:
    - echo "IMAGE=built-here" > made.env
    - echo made > made.txt
  artifacts:
    reports:
      dotenv: made.env
    paths: [made.txt]
use:
  stage: use
  needs: [make]
  script:
    - echo "image=$IMAGE file=$(cat made.txt)"
"""


def test_a_job_runs_alone_from_prepared_artifacts_and_another_pipeline_file(gcl: Path, tmp_path: Path) -> None:
    """seed_artifacts stands in for the job that was not run: its files and its dotenv report reach the job run
    alone (keep_artifacts keeps them through the clean); ci_file runs another pipeline file than .gitlab-ci.yml."""
    repo = make_git_repo(tmp_path / "repo", {".gitlab-ci.yml": "never-read: [\n"})  # not the file that runs
    form = state_dir(repo) / "other.gitlab-ci.yml"
    form.parent.mkdir(parents=True, exist_ok=True)
    form.write_text(HANDED_ON)
    seed_artifacts(repo, "make", {"made.env": "IMAGE=prepared\n", "made.txt": "by-the-test\n"}, dotenv="made.env")
    result = run_pipeline(repo, jobs=["use"], keep_artifacts=True, ci_file=".gitlab-ci-local/other.gitlab-ci.yml")
    assert result.returncode == 0, result.describe()
    assert result.job("make").status == "skipped", result.describe()
    assert "image=prepared file=by-the-test" in result.job("use").log, result.job("use").log
    with pytest.raises(ValueError, match="not one of the files"):
        seed_artifacts(repo, "make", {"made.txt": "x"}, dotenv="made.env")


def test_gotcha_after_script_drops_untracked_outputs_under_shell_isolation(gcl: Path, tmp_path: Path) -> None:
    """gitlab-ci-local 4.73.0 re-rsyncs the build copy before after_script, deleting script outputs.

    So under --shell-isolation a job with any after_script exports no artifacts.
    If this starts failing after an upgrade, the quirk is fixed: update the note.
    """
    pipeline = """\
make:
  script: [mkdir -p out, echo hi > out/f]
  after_script: [echo after, exit 5]
  artifacts:
    paths: [out/]
"""
    repo = make_git_repo(tmp_path / "repo", {".gitlab-ci.yml": pipeline})
    result = run_pipeline(repo)
    assert result.job("make").status == "success", result.describe()
    assert result.job("make").after_script_exit_code == 5  # reported, but the job still passes
    assert "after" in result.job("make").log
    assert not (result.artifacts_dir("make") / "out" / "f").exists()
    assert "no artifacts was copied" in result.output


def test_remote_url_parsing_and_safe_names() -> None:
    assert parse_remote_url("https://user:tok@gitlab.example.com:8443/a/b/c.git").host == "gitlab.example.com"
    assert parse_remote_url("https://gitlab.example.com:8443/a/b/c.git").path == "a/b/c"
    assert parse_remote_url(None).host == "gitlab.com"  # gitlab-ci-local's fallback
    assert safe_job_name("make it: 1/2") == "makeIAitOiA1Lw2"
    assert safe_job_name("train-model_v2") == "train-model_v2"


def test_install_script_pins_the_same_version() -> None:
    pinned = re.search(r'^GCL_VERSION="([^"]+)"$', INSTALL_SCRIPT.read_text(), re.MULTILINE)
    assert pinned is not None and pinned.group(1) == GCL_VERSION
