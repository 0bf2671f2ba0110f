"""End to end: the example model repo's GitLab pipeline through gitlab-ci-local, with mlci's
templates pulled in by a real `include: project:` from a pre-seeded include cache."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sign.support import p256
from tests.testing import repos, serving
from tests.testing.forge import ForgeServer
from tests.testing.gitlab_ci_local import PipelineResult, run_pipeline, seed_project_include
from tests.testing.gitremote import bare_repo, read_file
from tests.testing.images import BASE_TAG, base_layout, wheelhouse
from tests.testing.registry import Registry, access_log, plain_http, start_registry, stop_registry
from tests.testing.trivydb import PIP, Advisory, make_db

pytestmark = pytest.mark.e2e
TEMPLATES = repos.ROOT / ".gitlab-ci"
INSIDE_REGISTRY, INSIDE_NEXUS = "127.0.0.1:5000", "127.0.0.1:8081"  # ports in the inside's network namespace


def _pipeline_repo(tmp_path: Path) -> Path:
    """The example repo with a local DVC remote and mlci's templates seeded as project mlci/mlci@v0.1.0."""
    repo = repos.example_repo(tmp_path / "credit-model")
    repos.dvc(repo, "remote", "add", "-d", "ci", str(tmp_path / "dvc-remote"))
    repos.commit_all(repo, "DVC remote for CI")
    seed_project_include(repo, None, "mlci/mlci", "v0.1.0",
                         {f".gitlab-ci/{p.name}": p for p in TEMPLATES.glob("*.yml")})
    return repo


def _run(repo: Path, variables: dict[str, str] | None = None, manual: tuple[str, ...] = ()) -> PipelineResult:
    result = run_pipeline(repo, timeout=600, variables=variables,
                          extra_args=[x for job in manual for x in ("--manual", job)])
    ran = {name for name, job in result.jobs.items() if job.status != "never"}
    # The build and scan jobs always run (rules cannot read mlci.yaml); report only in merge request pipelines;
    # promote (by hand) only in tag pipelines.
    expected = {"config", "train", "data-test", "build", "scan"} | (
        {"report"} if "CI_PIPELINE_SOURCE" in (variables or {}) else set()) | (
        {"promote", "export-prod"} if "CI_COMMIT_TAG" in (variables or {}) else set())
    assert ran == expected, result.describe()
    return result


def test_train_job_trains_pushes_and_the_next_pipeline_pulls(tmp_path: Path, registry: Registry) -> None:
    repo = _pipeline_repo(tmp_path)
    image = {"MLCI_IMAGE_NAME": f"docker://{registry.host}/ml/credit-model", **plain_http(registry.host),
             "MLCI_IMAGE_BASE": f"oci:{base_layout()}:{BASE_TAG}",
             "MLCI_IMAGE_PIP_ARGS": f"--no-index,--find-links,{wheelhouse()}"}
    clean = make_db(tmp_path / "trivy-clean", advisories=())  # nothing in the example is known vulnerable
    first = _run(repo, {**image, "MLCI_SCAN_CACHE_DIR": str(clean.cache_dir)})
    assert first.returncode == 0, first.describe()
    assert first.job("config").status == "success"
    train = first.job("train")
    assert train.status == "success"
    summary = json.loads((first.artifacts_dir("train") / "mlci-repro.json").read_text())
    # A fresh clone with an empty remote trains; evaluate's committed outputs already match.
    assert summary["stages"] == {"generate": "ran", "prepare": "ran", "train": "ran", "evaluate": "skipped"}
    assert summary["ok"] and summary["pushed"] and summary["remote"] == "ci"
    assert (tmp_path / "dvc-remote" / "files" / "md5").is_dir()
    data_test = first.job("data-test")
    assert data_test.status == "success", data_test.log
    assert re.search(r"\n(\d+) checks: \1 passed, 0 warned, 0 failed", data_test.log), data_test.log
    junit = (first.artifacts_dir("data-test") / "mlci-data-test.xml").read_text()
    assert 'name="test"' in junit and 'name="age: drift"' in junit
    build = first.job("build")
    assert build.status == "success", build.log
    dotenv = (first.artifacts_dir("build") / "mlci-build.env").read_text()
    digest = re.search(r"MLCI_IMAGE_DIGEST=(sha256:[0-9a-f]{64})", dotenv)
    assert digest and f"{registry.url.removeprefix('http://')}/ml/credit-model" in dotenv
    assert "pulling model/model.pkl from the DVC remote" in build.log  # weights via DVC, not CI artifacts
    scan = first.job("scan")
    assert scan.status == "success" and f"pass: docker://{registry.host}/ml/credit-model" in scan.log, scan.log
    cs_report = json.loads((first.artifacts_dir("scan") / "gl-container-scanning-report.json").read_text())
    assert cs_report["scan"]["type"] == "container_scanning" and cs_report["vulnerabilities"] == []
    assert json.loads((first.artifacts_dir("scan") / "mlci-scan-record.json").read_text())["digest"] == digest[1]
    # The next pipeline, with a DB that now knows a hole in the image's joblib: the scan job fails the pipeline.
    joblib = Advisory(PIP, "joblib", "GHSA-e2e0-jobl-ib01", "HIGH", "joblib loads what it should not",
                      vulnerable="<9.9", fixed="9.9")
    vulnerable = make_db(tmp_path / "trivy-joblib", advisories=(joblib,))
    second = _run(repo, {**image, "MLCI_SCAN_CACHE_DIR": str(vulnerable.cache_dir)})
    assert second.returncode == 1, second.describe()
    log = second.job("train").log
    assert "stages: 4 (ran 0, skipped 4" in log, log  # pulled from the remote: nothing retrained
    assert "reused" in second.job("build").log and digest[1] in second.job("build").log
    scan = second.job("scan")
    assert scan.status == "failed" and scan.exit_code == 1, second.describe()
    assert "GHSA-e2e0-jobl-ib01 (HIGH, joblib" in scan.log, scan.log


def test_stale_dvc_lock_fails_the_pipeline_in_the_train_job(tmp_path: Path) -> None:
    repo = _pipeline_repo(tmp_path)
    params = repo / "params.yaml"
    params.write_text(re.sub(r"(?m)^(\s+learning_rate:\s*)\S+", r"\g<1>0.5", params.read_text(), count=1))
    repos.commit_all(repo, "Raise the learning rate without re-running the pipeline")
    result = _run(repo)
    assert result.returncode == 1, result.describe()
    assert result.job("config").status == "success", result.describe()
    train = result.job("train")
    assert train.status == "failed" and train.exit_code == 1, result.describe()
    assert ("mlci: stage 'train': param train.learning_rate in params.yaml modified since dvc.lock "
            "was written") in train.log
    assert "Running stage" not in train.log  # refused before anything ran
    assert result.job("data-test").status == "skipped" and result.job("build").status == "skipped"


def test_corrupted_data_fails_the_pipeline_in_the_data_test_job(tmp_path: Path) -> None:
    repo = _pipeline_repo(tmp_path)
    generate = repo / "src" / "generate.py"
    line = "age = np.minimum(75, cust_age0[cust] + day // 365)"
    assert line in generate.read_text()
    generate.write_text(generate.read_text().replace(line, line + " * 3"))  # ages up to 225
    repos.run_mlci(repo, "repro", "--push", check=True)  # a consistent lock, data in the remote
    repos.commit_all(repo, "Corrupt the ages")
    result = _run(repo)
    assert result.returncode == 1, result.describe()
    assert result.job("config").status == "success" and result.job("train").status == "success"
    job = result.job("data-test")
    assert job.status == "failed" and job.exit_code == 1, result.describe()
    assert re.search(r"applications\s+age: between\s+FAIL\s+out_of_range=\d+", job.log), job.log
    junit = (result.artifacts_dir("data-test") / "mlci-data-test.xml").read_text()
    assert '<failure message="observed out_of_range=' in junit


def test_merge_request_pipeline_keeps_one_report_comment_and_gates_fail_after_posting(
        tmp_path: Path, forge: ForgeServer) -> None:
    repo = _pipeline_repo(tmp_path)
    base = repos.git(repo, "rev-parse", "HEAD").strip()
    repos.git(repo, "update-ref", "refs/remotes/origin/main", base)
    repos.git(repo, "checkout", "-q", "-b", "faster-learning")
    params = repo / "params.yaml"
    params.write_text(re.sub(r"learning_rate: \S+", "learning_rate: 0.2", params.read_text()))
    repos.run_mlci(repo, "repro", "--push", check=True)  # the MR retrained; its data is in the remote
    repos.commit_all(repo, "Raise the learning rate")
    forge.add_user("glpat-e2e-token", "mlci-bot")
    forge.add_merge_request("bank/credit-model", 3)
    forge.add_notes("bank/credit-model", 3, [f"review {i}" for i in range(130)], author="alice")
    mr = {"CI_PIPELINE_SOURCE": "merge_request_event", "CI_MERGE_REQUEST_IID": "3",
          "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main", "CI_MERGE_REQUEST_DIFF_BASE_SHA": base,
          "CI_API_V4_URL": forge.gitlab_api, "CI_PROJECT_ID": "bank/credit-model", "GITLAB_TOKEN": "glpat-e2e-token"}

    notes = r"/merge_requests/3/notes$"
    forge.fail_next("POST", notes, 429, retry_after=1)  # rate-limited: not processed, wait, look again, post
    first = _run(repo, mr)
    assert first.returncode == 0, first.describe()
    assert "created report comment" in first.job("report").log
    assert forge.request_count("POST", notes, status=429) == 1 and forge.request_count("POST", notes, status=201) == 1
    assert "stages: 4 (ran 0, skipped 4" in first.job("train").log  # pulled what the MR pushed
    build = first.job("build")  # no image.name in mlci.yaml nor MLCI_IMAGE_NAME: skipped, with success
    assert build.status == "success" and "skipped: no image.name" in build.log, first.describe()

    config = repo / "mlci.yaml"
    config.write_text(config.read_text().replace("max_drop: 0.01", "max_drop: 0.0001"))
    repos.commit_all(repo, "A stricter gate")
    second = _run(repo, mr)
    report = second.job("report")
    assert report.status == "failed" and report.exit_code == 1, second.describe()
    log = report.log
    assert log.index("updated report comment") < log.index("mlci: gate failed: metrics.json:roc_auc max drop")

    mine = [n for n in forge.notes("bank/credit-model", 3) if str(n["body"]).startswith("<!-- mlci-report:metrics -->")]
    assert len(mine) == 1 and forge.request_count("POST", notes, status=201) == 1  # updated, never posted twice
    body = str(mine[0]["body"])
    assert "## ❌ Model report: gates failed" in body
    assert "| `params.yaml:train.learning_rate` | 0.1 | 0.2 |" in body
    assert body.count("```mermaid") == 2 and "### Data tests: ✅ passed" in body
    assert "glpat-e2e-token" not in second.output + first.output


def _release_repo(tmp_path: Path, stage: Registry) -> Path:
    """The pipeline repo with its stage registry where the test runs one, a DVC remote for stage and one for prod,
    prod's registry and Nexus at the loopback ports of the inside (tests/testing/inside.py), a GitOps repository,
    and a release tag."""
    repo = _pipeline_repo(tmp_path)
    repos.dvc(repo, "remote", "add", "stage", str(tmp_path / "dvc-stage"))
    repos.dvc(repo, "remote", "add", "prod", str(tmp_path / "dvc-prod"))
    bare_repo(tmp_path / "environments.git")
    config = repo / "mlci.yaml"
    text = config.read_text().replace("registry.stage.bank.example", stage.host)
    text = text.replace("registry.prod.bank.example", INSIDE_REGISTRY).replace(
        "https://nexus.prod.bank.example/repository/models", f"http://{INSIDE_NEXUS}/repository/mlci-raw")
    text = text.replace("      aliases: true\n", "      aliases: true\n      dvc_remote: stage\n")
    text = text.replace("  signing:\n", f"  gitops:\n    repository: {tmp_path / 'environments.git'}\n    gto: false\n"
                        "  signing:\n", 1)
    config.write_text(text)
    repos.commit_all(repo, "stage registry, DVC remote and GitOps repository")
    repos.git(repo, "tag", "-a", "v1.0.0", "-m", "release 1.0.0")
    return repo


def _release_variables(tmp_path: Path, dev: Registry, stage: Registry, key: Path) -> dict[str, str]:
    """A tag pipeline's variables: dev and stage registries, the Debian base, a clean DB, the signing key."""
    clean = make_db(tmp_path / "trivy-clean", advisories=())
    return {"MLCI_IMAGE_NAME": f"docker://{dev.host}/ml/credit-model", **plain_http(dev.host, stage.host),
            "MLCI_IMAGE_BASE": f"oci:{base_layout()}:{BASE_TAG}",
            "MLCI_IMAGE_PIP_ARGS": f"--no-index,--find-links,{wheelhouse()}",
            "MLCI_SCAN_CACHE_DIR": str(clean.cache_dir), "MLCI_SIGNING_KEY": str(key), "CI_COMMIT_TAG": "v1.0.0"}


def test_a_release_tag_pipeline_promotes_the_scanned_image_into_stage_signed(
        tmp_path: Path, registry: Registry, registry_stage: Registry) -> None:
    repo = _release_repo(tmp_path, registry_stage)
    keys = p256(tmp_path / "keys")
    variables = _release_variables(tmp_path, registry, registry_stage, keys.private)
    result = _run(repo, variables, manual=("promote",))
    assert result.returncode == 0, result.describe()
    promote = result.job("promote")
    assert promote.status == "success", promote.log
    digest = re.search(r"MLCI_IMAGE_DIGEST=(sha256:[0-9a-f]{64})",
                       (result.artifacts_dir("build") / "mlci-build.env").read_text())
    assert digest, result.describe()
    promoted = (result.artifacts_dir("promote") / "mlci-promote.env").read_text()
    assert f"MLCI_PROMOTED_IMAGE=docker://{registry_stage.host}/ml/credit-model:v1.0.0" in promoted
    assert f"MLCI_PROMOTED_DIGEST={digest[1]}" in promoted
    stage_image = f"docker://{registry_stage.host}/ml/credit-model:v1.0.0"
    verified = repos.run_mlci(repo, "verify", stage_image, "--key", str(keys.public),
                              env=plain_http(registry_stage.host))
    assert verified.returncode == 0, verified.stderr
    for alias in ("v1.0", "v1"):
        assert repos.run_mlci(repo, "verify", stage_image.replace(":v1.0.0", f":{alias}"), "--key",
                              str(keys.public), env=plain_http(registry_stage.host)).returncode == 0
    assert keys.private.read_text().splitlines()[1] not in promote.log
    state = read_file(tmp_path / "environments.git")  # recorded in the GitOps repository
    assert state["image"]["digest"] == digest[1] and state["model"]["version"] == "v1.0.0"
    assert state["scan"]["verdict"] == "pass" and state["signature"]
    weights = tmp_path / "dvc-stage" / "files" / "md5"  # the model's DVC objects, on stage's remote
    assert weights.is_dir() and any(weights.rglob("*"))


def test_a_release_without_a_scan_record_fails_in_the_promote_job_with_nothing_copied(
        tmp_path: Path, registry: Registry, registry_stage: Registry) -> None:
    repo = _release_repo(tmp_path, registry_stage)
    keys = p256(tmp_path / "keys")
    variables = {**_release_variables(tmp_path, registry, registry_stage, keys.private),
                 "MLCI_SCAN_ATTACH": "false"}  # the scan keeps no record
    result = _run(repo, variables, manual=("promote",))
    assert result.returncode == 1, result.describe()
    promote = result.job("promote")
    assert promote.status == "failed" and promote.exit_code == 1, result.describe()
    assert "requires a passing scan record" in promote.log, promote.log
    assert not [e for e in access_log(registry_stage) if e.method in ("POST", "PUT", "PATCH")]


# The inside's import job through gitlab-ci-local, run in the inside's network namespace (argv: repo, variables
# as JSON); prints the job's status, exit code and log as JSON.
INSIDE_IMPORT = """
import json, sys
from pathlib import Path
from tests.testing.gitlab_ci_local import run_pipeline
result = run_pipeline(Path(sys.argv[1]), variables=json.loads(sys.argv[2]), jobs=["import-prod"], timeout=300,
                      extra_args=["--manual", "import-prod"])
job = result.jobs.get("import-prod")
print(json.dumps({"returncode": result.returncode, "status": job.status if job else None,
                  "exit_code": job.exit_code if job else None, "log": job.log if job else result.output[-4000:]}))
"""


def test_a_release_bundle_for_prod_is_exported_then_verified_and_imported_offline_and_serves(
        tmp_path: Path, registry: Registry, registry_stage: Registry, buildah_env: dict[str, str]) -> None:
    """The tag pipeline exports prod's bundle (prod has no link: via: bundle); it is carried across, and PROD's own
    pipeline (a mirror of the repository, in a network namespace with nothing but loopback) verifies and imports
    it: the image in prod's registry answers /predict, `dvc pull` from prod's remote gives the model, the model's
    files are in Nexus raw, the promotion is recorded."""
    repo = _release_repo(tmp_path, registry_stage)
    keys = p256(tmp_path / "keys")
    variables = _release_variables(tmp_path, registry, registry_stage, keys.private)
    result = _run(repo, variables)
    assert result.returncode == 0, result.describe()
    export = result.job("export-prod")
    assert export.status == "success", export.log
    assert keys.private.read_text().splitlines()[1] not in export.log
    digest = re.search(r"MLCI_IMAGE_DIGEST=(sha256:[0-9a-f]{64})",
                       (result.artifacts_dir("build") / "mlci-build.env").read_text())
    assert digest, result.describe()
    bundle = result.artifacts_dir("export-prod") / "mlci-bundle.tar"
    checked = repos.run_mlci(repo, "bundle", "verify", str(bundle), "--key", str(keys.public), "--json")
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["images"] == [{"tag": "v1.0.0", "digest": digest[1]}]

    inbox = tmp_path / "inbox"  # the transfer: one file, copied
    inbox.mkdir()
    shutil.copy(bundle, inbox / "credit-model-v1.0.0.tar")
    inside = tmp_path / "inside" / "credit-model"  # PROD's mirror of the model repository
    repos.git(tmp_path, "clone", "-q", str(repo), str(inside))
    seed_project_include(inside, None, "mlci/mlci", "v0.1.0",
                         {f".gitlab-ci/{p.name}": p for p in TEMPLATES.glob("*.yml")})
    world = tmp_path / "inside-world"  # the inside's registry and Nexus files
    inside_variables = {
        "CI_COMMIT_TAG": "v1.0.0", "MLCI_AIRGAP_SIDE": "inside", "MLCI_BUNDLE": str(inbox / "credit-model-v1.0.0.tar"),
        "COSIGN_PUBLIC_KEY": str(keys.public), "MLCI_SCAN_CACHE_DIR": variables["MLCI_SCAN_CACHE_DIR"],
        **plain_http(INSIDE_REGISTRY, INSIDE_NEXUS)}
    registry_port, nexus_port = INSIDE_REGISTRY.rsplit(":", 1)[1], INSIDE_NEXUS.rsplit(":", 1)[1]
    done = subprocess.run(["unshare", "-n", sys.executable, "-m", "tests.testing.inside", str(world), registry_port,
                           nexus_port, "--", sys.executable, "-c", INSIDE_IMPORT, str(inside),
                           json.dumps(inside_variables)], cwd=repos.ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    outer = json.loads(done.stdout)
    assert outer["interfaces"] == ["lo"] and outer["returncode"] == 0, outer["stderr"]
    job = json.loads(outer["stdout"])
    assert job["status"] == "success", job["log"]
    assert f"docker://{INSIDE_REGISTRY}/ml/credit-model:v1.0.0@{digest[1]}" in job["log"]

    pulled = tmp_path / "pulled"  # `dvc pull` of the promoted version from prod's remote alone
    repos.git(tmp_path, "clone", "-q", "--branch", "v1.0.0", str(inside), str(pulled))
    repos.dvc(pulled, "pull", "-r", "prod", "model/model.pkl")
    model = (pulled / "model" / "model.pkl").read_bytes()
    assert hashlib.md5(model).hexdigest() in (repo / "dvc.lock").read_text()  # the version the tag recorded
    nexus = world / "nexus" / "data" / "repository" / "mlci-raw"
    assert (nexus / "credit-scoring" / "v1.0.0" / "model" / "model" / "model.pkl").read_bytes() == model, sorted(
        str(p.relative_to(nexus)) for p in nexus.rglob("*"))
    prod = start_registry(directory=world / "registry")  # the inside's registry's files, served again to look
    try:
        image = f"docker://{prod.host}/ml/credit-model:v1.0.0"
        verified = repos.run_mlci(repo, "verify", image, "--key", str(keys.public), env=plain_http(prod.host))
        assert verified.returncode == 0, verified.stderr
        serving.assert_image_serves_like_the_host(image, pulled, tmp_path / "run", buildah_env, "python3")
    finally:
        stop_registry(prod)
    state = read_file(tmp_path / "environments.git", "environments/prod.yaml")
    assert state["image"]["digest"] == digest[1]
