"""`mlci report` on a repo laid out like DVC's example-get-started: metrics and plots are files in a DVC
output directory, only in the DVC remote. A fresh CI clone must show the baseline's and the head's
metrics and plots, fetch nothing else, and say which files it cannot read, at which revision, and why."""
from __future__ import annotations

import json
from pathlib import Path

import requests
import yaml

from tests.report.get_started import GetStarted, ci_clone, remote_without
from tests.testing import repos
from tests.testing.forge import ForgeServer

TOKEN = "glpat-report-uploads-0042"


def _report(clone: Path, base: str, out: Path, *args: str, env: dict[str, str] | None = None) -> str:
    done = repos.run_mlci(clone, "report", "--base", base, "--out", str(out), *args, env=env)
    assert done.returncode == 0, done.stderr
    return done.stderr


def _objects(root: Path) -> set[str]:
    """The md5 of every object in a DVC cache or local remote (files/md5/ab/cdef... -> abcdef...)."""
    return {p.parent.name + p.name for p in (root / "files" / "md5").rglob("*") if p.is_file()} \
        if (root / "files" / "md5").is_dir() else set()


def _unwanted(project: GetStarted) -> set[str]:
    """Objects the report must never fetch: the model, and eval/ files that are not metrics or plots."""
    found = set()
    for rev in (project.base, project.head):
        lock = yaml.safe_load(repos.git(project.upstream, "show", f"{rev}:dvc.lock"))
        found.add(lock["stages"]["train"]["outs"][0]["md5"])
        eval_dir = next(o["md5"] for o in lock["stages"]["evaluate"]["outs"] if o["path"] == "eval")
        listing = json.loads((project.remote / "files" / "md5" / eval_dir[:2] / eval_dir[2:]).read_text())
        found.update(e["md5"] for e in listing if e["relpath"] == "predictions.csv")
    return found


def test_both_revisions_metrics_and_plots_come_from_the_remote_and_nothing_else(
        get_started: GetStarted, tmp_path: Path) -> None:
    clone = ci_clone(get_started, tmp_path / "ci")
    log = _report(clone, get_started.base, tmp_path / "report.md", "--dry-run")
    body = (tmp_path / "report.md").read_text()
    assert "| `eval/metrics.json:roc_auc` | 0.8 | 0.9 | +0.1 (+12.50%) | ⬆️ 🟢 |" in body
    assert "| `eval/metrics.json:avg_prec.test` | 0.7 | 0.8 |" in body
    assert "| `eval/metrics.json:roc_auc` | min 0.5 | 0.9 | ✅ |" in body
    # the CSV plot (values as strings) is a line of each revision, the confusion plot a table of counts
    assert "🟦 baseline `train.csv` · 🟧 baseline `test.json` · 🟩 this MR `train.csv` · 🟥 this MR `test.json`" in body
    assert "| **0** | 4 → 5 | 1 → 0 |" in body and "| **1** | 1 → 0 | 4 → 5 |" in body
    assert f"`eval/plots/importance.png` (baseline, {get_started.base[:12]}): dry run, not uploaded" in body
    assert "warning" not in log and "Not everything" not in body
    assert not (clone / "eval").exists() and not (clone / "model" / "model.bin").exists()
    assert not (clone / "dvc_plots").exists()  # DVC's copies of the images went to a temp dir, not the workspace
    assert not _objects(clone / ".dvc" / "cache") & _unwanted(get_started)
    assert _unwanted(get_started) <= _objects(get_started.remote)  # they were there to be fetched


def test_outputs_missing_from_the_remote_are_named_with_revision_and_reason(
        get_started: GetStarted, tmp_path: Path) -> None:
    remote = remote_without(get_started, tmp_path / "remote", get_started.base)
    clone = ci_clone(get_started, tmp_path / "ci", remote)
    log = _report(clone, get_started.base, tmp_path / "report.md", "--dry-run")
    body = (tmp_path / "report.md").read_text()
    assert "| `eval/metrics.json:roc_auc` | — | 0.9 | new | 🆕 |" in body
    (warning,) = [line for line in log.splitlines() if "DVC outputs not in the local DVC cache" in line]
    assert warning.startswith("mlci: warning: ")
    assert "the DVC remote `store` has no copy or cannot be read from this job" in warning
    # the whole eval/ directory is missing, so DVC names it rather than each plot file
    assert warning.endswith(f"at baseline ({get_started.base[:12]}): `eval/metrics.json`, "
                            "(every plot: failed to load directory ('eval',))")
    assert "this MR" not in warning  # the head's outputs were read
    assert warning.removeprefix("mlci: warning: ") in body
    assert "🟦 this MR `train.csv` · 🟧 this MR `test.json`" in body  # the head's plots are still drawn


def test_a_remote_that_breaks_after_dvc_cached_a_commit_is_still_reported(
        get_started: GetStarted, tmp_path: Path) -> None:
    """`dvc exp show` remembers what it once read of a commit: the report must not trust that memory."""
    clone = ci_clone(get_started, tmp_path / "ci")
    _report(clone, get_started.base, tmp_path / "first.md", "--dry-run")
    repos.dvc(clone, "remote", "modify", "--local", "store", "url",
              str(remote_without(get_started, tmp_path / "remote", get_started.base)))
    log = _report(clone, get_started.base, tmp_path / "second.md", "--dry-run")
    assert "| `eval/metrics.json:roc_auc` | — | 0.9 |" in (tmp_path / "second.md").read_text()
    assert f"at baseline ({get_started.base[:12]}): `eval/metrics.json`" in log


def test_a_repo_without_metrics_and_with_a_broken_plot_says_so(tmp_path: Path) -> None:
    dvc_yaml = "plots:\n- loss.csv: {template: nosuch, x: step, y: loss}\n"
    repo = repos.tiny_dvc_repo(tmp_path / "repo", dvc_yaml, {"loss.csv": "step,loss\n1,2\n"})
    log = _report(repo, "HEAD", tmp_path / "report.md", "--dry-run")
    body = (tmp_path / "report.md").read_text()
    for line in ("no metrics to compare: DVC finds no metrics in this repo (declare them under `metrics:` in dvc.yaml)",
                 f"plots left out: `dvc plots diff {repos.git(repo, 'rev-parse', 'HEAD').strip()}` failed: "
                 "ERROR: unexpected error - Template 'nosuch' not found."):
        assert f"mlci: warning: {line}" in log and f"> - {line}" in body


def _gitlab_env(forge: ForgeServer) -> dict[str, str]:
    return {"GITLAB_CI": "true", "CI_API_V4_URL": forge.gitlab_api, "CI_PROJECT_ID": "bank/get-started",
            "CI_MERGE_REQUEST_IID": "3", "GITLAB_TOKEN": TOKEN}


def test_image_plots_are_uploaded_to_gitlab_and_shown_in_the_note(
        get_started: GetStarted, tmp_path: Path, forge: ForgeServer) -> None:
    forge.add_user(TOKEN, "mlci-bot")
    forge.add_merge_request("bank/get-started", 3)
    clone = ci_clone(get_started, tmp_path / "ci")
    _report(clone, get_started.base, tmp_path / "report.md", env=_gitlab_env(forge))
    uploads = {u.filename: u for u in forge.uploads("bank/get-started")}
    assert set(uploads) == {"baseline-importance.png", "this-MR-importance.png"}
    assert uploads["baseline-importance.png"].data == get_started.images[get_started.base]
    assert uploads["this-MR-importance.png"].data == get_started.images[get_started.head]
    (note,) = forge.notes("bank/get-started", 3)
    for who, name in (("baseline", "baseline-importance.png"), ("this MR", "this-MR-importance.png")):
        assert f"![eval/plots/importance.png ({who})]({uploads[name].url})" in note["body"]
        served = requests.get(f"{forge.url}/bank/get-started{uploads[name].url}", timeout=5)
        assert served.status_code == 200 and served.content == uploads[name].data
    assert not (tmp_path / "report-plots").exists()  # stored by GitLab: nothing saved beside the report


def test_on_github_image_plots_link_to_the_run_artifacts(
        get_started: GetStarted, tmp_path: Path, forge: ForgeServer) -> None:
    forge.add_user("ghp_personal_token_77", "ml-bot")
    forge.add_pull_request("bank", "get-started", 5)
    clone = ci_clone(get_started, tmp_path / "ci")
    env = {"GITHUB_ACTIONS": "true", "GITHUB_API_URL": forge.github_api, "GITHUB_REPOSITORY": "bank/get-started",
           "GITHUB_REF": "refs/pull/5/merge", "GITHUB_TOKEN": "ghp_personal_token_77", "GITHUB_RUN_ID": "4242",
           "GITHUB_SERVER_URL": "https://github.bank.example"}
    _report(clone, get_started.base, tmp_path / "report.md", env=env)
    (comment,) = forge.comments("bank", "get-started", 5)
    run = "https://github.bank.example/bank/get-started/actions/runs/4242"
    assert f"[eval/plots/importance.png (this MR)]({run})" in comment["body"]
    saved = tmp_path / "report-plots" / "this-MR-importance.png"
    assert f"`{saved}` in the job's artifacts; GitHub has no upload API" in comment["body"]
    assert saved.read_bytes() == get_started.images[get_started.head]
    assert not forge.request_count("POST", r"/uploads")
