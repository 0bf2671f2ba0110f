"""End to end: the example model repo's GitLab pipelines through gitlab-ci-local (`--shell-isolation`), with mlci's
whole pipeline pulled in by its one include line, a real `include: project:` resolved from a pre-seeded include
cache (and once as the `component:`).

One model repository, one dev registry, one GitLab stand-in and one DVC remote serve the whole module, as they
would a team: the merge request's pipeline trains, builds and scans once; the same commit's later pipelines (a
second run, the default branch after a fast-forward merge, the release tag) find everything done and skip it. The
failing variants run as the one job they concern, from prepared artifacts; one of them (a moved target tag) runs
as the whole default-branch pipeline, so the jobs before the failing one are seen to pass. The default branch's
pipelines run in a network namespace with nothing but loopback (tests/e2e/stage_inside.py)."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.world import (
    COMPONENT_FORM,
    DEV_INSIDE,
    INSIDE_NEXUS,
    INSIDE_REGISTRY,
    MR_BRANCH,
    MR_IID,
    NOTES,
    PROJECT_ID,
    STAGE_INSIDE,
    TOKEN,
    World,
    image_variables,
    made,
    mr_variables,
    seed_templates,
)
from tests.testing import repos, serving
from tests.testing.gitlab_ci_local import (
    JobResult,
    PipelineResult,
    artifacts_dir,
    run_pipeline,
    seed_artifacts,
    state_dir,
)
from tests.testing.gitremote import read_file
from tests.testing.registry import OCI_MANIFEST, Registry, blob_upload_count, plain_http, start_registry, stop_registry
from tests.testing.trivydb import PIP, Advisory, make_db

pytestmark = pytest.mark.e2e
MR_JOBS = {"mlci-config-check", "mlci-train", "mlci-data-test", "mlci-build", "mlci-scan", "mlci-report"}
DEFAULT_JOBS = {"mlci-config-check", "mlci-train", "mlci-build", "mlci-scan", "mlci-promote-stage"}
TAG_JOBS = {"mlci-config-check", "mlci-train", "mlci-build", "mlci-scan", "mlci-promote-prod"}
WRITES = ("POST", "PUT", "PATCH", "DELETE")
DIGEST = re.compile(r"MLCI_IMAGE_DIGEST=(sha256:[0-9a-f]{64})")


@dataclass
class Run:
    """A pipeline's result with its artifacts kept (the next run cleans gitlab-ci-local's own)."""

    result: PipelineResult
    artifacts: Path

    def job(self, name: str) -> JobResult:
        return self.result.job(name)

    def artifact(self, job: str, name: str) -> Path:
        return self.artifacts / artifacts_dir(Path("."), job).name / name

    def ran(self) -> set[str]:
        return {name for name, job in self.result.jobs.items() if job.started}


def _checkout(repo: Path, ref: str) -> None:
    repos.git(repo, "checkout", "-q", ref)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with made(tmp_path_factory.mktemp("e2e")) as shared:
        yield shared


def _run(world: World, name: str, variables: dict[str, str], *, jobs: list[str] | None = None,
         manual: tuple[str, ...] = (), ci_file: str | None = None, keep_artifacts: bool = False) -> Run:
    result = run_pipeline(world.repo, variables=variables, timeout=600, jobs=jobs, keep_artifacts=keep_artifacts,
                          extra_args=[x for job in manual for x in ("--manual", job)], ci_file=ci_file)
    kept = world.tmp / "runs" / name
    shutil.rmtree(kept, ignore_errors=True)
    if (state_dir(world.repo) / "artifacts").is_dir():
        shutil.copytree(state_dir(world.repo) / "artifacts", kept)
    else:
        kept.mkdir(parents=True)
    return Run(result, kept)


def _digest(run: Run) -> str:
    found = DIGEST.search(run.artifact("mlci-build", "mlci-build.env").read_text())
    assert found, run.result.describe()
    return found[1]


# --- the merge request ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mr_run(world: World) -> Run:
    """The merge request's first pipeline: the remote is empty, so CI trains; then the image is built and scanned and
    the report posted (after one 429: GitLab's rate limit, retried)."""
    _checkout(world.repo, MR_BRANCH)
    world.forge.fail_next("POST", NOTES, 429, retry_after=1)
    return _run(world, "mr", mr_variables(world))


@pytest.fixture(scope="module")
def mr_again(world: World, mr_run: Run) -> tuple[Run, int]:
    """The merge request's pipeline once more with nothing changed, in the `component:` form; and how many blobs
    the dev registry had had uploaded before it."""
    _checkout(world.repo, MR_BRANCH)
    form = state_dir(world.repo) / "component-form.gitlab-ci.yml"
    form.write_text(COMPONENT_FORM)
    seen = blob_upload_count(world.dev)
    return _run(world, "mr-again", mr_variables(world), ci_file=form.relative_to(world.repo).as_posix()), seen


def test_the_merge_request_pipeline_trains_builds_scans_and_posts_one_report(world: World, mr_run: Run) -> None:
    run = mr_run
    assert run.result.returncode == 0, run.result.describe()
    assert run.ran() == MR_JOBS, run.result.describe()
    assert all(run.job(name).status == "success" for name in MR_JOBS), run.result.describe()
    summary = json.loads(run.artifact("mlci-train", "mlci-repro.json").read_text())
    # A first pipeline with an empty remote trains; evaluate's committed outputs already match.
    assert summary["stages"] == {"generate": "ran", "prepare": "ran", "train": "ran", "evaluate": "skipped"}
    assert summary["ok"] and summary["pushed"] and summary["remote"] == "ci"
    assert (world.tmp / "dvc-remote" / "files" / "md5").is_dir()
    data_test = run.job("mlci-data-test").log
    assert re.search(r"\n(\d+) checks: \1 passed, 0 warned, 0 failed", data_test), data_test
    junit = run.artifact("mlci-data-test", "mlci-data-test.xml").read_text()
    assert 'name="test"' in junit and 'name="age: drift"' in junit
    build = run.job("mlci-build").log
    digest = _digest(run)
    assert "pulling model/model.pkl from the DVC remote" in build, build  # weights via DVC, not CI artifacts
    assert f"docker://{world.dev.host}/ml/credit-model:{world.mr[:8]}" in \
        run.artifact("mlci-build", "mlci-build.env").read_text()
    scan = run.job("mlci-scan").log
    assert f"pass: docker://{world.dev.host}/ml/credit-model" in scan, scan
    cs_report = json.loads(run.artifact("mlci-scan", "gl-container-scanning-report.json").read_text())
    assert cs_report["scan"]["type"] == "container_scanning" and cs_report["vulnerabilities"] == []
    assert json.loads(run.artifact("mlci-scan", "mlci-scan-record.json").read_text())["digest"] == digest
    # The report: rate-limited once (not processed: wait, look again, post), then one comment among 130 notes.
    assert "created report comment" in run.job("mlci-report").log
    assert world.forge.request_count("POST", NOTES, status=429) == 1
    assert world.forge.request_count("POST", NOTES, status=201) == 1
    mine = [n for n in world.forge.notes(PROJECT_ID, MR_IID) if str(n["body"]).startswith("<!-- mlci-report:")]
    assert len(mine) == 1
    body = str(mine[0]["body"])
    assert "| `params.yaml:train.learning_rate` | 0.1 | 0.2 |" in body, body
    assert "### Data tests: ✅ passed" in body and body.count("```mermaid") == 2
    assert TOKEN not in run.result.output and all(TOKEN not in job.log for job in run.result.jobs.values())


def test_the_same_pipeline_again_in_the_component_form_skips_every_expensive_step(
        world: World, mr_run: Run, mr_again: tuple[Run, int]) -> None:
    """Nothing changed: DVC's run-cache and remote (nothing retrained), the build key (the image reused: no blob
    uploaded), the stored scan (same digest, DB, trivy and scanners: judged again, trivy not run); the report comment
    is updated in place (or left as it is)."""
    run, seen = mr_again
    assert run.result.returncode == 0, run.result.describe()
    assert run.ran() == MR_JOBS and all(run.job(n).status == "success" for n in MR_JOBS), run.result.describe()
    assert "stages: 4 (ran 0, skipped 4" in run.job("mlci-train").log, run.job("mlci-train").log
    digest = _digest(mr_run)
    build = run.job("mlci-build").log
    assert f"mlci: reused {digest}" in build, build
    assert _digest(run) == digest
    assert blob_upload_count(world.dev) == seen  # no layer (nor config) uploaded again
    scan = run.job("mlci-scan").log
    assert "scanned before with the same DB, trivy and scanners" in scan and "the scan record of" in scan, scan
    assert re.search(r"mlci: (updated|unchanged) report comment", run.job("mlci-report").log)
    assert world.forge.request_count("POST", NOTES, status=201) == 1  # never posted twice
    # The component form renders the same jobs as the include: the same stages, the same `when`.
    assert {(n, j.stage, j.when) for n, j in run.result.jobs.items()} == \
        {(n, j.stage, j.when) for n, j in mr_run.result.jobs.items()}


# --- the default branch, with no network ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def merged(world: World) -> str:
    """The merge request fast-forwarded into main (the same commit: its image, its scan)."""
    _checkout(world.repo, "main")
    repos.git(world.repo, "merge", "-q", "--ff-only", MR_BRANCH)
    repos.git(world.repo, "update-ref", "refs/remotes/origin/main", world.mr)
    return world.mr


def _hand_pushed(registry: Registry, digest: str, tag: str) -> str:
    """The image `digest` names pushed again by hand under `tag` with one more annotation in its manifest: the same
    layers, config and labels (this commit's revision), a digest no pipeline scanned."""
    with requests.Session() as http:
        http.trust_env = False
        url = f"{registry.url}/v2/ml/credit-model/manifests"
        got = http.get(f"{url}/{digest}", headers={"Accept": OCI_MANIFEST}, timeout=30)
        assert got.status_code == 200, got.text
        manifest = got.json()
        manifest["annotations"] = {**manifest.get("annotations", {}), "org.example.pushed-by": "hand"}
        body = json.dumps(manifest).encode()
        put = http.put(f"{url}/{tag}", data=body, headers={"Content-Type": OCI_MANIFEST}, timeout=30)
        assert put.status_code == 201, put.text
    return "sha256:" + hashlib.sha256(body).hexdigest()


@pytest.fixture(scope="module")
def stage_session(world: World, mr_run: Run, merged: str) -> dict[str, Any]:
    """tests/e2e/stage_inside.py under `unshare -n`: the default branch's pipelines on loopback alone."""
    _checkout(world.repo, "main")
    digest = _digest(mr_run)
    unscanned = _hand_pushed(world.dev, digest, "hand-pushed")
    spec = {"repo": str(world.repo), "dev_data": str(world.dev.root), "work": str(world.tmp / "stage-side"),
            "dev_port": DEV_INSIDE.rsplit(":", 1)[1], "stage_port": STAGE_INSIDE.rsplit(":", 1)[1],
            "short_sha": merged[:8], "variables": image_variables(world, DEV_INSIDE),
            "unscanned": {"image": f"docker://{DEV_INSIDE}/ml/credit-model:hand-pushed", "digest": unscanned}}
    spec_file = world.tmp / "stage-side.json"
    spec_file.write_text(json.dumps(spec))
    done = subprocess.run(["unshare", "-n", sys.executable, "-m", "tests.e2e.stage_inside", str(spec_file)],
                          cwd=repos.ROOT, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-6000:]
    session: dict[str, Any] = json.loads(done.stdout)
    session["digest"], session["unscanned"] = digest, unscanned
    return session


def _step(session: dict[str, Any], name: str) -> dict[str, Any]:
    step: dict[str, Any] = session["steps"][name]
    return step


def _described(step: dict[str, Any]) -> str:
    jobs = ", ".join(f"{n}: {j['status']} ({j['exit_code']})" for n, j in step["jobs"].items())
    return f"exit {step['returncode']} in {step['duration']:.1f}s; {jobs}\n{step['output']}"


def _started(step: dict[str, Any]) -> set[str]:
    return {n for n, j in step["jobs"].items() if j["status"] not in ("skipped", "manual", "never")}


def test_the_default_branch_pipeline_runs_with_no_network_and_promotes_to_stage(
        world: World, stage_session: dict[str, Any]) -> None:
    """Merged, the default branch's pipeline finds the merge request's work done (nothing retrained, the image and
    its scan reused) and promotes the image into stage by itself: by digest, signed, recorded in the GitOps
    repository, the model's DVC objects on stage's remote; all of it with nothing but loopback."""
    assert stage_session["interfaces"] == ["lo"]
    step = _step(stage_session, "promote")
    assert step["returncode"] == 0, _described(step)
    assert _started(step) == DEFAULT_JOBS, _described(step)
    assert all(step["jobs"][n]["status"] == "success" for n in DEFAULT_JOBS), _described(step)
    digest, short = stage_session["digest"], world.mr[:8]
    promoted = step["artifacts"]["mlci-promote-stage/mlci-promote.env"]
    assert f"MLCI_PROMOTED_IMAGE=docker://{STAGE_INSIDE}/ml/credit-model:{short}\n" in promoted, promoted
    assert f"MLCI_PROMOTED_DIGEST={digest}\n" in promoted
    assert "stages: 4 (ran 0, skipped 4" in step["jobs"]["mlci-train"]["log"]
    assert f"mlci: reused {digest}" in step["jobs"]["mlci-build"]["log"]
    state = read_file(world.tmp / "environments.git", "environments/stage.yaml")
    assert state["image"]["digest"] == digest and state["scan"]["verdict"] == "pass" and state["signature"]
    assert state["model"]["git_sha"] == world.mr and state["model"]["git_ref"] == "main"
    weights = world.tmp / "dvc-stage" / "files" / "md5"
    assert weights.is_dir() and any(p.is_file() for p in weights.rglob("*"))
    stage = start_registry(directory=world.tmp / "stage-side" / "stage")  # stage's files, served again to look
    try:
        image = f"docker://{stage.host}/ml/credit-model:{short}"
        verified = repos.run_mlci(world.repo, "verify", image, "--key", str(world.keys.public),
                                  env=plain_http(stage.host))
        assert verified.returncode == 0, verified.stderr
    finally:
        stop_registry(stage)
    assert world.keys.private.read_text().splitlines()[1] not in step["jobs"]["mlci-promote-stage"]["log"]


def test_promoting_the_same_digest_again_copies_nothing(stage_session: dict[str, Any]) -> None:
    """The promote job once more from the same build and scan (a re-run with nothing changed): the digest, its
    referrers and its signature are in stage already, so nothing is written there (no blob, no manifest, no tag,
    not even the push-permission probe: the tag names the digest already); the GitOps record names the promotion
    again."""
    step = _step(stage_session, "again")
    assert step["returncode"] == 0 and _started(step) == {"mlci-promote-stage"}, _described(step)
    promote = step["jobs"]["mlci-promote-stage"]["log"]
    assert re.search(r"mlci: stage: 0 blob\(s\) copied \(0\.0 MB\), \d+ already there", promote), promote
    written = [(r[0], r[1].split("?")[0]) for r in step["stage_requests"] if r[0] in WRITES]
    assert written == [], step["stage_requests"]


def test_a_moved_target_tag_fails_the_default_branch_pipeline_in_its_promote_job(
        world: World, stage_session: dict[str, Any]) -> None:
    """Stage's tag for this commit names an image pushed there by hand: every job before promote passes, and promote
    refuses to move an immutable tag (exit 1) before writing anything."""
    step = _step(stage_session, "moved")
    assert step["returncode"] == 1, _described(step)
    jobs = step["jobs"]
    assert all(jobs[n]["status"] == "success" for n in DEFAULT_JOBS - {"mlci-promote-stage"}), _described(step)
    promote = jobs["mlci-promote-stage"]
    assert promote["status"] == "failed" and promote["exit_code"] == 1, _described(step)
    assert f"mlci: error: tag '{world.mr[:8]}' already names {step['by_hand']} at the destination; promoting " \
           f"{stage_session['digest']} would move it (tags are immutable there)" in promote["log"], promote["log"]
    assert [r for r in step["stage_requests"] if r[0] in WRITES] == []
    assert step["removed"] == 202


def test_a_digest_without_a_scan_record_fails_the_promote_job_with_nothing_copied(
        stage_session: dict[str, Any]) -> None:
    step = _step(stage_session, "unscanned")
    promote = step["jobs"]["mlci-promote-stage"]
    assert step["returncode"] == 1 and promote["status"] == "failed" and promote["exit_code"] == 1, _described(step)
    assert _started(step) == {"mlci-promote-stage"}
    assert f"{stage_session['unscanned']}" in promote["log"] and "requires a passing scan record" in promote["log"], \
        promote["log"]
    assert [r for r in step["stage_requests"] if r[0] in WRITES] == []


# --- the release tag and prod's air gap ----------------------------------------------------------------------------

# Prod's tag pipeline through gitlab-ci-local, its manual import job started, run in prod's network namespace (argv:
# repo, variables as JSON); prints the jobs that ran and the import job's status, exit code and log as JSON.
INSIDE_IMPORT = """
import json, sys
from pathlib import Path
from tests.testing.gitlab_ci_local import run_pipeline
result = run_pipeline(Path(sys.argv[1]), variables=json.loads(sys.argv[2]), timeout=300,
                      extra_args=["--manual", "mlci-bundle-import"])
job = result.jobs.get("mlci-bundle-import")
print(json.dumps({"returncode": result.returncode, "status": job.status if job else None,
                  "started": sorted(n for n, j in result.jobs.items() if j.started),
                  "exit_code": job.exit_code if job else None, "log": job.log if job else result.output[-4000:]}))
"""


@pytest.fixture(scope="module")
def tag_run(world: World, mr_run: Run, merged: str) -> Run:
    """The release tag's pipeline, its manual promote-prod job started by the release manager."""
    _checkout(world.repo, "main")
    if "v1.0.0" not in repos.git(world.repo, "tag", "--list"):
        repos.git(world.repo, "tag", "-a", "v1.0.0", "-m", "release 1.0.0")
    variables = {**image_variables(world, world.dev.host), "CI_COMMIT_TAG": "v1.0.0", "CI_COMMIT_BRANCH": "",
                 "CI_COMMIT_REF_NAME": "v1.0.0"}
    return _run(world, "tag", variables, manual=("mlci-promote-prod",))


def test_a_release_tag_pipeline_writes_prods_bundle_which_prod_imports_offline_and_serves(
        world: World, mr_run: Run, tag_run: Run, buildah_env: dict[str, str]) -> None:
    """The tag pipeline's promote-prod job (prod has no link: via: bundle) writes prod's signed bundle; it is carried
    across, and PROD's own pipeline (a mirror of the repository, in a network namespace with nothing but loopback)
    verifies and imports it: the image in prod's registry answers /predict, `dvc pull` from prod's remote gives the
    model, the model's files are in Nexus raw, the promotion is recorded."""
    run = tag_run
    assert run.result.returncode == 0, run.result.describe()
    assert run.ran() == TAG_JOBS, run.result.describe()
    export = run.job("mlci-promote-prod")
    assert export.status == "success" and "exporting its bundle" in export.log, export.log
    assert world.keys.private.read_text().splitlines()[1] not in export.log
    digest = _digest(run)
    assert digest == _digest(mr_run) and f"mlci: reused {digest}" in run.job("mlci-build").log
    bundle = run.artifact("mlci-promote-prod", "mlci-bundle.tar")
    checked = repos.run_mlci(world.repo, "bundle", "verify", str(bundle), "--key", str(world.keys.public), "--json")
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["images"] == [{"tag": "v1.0.0", "digest": digest}]

    tmp = world.tmp / "prod"
    inbox = tmp / "inbox"  # the transfer: one file, copied
    inbox.mkdir(parents=True)
    shutil.copy(bundle, inbox / "credit-model-v1.0.0.tar")
    inside = tmp / "inside" / "credit-model"  # PROD's mirror of the model repository
    repos.git(tmp, "clone", "-q", str(world.repo), str(inside))
    seed_templates(inside)
    outside = tmp / "inside-world"  # prod's registry and Nexus files
    inside_variables = {
        "CI_COMMIT_TAG": "v1.0.0", "CI_COMMIT_BRANCH": "", "MLCI_AIRGAP_SIDE": "inside",
        "MLCI_BUNDLE": str(inbox / "credit-model-v1.0.0.tar"), "COSIGN_PUBLIC_KEY": str(world.keys.public),
        "MLCI_SCAN_CACHE_DIR": str(world.clean_db), **plain_http(INSIDE_REGISTRY, INSIDE_NEXUS)}
    registry_port, nexus_port = INSIDE_REGISTRY.rsplit(":", 1)[1], INSIDE_NEXUS.rsplit(":", 1)[1]
    done = subprocess.run(["unshare", "-n", sys.executable, "-m", "tests.testing.inside", str(outside),
                           registry_port, nexus_port, "--", sys.executable, "-c", INSIDE_IMPORT, str(inside),
                           json.dumps(inside_variables)], cwd=repos.ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    outer = json.loads(done.stdout)
    assert outer["interfaces"] == ["lo"] and outer["returncode"] == 0, outer["stderr"]
    job = json.loads(outer["stdout"])
    assert job["status"] == "success", job["log"]
    assert job["started"] == ["mlci-bundle-import"], job  # inside, no other job runs
    assert f"docker://{INSIDE_REGISTRY}/ml/credit-model:v1.0.0@{digest}" in job["log"]

    pulled = tmp / "pulled"  # `dvc pull` of the promoted version from prod's remote alone
    repos.git(tmp, "clone", "-q", "--branch", "v1.0.0", str(inside), str(pulled))
    repos.dvc(pulled, "pull", "-r", "prod", "model/model.pkl")
    model = (pulled / "model" / "model.pkl").read_bytes()
    assert hashlib.md5(model).hexdigest() in (world.repo / "dvc.lock").read_text()  # the version the tag recorded
    nexus = outside / "nexus" / "data" / "repository" / "mlci-raw"
    assert (nexus / "credit-scoring" / "v1.0.0" / "model" / "model" / "model.pkl").read_bytes() == model, sorted(
        str(p.relative_to(nexus)) for p in nexus.rglob("*"))
    (tmp / "run").mkdir()
    prod = start_registry(directory=outside / "registry")  # prod's registry's files, served again to look
    try:
        image = f"docker://{prod.host}/ml/credit-model:v1.0.0"
        verified = repos.run_mlci(world.repo, "verify", image, "--key", str(world.keys.public),
                                  env=plain_http(prod.host))
        assert verified.returncode == 0, verified.stderr
        serving.assert_image_serves_like_the_host(image, pulled, tmp / "run", buildah_env, "python3")
    finally:
        stop_registry(prod)
    state = read_file(world.tmp / "environments.git", "environments/prod.yaml")
    assert state["image"]["digest"] == digest


# --- failing variants, each the one job it concerns, from prepared artifacts ----------------------------------------

@pytest.fixture
def branch(world: World, mr_run: Run) -> Iterator[str]:
    """A branch off the merge request's commit for one variant; main checked out again afterwards."""
    name = f"variant-{time.monotonic_ns()}"
    repos.git(world.repo, "checkout", "-q", "-b", name, world.mr)
    try:
        yield name
    finally:
        repos.git(world.repo, "checkout", "-q", "-f", "main")


def _one_job(world: World, name: str, job: str, variables: dict[str, str]) -> Run:
    run = _run(world, name, variables, jobs=[job], keep_artifacts=True)
    assert run.ran() == {job}, run.result.describe()
    return run


def _mr_artifacts(world: World, mr_run: Run, *jobs: str) -> None:
    """The merge request's artifacts of these jobs, as the job run alone gets them from its `needs`."""
    shutil.rmtree(state_dir(world.repo) / "artifacts", ignore_errors=True)
    for job in jobs:
        source = mr_run.artifacts / artifacts_dir(Path("."), job).name
        files = {p.relative_to(source).as_posix(): p for p in source.rglob("*") if p.is_file()
                 and ".gitlab-ci-reports" not in p.parts}
        dotenv = "mlci-build.env" if "mlci-build.env" in files else None
        seed_artifacts(world.repo, job, files, dotenv=dotenv)


def test_a_stale_dvc_lock_fails_in_the_train_job(world: World, branch: str) -> None:
    params = world.repo / "params.yaml"
    params.write_text(re.sub(r"(?m)^(\s+learning_rate:\s*)\S+", r"\g<1>0.5", params.read_text(), count=1))
    repos.commit_all(world.repo, "Raise the learning rate without re-running the pipeline")
    run = _one_job(world, "stale", "mlci-train", mr_variables(world))
    train = run.job("mlci-train")
    assert run.result.returncode == 1 and train.status == "failed" and train.exit_code == 1, run.result.describe()
    assert ("mlci: stage 'train': param train.learning_rate in params.yaml modified since dvc.lock "
            "was written") in train.log
    assert "Running stage" not in train.log  # refused before anything ran


def test_bad_data_fails_in_the_data_test_job(world: World, mr_run: Run, branch: str) -> None:
    generate = world.repo / "src" / "generate.py"
    line = "age = np.minimum(75, cust_age0[cust] + day // 365)"
    assert line in generate.read_text()
    generate.write_text(generate.read_text().replace(line, line + " * 3"))  # ages up to 225
    repos.run_mlci(world.repo, "repro", "--push", check=True)  # a consistent lock, the data in the remote
    repos.commit_all(world.repo, "Corrupt the ages")
    _mr_artifacts(world, mr_run)
    seed_artifacts(world.repo, "mlci-train", {"dvc.lock": world.repo / "dvc.lock"})  # what this commit's train hands on
    run = _one_job(world, "bad-data", "mlci-data-test", mr_variables(world))
    job = run.job("mlci-data-test")
    assert run.result.returncode == 1 and job.status == "failed" and job.exit_code == 1, run.result.describe()
    assert re.search(r"applications\s+age: between\s+FAIL\s+out_of_range=\d+", job.log), job.log
    junit = run.artifact("mlci-data-test", "mlci-data-test.xml").read_text()
    assert '<failure message="observed out_of_range=' in junit


def test_a_metric_regression_fails_in_the_report_job_after_updating_the_comment(
        world: World, mr_run: Run, branch: str) -> None:
    config = world.repo / "mlci.yaml"
    config.write_text(config.read_text().replace("max_drop: 0.01", "max_drop: 0.0001"))
    repos.commit_all(world.repo, "A stricter gate")
    _mr_artifacts(world, mr_run, "mlci-data-test", "mlci-scan")
    posted = world.forge.request_count("POST", NOTES, status=201)
    run = _one_job(world, "regression", "mlci-report", mr_variables(world))
    report = run.job("mlci-report")
    assert run.result.returncode == 1 and report.status == "failed" and report.exit_code == 1, run.result.describe()
    log = report.log
    assert log.index("updated report comment") < log.index("mlci: gate failed: metrics.json:roc_auc max drop"), log
    mine = [n for n in world.forge.notes(PROJECT_ID, MR_IID) if str(n["body"]).startswith("<!-- mlci-report:")]
    assert len(mine) == 1 and world.forge.request_count("POST", NOTES, status=201) == posted
    assert "## ❌ Model report: gates failed" in str(mine[0]["body"])


def test_a_vulnerable_image_fails_in_the_scan_job(world: World, mr_run: Run) -> None:
    """The merge request's image, scanned alone with a DB that now knows a hole in its joblib: a new DB, so scanned
    again (not the stored verdict), and the policy fails the job."""
    _checkout(world.repo, MR_BRANCH)
    joblib = Advisory(PIP, "joblib", "GHSA-e2e0-jobl-ib01", "HIGH", "joblib loads what it should not",
                      vulnerable="<9.9", fixed="9.9")
    vulnerable = make_db(world.tmp / "trivy-joblib", advisories=(joblib,))
    _mr_artifacts(world, mr_run, "mlci-build")
    variables = {**mr_variables(world), "MLCI_SCAN_CACHE_DIR": str(vulnerable.cache_dir)}
    run = _one_job(world, "vulnerable", "mlci-scan", variables)
    scan = run.job("mlci-scan")
    assert run.result.returncode == 1 and scan.status == "failed" and scan.exit_code == 1, run.result.describe()
    assert "GHSA-e2e0-jobl-ib01 (HIGH, joblib" in scan.log, scan.log
    assert "scanned before" not in scan.log
    report = json.loads(run.artifact("mlci-scan", "gl-container-scanning-report.json").read_text())
    assert [v["identifiers"][0]["value"] for v in report["vulnerabilities"]] == ["GHSA-e2e0-jobl-ib01"]
