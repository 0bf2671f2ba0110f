"""A GitOps "remote" for tests: a real bare git repository on disk (optionally with a pre-receive hook), and
records of promotions to write into it."""
from __future__ import annotations

import datetime
import stat
import subprocess
from pathlib import Path
from typing import Any

import yaml

from mlci.promote.record import Approver, PromotionRecord, ScanFacts
from mlci.promote.settings import GitOps, PromoteSettings
from tests.testing.repos import git

T0 = datetime.datetime(2026, 12, 1, 10, 0, 0, tzinfo=datetime.UTC)
REPOSITORY = "docker://127.0.0.1:5000/risk/credit-scoring"


def bare_repo(path: Path, pre_receive: str | None = None) -> Path:
    """An empty bare repository (default branch main); `pre_receive`: a shell script run on every push."""
    path.parent.mkdir(parents=True, exist_ok=True)
    git(path.parent, "init", "-q", "--bare", "-b", "main", str(path))
    if pre_receive is not None:
        hook = path / "hooks" / "pre-receive"
        hook.write_text("#!/bin/sh\n" + pre_receive)
        hook.chmod(hook.stat().st_mode | stat.S_IXUSR)
    return path


def settings(repository: Path | str, **gitops: Any) -> PromoteSettings:
    """The promote section with only the GitOps repository set."""
    return PromoteSettings(gitops=GitOps(repository=str(repository), **gitops))


def record(n: int = 1, **fields: Any) -> PromotionRecord:
    """The n-th promotion of a model into stage: digest n*64, version v1.n.0, promoted n minutes after T0."""
    facts: dict[str, Any] = {
        "environment": "stage", "repository": REPOSITORY, "digest": "sha256:" + f"{n:x}"[-1] * 64,
        "model": "credit-scoring", "git_sha": f"{n:040x}", "promoted_at": T0 + datetime.timedelta(minutes=n),
        "promoted_by": "release-bob", "version": f"v1.{n}.0", "git_ref": f"v1.{n}.0", "tags": (f"v1.{n}.0",),
        "source": f"docker://127.0.0.1:5001/risk/credit-scoring:v1.{n}.0",
        "metrics": {"metrics.json": {"roc_auc": 0.8 + n / 100, "gini": 0.6}},
        "scan": ScanFacts("pass", T0, "policy-hash-1", db_updated_at=T0 - datetime.timedelta(hours=3),
                          db_version=2, trivy_version="0.76.0"),
        "signature": "sha256:" + "5" * 64, "approval_mode": "forge",
        "approvals": (Approver("approver-alice", "forge", T0),), "id": f"promotion-{n}",
    }
    return PromotionRecord(**{**facts, **fields})


def read_file(bare: Path, path: str = "environments/stage.yaml", rev: str = "main") -> dict[str, Any]:
    """The environment file as the remote's branch has it."""
    data = yaml.safe_load(git(bare, "show", f"{rev}:{path}"))
    assert isinstance(data, dict)
    return data


def commits(bare: Path, rev: str = "main") -> list[str]:
    """The branch's commits, newest first."""
    return git(bare, "rev-list", rev).split()


def trailers(bare: Path, rev: str) -> dict[str, str]:
    """The git trailers of a commit's message, as `git interpret-trailers --parse` reads them."""
    message = git(bare, "log", "-1", "--format=%B", rev)
    done = subprocess.run(["git", "interpret-trailers", "--parse"], cwd=bare, input=message, capture_output=True,
                          text=True, check=True)
    return dict(line.split(": ", 1) for line in done.stdout.splitlines())
