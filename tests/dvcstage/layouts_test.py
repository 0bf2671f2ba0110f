"""DVC repos laid out unlike the example, against real DVC: pipelines in subdirectories (a monorepo of
models, `wdir`), templated stages, frozen and persistent outputs, directory outputs beside DVC's
.gitignore, globs over DVC outputs, and hostile pipeline files anywhere in the workspace."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlci.dvcstage.fetch import pull_missing
from tests.testing import repos

# A model in its own directory of a monorepo: its weights in a directory output, a feature file made in a
# sub-wdir, and `NOISE` bytes of os.urandom in the weights (0: deterministic).
MODEL_YAML = """\
stages:
  train:
    cmd: python train.py
    deps: [train.py]
    outs: [model/weights.bin]
    metrics:
      - metrics.json: {cache: false}
  features:
    wdir: features
    cmd: python -c "open('feat.txt', 'w').write('f' * 3000)"
    outs: [feat.txt]
"""
TRAIN = ("import os\nos.makedirs('model', exist_ok=True)\n"
         "open('model/weights.bin', 'wb').write(b'w' * 5000 + os.urandom({}))\n"
         "open('metrics.json', 'w').write('{{\"auc\": 0.75}}')\n")
SPLITS = """\
stages:
  split:
    foreach: [train, test]
    do:
      cmd: >-
        python -c "import os; os.makedirs('data/prepared', exist_ok=True);
        open('data/prepared/${item}.csv', 'w').write('a\\\\n1\\\\n')"
      outs: ['data/prepared/${item}.csv']
"""


def _mlci(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlci", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, check=False, timeout=120)


@pytest.fixture(scope="module")
def trained_monorepo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One DVC repo at the git root (a remote, the root's own foreach stages); the model in models/credit,
    whose weights are not deterministic. Trained and pushed once."""
    tmp_path = tmp_path_factory.mktemp("monorepo")
    repo = repos.tiny_dvc_repo(tmp_path / "mono", SPLITS, {
        "models/credit/dvc.yaml": MODEL_YAML, "models/credit/train.py": TRAIN.format(16),
        "models/credit/features/.keep": "", "models/credit/mlci.yaml": "version: 1\n"})
    repos.dvc(repo, "remote", "add", "-d", "store", str(tmp_path / "remote"))
    repos.dvc(repo, "repro", "dvc.yaml", "models/credit/dvc.yaml")
    repos.dvc(repo, "push")
    repos.commit_all(repo, "trained")
    return repo


@pytest.fixture
def monorepo(trained_monorepo: Path, tmp_path: Path) -> Path:
    """A private copy of the trained monorepo (workspace, git history, DVC cache)."""
    return repos.copy_repo(trained_monorepo, tmp_path / "mono")


def _fresh_clone(repo: Path, dest: Path) -> Path:
    """A CI job's checkout: git only, no DVC cache, no outputs (their directories exist for .gitignore)."""
    repos.git(repo.parent, "clone", "-q", str(repo), str(dest))
    return dest


def test_pull_finds_outputs_under_directories_and_globs_from_a_models_directory(trained_monorepo: Path,
                                                                                 tmp_path: Path) -> None:
    clone = _fresh_clone(trained_monorepo, tmp_path / "clone")
    model = clone / "models" / "credit"
    assert (model / "model" / ".gitignore").is_file() and not (model / "model" / "weights.bin").exists()
    # paths relative to the model's directory (where its mlci.yaml is), the DVC repo being the git root
    assert pull_missing(["model", "../../data/prepared/*.csv", "features/feat.txt"], model) == [
        "models/credit/model/weights.bin", "data/prepared/train.csv", "data/prepared/test.csv",
        "models/credit/features/feat.txt"]
    assert (model / "model" / "weights.bin").stat().st_size == 5016
    assert (clone / "data" / "prepared" / "test.csv").read_text() == "a\n1\n"
    assert pull_missing(["model", "../../data/prepared/*.csv"], model) == []  # all there now


def test_lock_and_determinism_gates_see_a_pipeline_in_a_subdirectory(monorepo: Path) -> None:
    repo = monorepo
    (repo / "models" / "credit" / "model" / "weights.bin").unlink()  # re-made with other bytes
    shutil.rmtree(repo / ".dvc" / "cache")  # not restored from the run-cache
    changed = _mlci(repo, "repro", "--check-lock", "--no-pull", "--", "models/credit/dvc.yaml")
    assert changed.returncode == 1, changed.stderr
    assert ("mlci: stage 'models/credit/dvc.yaml:train': outputs models/credit/model/weights.bin changed by this "
            "run: commit the updated dvc.lock") in changed.stderr
    proved = _mlci(repo, "repro", "--check-determinism", "--no-check-lock", "--no-pull", "--json",
                   "--", "models/credit/dvc.yaml")
    assert proved.returncode == 1
    assert "mlci: stage 'models/credit/dvc.yaml:train': output models/credit/model/weights.bin is not " \
           "deterministic" in proved.stderr
    outputs = {o["path"]: o["stage"] for o in json.loads(proved.stdout)["outputs"]}
    assert outputs["models/credit/features/feat.txt"] == "models/credit/dvc.yaml:features"  # its wdir resolved


def test_the_report_from_a_models_directory_finds_its_metrics_without_false_warnings(trained_monorepo: Path) -> None:
    done = _mlci(trained_monorepo / "models" / "credit", "report", "--dry-run", "--base", "HEAD")
    assert done.returncode == 0 and done.stderr == ""  # `dvc exp show` names files from the root, the diff not
    assert "| `metrics.json:auc` | 0.75 | 0.75 |" in done.stdout
    # From below the model's mlci.yaml (a job's `cd src`, or --repo): the same report, the same gates. DVC ran
    # in the current directory, named the file `../metrics.json`, dropped it as leading out: a missing metric.
    for cwd, args in ((trained_monorepo / "models" / "credit" / "features", ()),
                      (trained_monorepo / "models" / "credit", ("--repo", "features"))):
        below = _mlci(cwd, "report", "--dry-run", "--base", "HEAD", *args)
        assert (below.returncode, below.stderr, below.stdout) == (0, "", done.stdout), below.stderr


def test_a_models_directory_says_how_to_reproduce_it_from_the_repo_root(trained_monorepo: Path) -> None:
    repo = trained_monorepo
    done = _mlci(repo / "models" / "credit", "repro")
    assert done.returncode == 2
    assert done.stderr.strip().endswith(f"run mlci repro at its root and name this pipeline: cd {repo} && mlci repro "
                                        "--config models/credit/mlci.yaml -- models/credit/dvc.yaml")


STATEFUL = """\
stages:
  make:
    cmd: python -c "open('out.txt', 'w').write('x')"
    outs: [out.txt]
  fixed:
    cmd: python -c "open('fixed.txt', 'w').write('once')"
    outs: [fixed.txt]
  log:
    cmd: python -c "open('log.txt', 'a').write('one more run\\\\n')"
    deps: [out.txt]
    outs:
      - log.txt: {persist: true}
"""


def test_determinism_keeps_frozen_outputs_and_never_touches_persistent_ones(tmp_path: Path) -> None:
    repo = repos.tiny_dvc_repo(tmp_path / "repo", STATEFUL, {})
    (repo / "log.txt").write_text("history\n" * 200_000)  # large: would be hard-linked into the scratch copy
    repos.dvc(repo, "repro")
    repos.dvc(repo, "freeze", "fixed")
    repos.commit_all(repo, "trained")
    log = (repo / "log.txt").read_bytes()
    done = _mlci(repo, "repro", "--check-determinism", "--check-lock")
    assert done.returncode == 0, done.stderr
    assert ("mlci: warning: stage 'log': output log.txt has `persist: true` (its stage starts from its last "
            "content), so a re-run cannot show it deterministic: not compared") in done.stderr
    assert (repo / "log.txt").read_bytes() == log  # the scratch run appended to its own copy


DIRECTORY_DEP = """\
stages:
  train:
    cmd: python -c "import os; os.makedirs('models', exist_ok=True); open('models/a.bin', 'w').write('a')"
    outs: [models/a.bin]
  evaluate:
    cmd: python -c "open('score.txt', 'w').write(open('models/a.bin').read())"
    deps: [models]
    outs: [score.txt]
"""


def test_a_directory_dep_missing_its_outputs_in_a_fresh_clone_is_not_a_stale_lock(tmp_path: Path) -> None:
    repo = repos.tiny_dvc_repo(tmp_path / "repo", DIRECTORY_DEP, {})
    repos.dvc(repo, "repro")
    repos.commit_all(repo, "trained")
    clone = _fresh_clone(repo, tmp_path / "clone")  # no remote: models/ holds only DVC's .gitignore
    done = _mlci(clone, "repro", "--check-lock", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["stages"]["train"] == "ran"
    (clone / "models" / "b.bin").write_text("a file nobody declared")  # really modified: still refused
    done = _mlci(clone, "repro", "--check-lock")
    assert done.returncode == 1 and "stage 'evaluate': dependency models modified" in done.stderr


def test_hostile_pipeline_files_in_any_directory_are_exit_2_naming_them(monorepo: Path) -> None:
    repo = monorepo
    evil = repo / "models" / "evil"
    evil.mkdir()
    (evil / "dvc.yaml").write_text("stages:\n  x:\n    cmd: echo\n    meta: " + "[" * 3000 + "]" * 3000 + "\n")
    done = _mlci(repo, "repro", "--no-pull", "--", "models/credit/dvc.yaml")
    assert (done.returncode, done.stderr) == (2, "models/evil/dvc.yaml:4: nested deeper than 64 levels\n")
    (evil / "dvc.yaml").write_text("stages:\n  x:\n    cmd: echo\n")
    (evil / "params.yaml").write_text("".join(  # DVC reads a dvc.yaml's params.yaml for its templating
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9) if i else 'x, x, x, x, x, x, x, x, x'}]\n" for i in range(9)))
    started = time.monotonic()
    for args in (("repro", "--no-pull"), ("report", "--dry-run", "--base", "HEAD")):
        done = _mlci(repo, *args)
        assert done.returncode == 2 and done.stderr.startswith("models/evil/params.yaml:6: more than 100000 values")
    assert time.monotonic() - started < 20


def test_the_image_of_a_model_in_a_monorepo_holds_its_weights_from_dvc(trained_monorepo: Path, tmp_path: Path) -> None:
    from tests.image.support import image_files

    clone = _fresh_clone(trained_monorepo, tmp_path / "clone")
    repos.dvc(clone, "config", "--local", "cache.type", "symlink")  # weights become links into the root's cache
    layout = tmp_path / "layout"
    done = _mlci(clone / "models" / "credit", "build", "--tag", "t1", env={
        "MLCI_IMAGE_NAME": f"oci:{layout}", "MLCI_IMAGE_CODE": "train.py", "MLCI_IMAGE_ARTIFACTS": "model"})
    assert done.returncode == 0, done.stderr
    weights = image_files(layout, "t1")["app/model/weights.bin"]
    assert isinstance(weights, bytes) and weights.startswith(b"w" * 5000) and len(weights) == 5016
