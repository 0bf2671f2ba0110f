"""Real git + DVC repositories for tests: the example model repo copied out and `git init`ed."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.testing.gitlab_ci_local import make_git_repo

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "example-model-repo"
ONE_STAGE = """\
stages:
  make:
    cmd: python make.py
    deps: [make.py]
    outs: [out.txt]
"""  # a one-stage dvc.yaml: make.py (MAKE) writes out.txt
MAKE = "open('out.txt', 'w').write('x')\n"
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "mlci tests", "GIT_AUTHOR_EMAIL": "tests@mlci.invalid",
    "GIT_COMMITTER_NAME": "mlci tests", "GIT_COMMITTER_EMAIL": "tests@mlci.invalid",
}


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` and return its stdout (raises on failure)."""
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout


def commit_all(repo: Path, message: str) -> str:
    """Stage everything and commit; returns the new commit sha."""
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


def example_repo(dest: Path) -> Path:
    """Copy example-model-repo to `dest` as a fresh git repo with an `origin` remote and one commit."""
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("data", "model", "cache", "tmp"))
    return make_git_repo(dest)


def copy_repo(src: Path, dest: Path) -> Path:
    """A full copy of a repo (workspace, .git, DVC cache), symlinks kept as links."""
    shutil.copytree(src, dest, symlinks=True)
    return dest


def run_mlci(repo: Path, *args: str, check: bool = False, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    """Run `python -m mlci ARGS` in `repo`, capturing output."""
    import os
    done = subprocess.run([sys.executable, "-m", "mlci", *args], cwd=repo, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"mlci {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def tiny_dvc_repo(dest: Path, dvc_yaml: str, files: dict[str, str]) -> Path:
    """A small real git + DVC repo with the given dvc.yaml and files, committed."""
    dest.mkdir(parents=True)
    git(dest, "init", "-q", "-b", "main")
    subprocess.run(["dvc", "init", "-q"], cwd=dest, check=True)
    (dest / "dvc.yaml").write_text(dvc_yaml)
    for name, text in files.items():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_text(text)
    commit_all(dest, "tiny repo")
    return dest


def dvc(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `dvc ARGS` in `repo` (raises on failure)."""
    return subprocess.run(["dvc", *args], cwd=repo, capture_output=True, text=True, check=True)


def commit_model_change(repo: Path, lr: str, auc: float) -> str:
    """An MR's kind of commit on the example: a new learning rate and the roc_auc it gave; returns the sha."""
    import json
    import re

    params = repo / "params.yaml"
    params.write_text(re.sub(r"learning_rate: \S+", f"learning_rate: {lr}", params.read_text()))
    metrics = json.loads((repo / "metrics.json").read_text())
    metrics["roc_auc"] = auc
    (repo / "metrics.json").write_text(json.dumps(metrics))
    return commit_all(repo, f"lr {lr}")
