"""The GitOps record against real git: a bare repository on disk as the remote, the record written by
record_promotion, read back from the remote's branch."""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlci.core import log
from mlci.core.errors import ConfigError, EnvironmentProblem, ExitCode
from mlci.promote import gitops
from mlci.promote.record import PromotionRecord
from tests.testing.gitremote import T0, bare_repo, commits, read_file, record, settings, trailers
from tests.testing.repos import ROOT, git


@pytest.fixture(autouse=True)
def _private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The private clones go to a directory of the test's own, so a test can see that none is left."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr("tempfile.tempdir", None)
    return scratch


def _left(tmp_path: Path) -> list[str]:
    return os.listdir(tmp_path / "scratch")


def test_the_record_is_committed_and_pushed_in_its_documented_shape(tmp_path: Path) -> None:
    remote = bare_repo(tmp_path / "gitops.git")
    result = gitops.record_promotion(settings(remote), record(1, job="https://ci.example/risk/jobs/7"))

    assert (result.pushed, result.retries, result.path) == (True, 0, "environments/stage.yaml")
    assert commits(remote) == [result.commit]
    text = git(remote, "show", "main:environments/stage.yaml")
    assert text == result.document
    assert text.startswith("# The state of environment stage, written by `mlci promote`")
    assert read_file(remote) == {
        "format": 1,
        "environment": "stage",
        "image": {"ref": "127.0.0.1:5000/risk/credit-scoring@sha256:" + "1" * 64,
                  "repository": "127.0.0.1:5000/risk/credit-scoring", "digest": "sha256:" + "1" * 64,
                  "tags": ["v1.1.0"]},
        "model": {"name": "credit-scoring", "version": "v1.1.0", "git_sha": f"{1:040x}", "git_ref": "v1.1.0",
                  "metrics": {"metrics.json": {"roc_auc": 0.81, "gini": 0.6}}},
        "scan": {"verdict": "pass", "db_updated_at": "2026-12-01T07:00:00Z", "db_version": 2,
                 "scanned_at": "2026-12-01T10:00:00Z", "policy_hash": "policy-hash-1", "trivy_version": "0.76.0"},
        "signature": "sha256:" + "5" * 64,
        "approvals": {"mode": "forge", "weak": False,
                      "by": [{"login": "approver-alice", "mode": "forge", "at": "2026-12-01T10:00:00Z"}]},
        "promotion": {"id": "promotion-1", "by": "release-bob", "at": "2026-12-01T10:01:00Z",
                      "source": "docker://127.0.0.1:5001/risk/credit-scoring:v1.1.0", "forced": False,
                      "previous_digest": None, "rollback": False, "job": "https://ci.example/risk/jobs/7"},
        "history": [],
    }
    assert git(remote, "log", "-1", "--format=%s", "main").strip() == \
        "promote credit-scoring v1.1.0 to stage: sha256:111111111111"
    assert trailers(remote, "main") == {
        "Environment": "stage", "Image": "127.0.0.1:5000/risk/credit-scoring@sha256:" + "1" * 64,
        "Source": "docker://127.0.0.1:5001/risk/credit-scoring:v1.1.0", "Model": "credit-scoring v1.1.0",
        "Model-Commit": f"{1:040x}", "Previous-Digest": "none", "Rollback": "no", "Forced": "no",
        "Promoted-By": "release-bob", "Approved-By": "approver-alice (forge)", "Approval-Mode": "forge",
        "Promotion-Id": "promotion-1", "Job": "https://ci.example/risk/jobs/7"}
    assert git(remote, "log", "-1", "--format=%an", "main").strip() == "release-bob"
    assert _left(tmp_path) == []


def test_a_rollback_records_the_previous_digest_and_says_so(tmp_path: Path) -> None:
    remote = bare_repo(tmp_path / "gitops.git")
    config = settings(remote)
    first, second = record(1), record(2)
    gitops.record_promotion(config, first)
    gitops.record_promotion(config, second)
    back = gitops.record_promotion(config, dataclasses.replace(first, id="rollback-1",
                                                               promoted_at=T0.replace(hour=12)))

    assert (back.record.previous_digest, back.record.rollback) == (second.digest, True)
    state = read_file(remote)
    assert state["image"]["digest"] == first.digest
    assert (state["promotion"]["previous_digest"], state["promotion"]["rollback"]) == (second.digest, True)
    assert [(h["digest"], h["version"], h["id"]) for h in state["history"]] == [
        (second.digest, "v1.2.0", "promotion-2"), (first.digest, "v1.1.0", "promotion-1")]
    assert git(remote, "log", "-1", "--format=%s", "main").strip().endswith("(rollback)")
    assert trailers(remote, "main")["Previous-Digest"] == second.digest
    # promoting what already runs there again is recorded, and is no rollback
    again = gitops.record_promotion(config, dataclasses.replace(first, id="again-1"))
    assert (again.record.previous_digest, again.record.rollback) == (first.digest, False)
    assert len(commits(remote)) == 4


def test_the_history_is_bounded_and_git_keeps_every_promotion(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gitops, "HISTORY", 2)
    remote = bare_repo(tmp_path / "gitops.git")
    for n in range(1, 5):
        gitops.record_promotion(settings(remote), record(n))
    state = read_file(remote)
    assert state["promotion"]["id"] == "promotion-4"
    assert [h["id"] for h in state["history"]] == ["promotion-3", "promotion-2"]
    assert [trailers(remote, c)["Promotion-Id"] for c in commits(remote)] == [f"promotion-{n}" for n in range(4, 0, -1)]


def test_environments_have_their_own_files(tmp_path: Path) -> None:
    remote = bare_repo(tmp_path / "gitops.git")
    gitops.record_promotion(settings(remote), record(1))
    prod = gitops.record_promotion(settings(remote, path="deploy/{env}/image.yaml"),
                                   record(2, environment="prod"))
    assert prod.path == "deploy/prod/image.yaml"
    assert read_file(remote, "deploy/prod/image.yaml")["promotion"]["previous_digest"] is None
    assert read_file(remote)["image"]["digest"] == record(1).digest


def test_a_push_beaten_by_another_promotion_is_applied_on_top(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Another promotion pushes between this one's fetch and its push: git refuses ours (fetch first); the
    record is applied again on top of the other, which stays."""
    remote = bare_repo(tmp_path / "gitops.git")
    config = settings(remote)
    gitops.record_promotion(config, record(1))
    fetch = gitops._Clone._fetch
    raced: list[str] = []

    def fetch_then_race(clone: gitops._Clone) -> str | None:
        head = fetch(clone)
        if not raced:
            raced.append("")
            raced[0] = gitops.record_promotion(config, record(2)).commit or ""
        return head

    monkeypatch.setattr(gitops._Clone, "_fetch", fetch_then_race)
    monkeypatch.setattr(gitops, "BACKOFF", 0.01)
    result = gitops.record_promotion(config, record(3))

    assert result.retries == 1
    assert commits(remote) == [result.commit, raced[0], commits(remote)[-1]]
    assert result.record.previous_digest == record(2).digest
    assert [h["id"] for h in read_file(remote)["history"]] == ["promotion-2", "promotion-1"]


_PROMOTER = """
import json, os, sys, time
from pathlib import Path
from mlci.promote import gitops
from tests.testing.gitremote import record, settings
n, remote, start = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
Path(f"{start}.ready-{n}").touch()
while not start.exists():
    time.sleep(0.005)
result = gitops.record_promotion(settings(remote), record(n, promoted_by=f"promoter-{n}"))
print(json.dumps({"retries": result.retries, "commit": result.commit, "previous": result.record.previous_digest}))
"""


def test_four_concurrent_promotions_to_one_environment_keep_every_record(tmp_path: Path) -> None:
    """Four processes promote into stage at once; the remote takes its time over each push (a hook), so they
    all fetch the same head and all but one lose the race: each retries on top until it lands."""
    remote = bare_repo(tmp_path / "gitops.git", pre_receive="sleep 0.2\n")
    start = tmp_path / "start"
    procs = [subprocess.Popen([sys.executable, "-c", _PROMOTER, str(n), str(remote), str(start)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(1, 5)]
    deadline = time.monotonic() + 30
    while len(list(tmp_path.glob("start.ready-*"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)  # every interpreter is up, waiting for the start
    start.touch()
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [err for _, err in outputs]
    import json
    results = [json.loads(out) for out, _ in outputs]

    history = commits(remote)
    assert len(history) == 4
    ids = [trailers(remote, c)["Promotion-Id"] for c in history]
    assert sorted(ids) == [f"promotion-{n}" for n in range(1, 5)]
    assert sorted(r["commit"] for r in results) == sorted(history)
    # every commit's "previous" is what its parent recorded: no promotion overwrote another unseen
    for commit, parent in zip(history, [*history[1:], None], strict=True):
        previous = trailers(remote, commit)["Previous-Digest"]
        assert previous == (read_file(remote, rev=parent)["image"]["digest"] if parent else "none")
    state = read_file(remote)
    assert {state["image"]["digest"], *(h["digest"] for h in state["history"])} == \
        {record(n).digest for n in range(1, 5)}
    assert sum(r["retries"] for r in results) >= 1  # they raced: the pushes that lost were retried


def test_an_unreachable_remote_is_exit_3_in_one_line_without_its_credential(tmp_path: Path,
                                                                            fresh_secrets: None) -> None:
    url = "https://deploy-bot:gitops-s3cret-pw@127.0.0.1:9/risk/gitops.git"
    with pytest.raises(EnvironmentProblem) as caught:
        gitops.record_promotion(settings(url), record(1))
    message = str(caught.value)
    assert caught.value.exit_code == ExitCode.ENVIRONMENT
    assert "\n" not in message
    assert "gitops-s3cret-pw" not in message and "deploy-bot:" not in message
    assert message.startswith("promote.gitops.repository https://[MASKED]@127.0.0.1:9/risk/gitops.git: cannot be "
                              "reached: ")
    assert log.redact("gitops-s3cret-pw") == log.MASK  # registered: masked wherever git might print it
    assert _left(tmp_path) == []


def test_a_missing_local_repository_is_exit_3(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentProblem) as caught:
        gitops.record_promotion(settings(tmp_path / "nowhere.git"), record(1))
    assert "\n" not in str(caught.value) and str(tmp_path / "nowhere.git") in str(caught.value)
    assert _left(tmp_path) == []


def test_a_refused_push_is_exit_3_with_the_remote_s_reason_and_not_retried(tmp_path: Path) -> None:
    remote = bare_repo(tmp_path / "gitops.git", pre_receive=(
        f"echo x >> {tmp_path}/pushes\n"
        "echo 'GitLab: You are not allowed to push code to protected branches on this project.' >&2\nexit 1\n"))
    with pytest.raises(EnvironmentProblem) as caught:
        gitops.record_promotion(settings(remote), record(1))
    assert str(caught.value) == (
        f"promote.gitops.repository {remote}: the push to branch main was refused: [remote rejected] (pre-receive "
        "hook declined); the remote says: GitLab: You are not allowed to push code to protected branches on this "
        "project.")
    assert (tmp_path / "pushes").read_text() == "x\n"
    assert commits_or_none(remote) is None


def commits_or_none(bare: Path) -> list[str] | None:
    done = subprocess.run(["git", "rev-parse", "--verify", "-q", "main"], cwd=bare, capture_output=True, text=True)
    return None if done.returncode else commits(bare)


def test_no_secret_reaches_the_file_or_the_commit(tmp_path: Path, fresh_secrets: None) -> None:
    token = "glpat-Zk3xS3cretT0ken"
    log.add_secret(token)
    remote = bare_repo(tmp_path / "gitops.git")
    leaky = record(1, promoted_by=f"bob {token}", source="docker://ci:registry-pw-123@127.0.0.1:5001/risk/m:v1",
                   job=f"https://oauth2:{token}@ci.example/jobs/7", metrics={"metrics.json": {"note": token}})
    gitops.record_promotion(settings(remote), leaky)
    everything = (git(remote, "log", "--format=%an%n%cn%n%B", "main")
                  + git(remote, "show", "main:environments/stage.yaml"))
    assert token not in everything and "registry-pw-123" not in everything
    assert "docker://[MASKED]@127.0.0.1:5001/risk/m:v1" in everything
    assert read_file(remote)["model"]["metrics"] == {"metrics.json": {"note": log.MASK}}


def test_a_file_that_is_not_an_mlci_record_is_not_overwritten(tmp_path: Path) -> None:
    remote = bare_repo(tmp_path / "gitops.git")
    seed = tmp_path / "seed"
    git(tmp_path, "clone", "-q", str(remote), str(seed))
    (seed / "environments").mkdir()
    (seed / "environments" / "stage.yaml").write_text("replicas: 3\nimage: nginx:1.27\n")
    git(seed, "add", "-A")
    git(seed, "commit", "-qm", "hand-written")
    git(seed, "push", "-q", "origin", "HEAD:main")
    before = commits(remote)
    with pytest.raises(ConfigError) as caught:
        gitops.record_promotion(settings(remote), record(1))
    assert caught.value.exit_code == ExitCode.USAGE
    assert "environments/stage.yaml: not an mlci promotion record" in str(caught.value)
    assert commits(remote) == before


def test_a_path_leading_out_of_the_gitops_repository_is_refused(tmp_path: Path) -> None:
    remote = bare_repo(tmp_path / "gitops.git")
    seed, outside = tmp_path / "seed", tmp_path / "outside"
    outside.mkdir()
    git(tmp_path, "clone", "-q", str(remote), str(seed))
    (seed / "environments").symlink_to(outside)
    git(seed, "add", "-A")
    git(seed, "commit", "-qm", "a link")
    git(seed, "push", "-q", "origin", "HEAD:main")
    with pytest.raises(ConfigError, match="leads out of the GitOps repository through a symlink"):
        gitops.record_promotion(settings(remote), record(1))
    assert os.listdir(outside) == []


@pytest.mark.parametrize("path", ["../stage.yaml", "/etc/{env}.yaml", ".git/config", "envs/"])
def test_a_path_outside_the_repository_is_a_config_error(tmp_path: Path, path: str) -> None:
    with pytest.raises(ConfigError, match=r"promote\.gitops\.path"):
        gitops.record_promotion(settings(tmp_path, path=path), record(1))


@pytest.mark.parametrize("branch", ["-f", "a..b", "main:other", "with space"])
def test_a_branch_git_would_misread_is_a_config_error(tmp_path: Path, branch: str) -> None:
    remote = bare_repo(tmp_path / "gitops.git")
    with pytest.raises(ConfigError, match=r"promote\.gitops\.branch: "):
        gitops.record_promotion(settings(remote, branch=branch), record(1))
    assert _left(tmp_path) == []


@pytest.mark.parametrize("url", ["-uhttps://x/y.git", "ext::sh -c touch% /tmp/pwned"])
def test_repository_urls_git_would_misread_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match=r"promote\.gitops\.repository"):
        gitops.record_promotion(settings(url), record(1))


def test_without_push_the_commit_stays_in_the_private_clone(tmp_path: Path) -> None:
    remote = bare_repo(tmp_path / "gitops.git")
    result = gitops.record_promotion(settings(remote, push=False), record(1))
    assert (result.pushed, result.commit is not None) == (False, True)
    assert result.document is not None and "promotion-1" in result.document
    assert commits_or_none(remote) is None
    assert _left(tmp_path) == []


def test_without_a_repository_nothing_is_recorded() -> None:
    result = gitops.record_promotion(settings(""), record(1))
    assert (result.commit, result.pushed, result.record) == (None, False, record(1))


_TERMINATED = """
import sys
from mlci.core.signals import Terminated
from mlci.promote import gitops
from tests.testing.gitremote import record, settings
try:
    gitops.record_promotion(settings(sys.argv[1]), record(1))
except Terminated:
    sys.exit(143)
"""


def test_sigterm_during_the_push_stops_git_and_removes_the_private_clone(tmp_path: Path) -> None:
    started = tmp_path / "hook-started"
    remote = bare_repo(tmp_path / "gitops.git", pre_receive=f"touch {started}\nsleep 30\n")
    child = subprocess.Popen([sys.executable, "-c", _TERMINATED, str(remote)], cwd=ROOT, stderr=subprocess.PIPE,
                             text=True)
    deadline = time.monotonic() + 20
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert started.exists()
    # the private clone and the git child's private TMPDIR, while it pushes
    assert sorted(name.split("-")[1] for name in _left(tmp_path)) == ["gitops", "tmp"]
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=15)
    assert child.returncode == 143, err
    assert _left(tmp_path) == []
    assert commits_or_none(remote) is None


def test_the_record_s_json_is_what_the_file_holds(tmp_path: Path) -> None:
    remote = bare_repo(tmp_path / "gitops.git")
    result = gitops.record_promotion(settings(remote), record(1))
    on_file = read_file(remote)
    on_file.pop("history")
    assert on_file == _plain(result.record)


def _plain(value: PromotionRecord) -> dict[str, object]:
    import json
    return dict(json.loads(json.dumps(value.to_json())))


@pytest.mark.parametrize("gitops_section, problem", [
    ({"repository": "ext::sh -c touch% /tmp/pwned"}, "promote.gitops.repository: git's TRANSPORT::ADDRESS"),
    ({"repository": "--upload-pack=touch /tmp/pwned"}, "promote.gitops.repository: must not start with '-'"),
    ({"repository": "/srv/gitops.git", "path": "../x.yaml"}, "promote.gitops.path: '../x.yaml': must be a file path"),
    ({"repository": "/srv/gitops.git", "path": ".git/hooks/{env}"}, "promote.gitops.path: '.git/hooks/{env}'"),
    ({"repository": "/srv/gitops.git", "path": "envs/{nope}.yaml"}, "{env} is its only placeholder"),
    ({"repository": "/srv/gitops.git", "path": "envs/a\nb.yaml"}, "'envs/a\\\\nb.yaml': {env} is its only"),
])
def test_gitops_settings_git_cannot_use_are_config_problems_before_any_promotion(
        tmp_path: Path, gitops_section: dict[str, str], problem: str) -> None:
    """They were refused by record_promotion, after the image was copied and tagged and the audit line written;
    `mlci config check` said ok."""
    import json

    from mlci import settings as cfg

    (tmp_path / "mlci.yaml").write_text(json.dumps({"version": 1, "promote": {"gitops": gitops_section}}))
    with pytest.raises(ConfigError) as refused:
        cfg.load(None, tmp_path, environ={})
    assert len(refused.value.problems) == 1 and problem in refused.value.problems[0], refused.value.problems


def test_a_branch_git_would_refuse_stops_a_promotion_before_any_write() -> None:
    """git judges the branch name: checked before the image is copied, not when the record is written after it."""
    from mlci.promote.settings import GitOps, PromoteSettings

    with pytest.raises(ConfigError, match=r"promote\.gitops\.branch: 'a\.\.b' is not a branch name git accepts"):
        gitops.check_before_writes(PromoteSettings(gitops=GitOps(repository="/srv/gitops.git", branch="a..b")))
    gitops.check_before_writes(PromoteSettings(gitops=GitOps(repository="/srv/gitops.git", branch="main")))
    gitops.check_before_writes(PromoteSettings(gitops=GitOps(branch="a..b")))  # no repository: nothing recorded
