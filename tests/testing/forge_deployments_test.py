"""The stand-in's deployment and workflow-run routes answer as GitLab's and GitHub's documentation and source say:
pagination and the finder's rules, approvals only in the extended entity of a paid tier, token scopes and roles,
job tokens; a run's actors and review history, actions: read."""
from __future__ import annotations

import requests

from tests.testing.forge import ForgeServer

PROJECT = "bank/credit-model"
ENCODED = "bank%2Fcredit-model"


def test_gitlab_deployments_list_pages_filters_and_rules(forge: ForgeServer, http: requests.Session) -> None:
    forge.add_user("glpat-reader", "reader")
    for n in range(25):
        forge.add_deployment(PROJECT, "prod" if n % 5 else "stage", job_id=100 + n, job_user="alice")
    url = f"{forge.gitlab_api}/projects/{ENCODED}/deployments"
    auth = {"PRIVATE-TOKEN": "glpat-reader"}

    first = http.get(url, params={"environment": "prod"}, headers=auth)
    assert first.status_code == 200 and len(first.json()) == 20  # per_page defaults to 20
    assert [d["deployable"]["id"] for d in first.json()][:3] == [101, 102, 103]  # sort defaults to asc, by id
    assert (first.headers["X-Total"], first.headers["X-Next-Page"], first.headers["X-Total-Pages"]) == ("20", "", "1")
    assert "approvals" not in first.json()[0]  # list items are Entities::Deployment
    newest = http.get(f"{url}?environment=prod&sort=desc&per_page=8&page=2", headers=auth)
    assert [d["deployable"]["id"] for d in newest.json()] == [114, 113, 112, 111, 109, 108, 107, 106]
    assert newest.headers["X-Next-Page"] == "3" and 'rel="next"' in newest.headers["Link"]

    assert http.get(url, params={"order_by": "ref"}, headers=auth).json() == {
        "error": "order_by does not have a valid value"}
    finished = http.get(url, params={"order_by": "finished_at"}, headers=auth)
    assert finished.status_code == 400 and finished.json()["message"].startswith(
        "400 Bad request - `finished_at` sort requires `finished_at` filter")
    updated = http.get(url, params={"updated_after": "2024-05-01T12:00:00Z"}, headers=auth)
    assert updated.json() == {"message": "400 Bad request - `updated_at` filter requires `updated_at` sort"}
    assert http.get(url, params={"status": "blocked"}, headers=auth).json() == []


def test_gitlab_deployment_approvals_by_tier_scope_and_role(forge: ForgeServer, http: requests.Session) -> None:
    forge.add_user("glpat-reader", "reader", scopes=("read_api",))
    forge.add_user("glpat-profile", "profile", scopes=("read_user",))
    forge.add_job_token("glcbt-job", "alice")
    deployment = forge.add_deployment(PROJECT, "prod", job_id=7, job_user="alice", status="blocked",
                                      rules=[("qa", 1), ("security", 2)])
    forge.approve_deployment(deployment, "bob", represented_as="security", comment="ok")
    url = f"{forge.gitlab_api}/projects/{ENCODED}/deployments/{deployment}"

    body = http.get(url, headers={"JOB-TOKEN": "glcbt-job"}).json()  # a job token may read deployments
    assert (body["status"], body["pending_approval_count"], body["deployable"]["status"]) == ("blocked", 2, "manual")
    approvals = [(a["user"]["username"], a["status"], a["comment"]) for a in body["approvals"]]
    assert approvals == [("bob", "approved", "ok")]
    rules = {rule["access_level_description"]: rule for rule in body["approval_summary"]["rules"]}
    assert rules["qa"]["deployment_approvals"] == [] and len(rules["security"]["deployment_approvals"]) == 1
    assert http.get(url, params={"job_token": "glcbt-job"}).status_code == 200

    scoped = http.get(url, headers={"PRIVATE-TOKEN": "glpat-profile"})
    assert scoped.status_code == 403 and scoped.json()["error"] == "insufficient_scope"
    assert 'error="insufficient_scope"' in scoped.headers["WWW-Authenticate"]
    forge.set_role(PROJECT, "reader", "guest")
    assert http.get(url, headers={"PRIVATE-TOKEN": "glpat-reader"}).json() == {"message": "403 Forbidden"}
    assert http.get(url).json() == {"message": "401 Unauthorized"}
    assert http.get(f"{url}0", headers={"JOB-TOKEN": "glcbt-job"}).json() == {"message": "404 Not found"}

    forge.set_gitlab_tier("free")
    free = http.get(url, headers={"JOB-TOKEN": "glcbt-job"}).json()
    assert not {"approvals", "pending_approval_count", "approval_summary"} & free.keys()


def test_github_run_and_review_history(forge: ForgeServer, http: requests.Session) -> None:
    forge.add_installation_token("ghs_reader")
    forge.add_installation_token("ghs_no_actions", "mlci-app", actions="none")
    run = forge.add_workflow_run("bank", "credit-model", actor="alice", triggering_actor="dave", run_attempt=2)
    forge.review_run("bank", "credit-model", run, user="bob", environments=["Production", "stage"])
    forge.review_run("bank", "credit-model", run, user="erin", environments=["production"], state="rejected")
    url = f"{forge.github_api}/repos/bank/credit-model/actions/runs/{run}"
    auth = {"Authorization": "Bearer ghs_reader"}

    found = http.get(url, headers=auth).json()
    assert (found["actor"]["login"], found["triggering_actor"]["login"], found["run_attempt"]) == ("alice", "dave", 2)
    history = http.get(f"{url}/approvals", headers=auth)
    assert "Link" not in history.headers
    reviews = history.json()
    assert [(r["user"]["login"], r["state"], [e["name"] for e in r["environments"]]) for r in reviews] == [
        ("bob", "approved", ["Production", "stage"]), ("erin", "rejected", ["Production"])]  # one environment
    assert reviews[0]["environments"][0]["id"] == reviews[1]["environments"][0]["id"]

    denied = http.get(f"{url}/approvals", headers={"Authorization": "Bearer ghs_no_actions"})
    assert denied.status_code == 403 and denied.json()["message"] == "Resource not accessible by integration"
    assert http.get(url).status_code == 404  # a private repository without auth
    assert http.get(f"{url}9/approvals", headers=auth).json()["message"] == "Not Found"
