"""Who approved a deployment, as the forge records it: the approvals of the deployment a GitLab CI job makes
(Deployments API; Premium and Ultimate send them), and the review history of a GitHub workflow run (an
environment's required reviewers). Read only; the policy that counts them is mlci/promote/approvals.py."""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from mlci.forge.http import Api, Fields, ForgeError, Reply
from mlci.forge.settings import LOGIN

# The job's deployment is looked for among this many of the environment's newest deployments (100 a page).
MAX_DEPLOYMENT_PAGES = 10

GITLAB_HINTS = {
    401: "the token in {token_env} is missing, expired or revoked",
    403: "reading deployments needs a token with the `read_api` (or `api`) scope and at least the Reporter role "
         "in the project; CI_JOB_TOKEN may read them (GitLab 16.2 and later) as the user who runs the job, and "
         "where the project limits its job token's permissions only with `read_deployments`",
    404: "check the API URL (CI_API_V4_URL or forge.api_url), the project (CI_PROJECT_ID or forge.project) and "
         "that the token's user can see it",
}
GITLAB_API_HINT = "is forge.api_url (or CI_API_V4_URL) GitLab's API root, https://HOST/api/v4?"
GITHUB_HINTS = {
    401: "the token in {token_env} is missing, expired or revoked",
    403: "reading a run's reviews needs the `actions: read` permission: GITHUB_TOKEN gets it from the workflow's "
         "or job's `permissions:` (`actions: read`), a fine-grained token from the repository permission "
         "Actions (read); a classic token needs `repo` for a private repository",
    404: "check the API URL (GITHUB_API_URL or forge.api_url), the repository (GITHUB_REPOSITORY or "
         "forge.project) and the run (GITHUB_RUN_ID)",
}
GITHUB_API_HINT = ("is forge.api_url (or GITHUB_API_URL) GitHub's API root, https://api.github.com or "
                   "https://HOST/api/v3?")


@dataclass(frozen=True)
class User:
    """An account: its id and login (GitLab's username)."""

    id: int
    login: str


@dataclass(frozen=True)
class Review:
    """One decision on a deployment: `approved` or `rejected` (GitHub also `pending`: a comment without a
    decision), when (GitLab; GitHub's history has no time) and for which environments (GitHub; a GitLab
    approval is of its deployment's one environment)."""

    user: User
    state: str
    at: str | None = None
    environments: tuple[str, ...] = ()


@dataclass(frozen=True)
class Deployment:
    """A GitLab deployment: its status (`blocked` while it waits for approvals), environment, the job that
    makes it and who ran that job, who created the deployment, its approvals (None when GitLab sent none: the
    Free tier has no deployment approvals) and how many GitLab still waits for."""

    id: int
    status: str
    environment: str
    job_id: int | None
    job_user: User | None
    user: User | None
    reviews: tuple[Review, ...] | None
    pending: int


@dataclass(frozen=True)
class Run:
    """A GitHub workflow run: who triggered it (`actor`) and who started this attempt (`triggering_actor`,
    another user on a re-run)."""

    id: int
    attempt: int
    actor: User | None
    triggering_actor: User | None


def _user(item: Fields, login_key: str, api: Api, path: str) -> User:
    """A user object, its login checked: a forge's logins are letters, digits, `.`, `_`, `-` (and `[bot]`)."""
    login = item.text(login_key)
    if not re.fullmatch(LOGIN, login):
        raise ForgeError(api.name, "GET", path, None, f"answered a user whose login is not one: {login[:40]!r}",
                         api.api_hint)
    return User(item.number("id"), login)


def _optional_user(item: Fields | None, login_key: str, api: Api, path: str) -> User | None:
    """A user object that may be absent or null (a deleted account)."""
    return None if item is None else _user(item, login_key, api, path)


class GitLabDeployments:
    """The deployments of one GitLab project."""

    name = "GitLab"

    def __init__(self, api_url: str, project: str, token: str, token_env: str, ca_bundle: str | None, *,
                 job_token: bool) -> None:
        self.project = f"/projects/{quote(project, safe='')}"
        hints = {status: text.format(token_env=token_env) for status, text in GITLAB_HINTS.items()}
        header = {"JOB-TOKEN": token} if job_token else {"PRIVATE-TOKEN": token}
        self.api = Api(self.name, api_url, header, ca_bundle, hints, GITLAB_API_HINT)

    def of_job(self, environment: str, job_id: int) -> Deployment | None:
        """The deployment job `job_id` makes to `environment`, with its approvals, or None when there is none
        among the environment's newest MAX_DEPLOYMENT_PAGES * 100: found in the list (newest first; its items
        carry no approvals), then read whole."""
        query = {"environment": environment, "order_by": "id", "sort": "desc", "per_page": 100}
        url = f"{self.project}/deployments?{urlencode(query)}"
        for number, reply in enumerate(self.api.pages(url, _NextPage(url)), start=1):
            for item in reply.items():
                deployable = item.optional_child("deployable")
                if deployable is not None and deployable.number("id") == job_id:
                    return self.deployment(item.number("id"))
            if number == MAX_DEPLOYMENT_PAGES:
                break
        return None

    def deployment(self, deployment_id: int) -> Deployment:
        """GET /projects/:id/deployments/:deployment_id: the deployment with `approvals`, `pending_approval_count`
        and `approval_summary` (its rules' approvals, when the environment has multiple approval rules)."""
        path = f"{self.project}/deployments/{deployment_id}"
        found = self.api.call("GET", path).fields()
        deployable = found.optional_child("deployable")
        # Both lists: GitLab's source sends every approval in `approvals`, its documentation describes the rules'
        # approvals in `approval_summary` for environments with multiple approval rules; the policy counts people.
        approvals = found.objects("approvals") if found.has("approvals") else []
        summary = found.optional_child("approval_summary")
        for rule in summary.objects("rules") if summary is not None and summary.has("rules") else []:
            approvals += rule.objects("deployment_approvals") if rule.has("deployment_approvals") else []
        reviews = (tuple(self._review(approval, path) for approval in approvals)
                   if found.has("approvals") or summary is not None else None)
        return Deployment(
            found.number("id"), found.text("status"), found.child("environment").text("name"),
            None if deployable is None else deployable.number("id"),
            None if deployable is None else _optional_user(deployable.optional_child("user"), "username", self.api,
                                                           path),
            _optional_user(found.optional_child("user"), "username", self.api, path), reviews,
            found.number("pending_approval_count") if found.has("pending_approval_count") else 0)

    def _review(self, approval: Fields, path: str) -> Review:
        return Review(_user(approval.child("user"), "username", self.api, path), approval.text("status"),
                      approval.text("created_at", default="") or None)


class _NextPage:
    """GitLab's next page: X-Next-Page (empty on the last page) on the first URL, else rel="next" of Link."""

    def __init__(self, first: str) -> None:
        self.first = first

    def __call__(self, reply: Reply) -> str | None:
        page = reply.headers.get("X-Next-Page")
        if page is None:
            return reply.next_link()
        page = page.strip()
        if not page:
            return None
        if not page.isdigit():
            raise ForgeError("GitLab", "GET", self.first, None, f"X-Next-Page {page[:20]!r} is not a page number",
                             GITLAB_API_HINT)
        return f"{self.first}&{urlencode({'page': page})}"


class GitHubRuns:
    """The workflow runs of one GitHub repository."""

    name = "GitHub"

    def __init__(self, api_url: str, repository: str, token: str, token_env: str, ca_bundle: str | None) -> None:
        self.repo = f"/repos/{repository}"
        hints = {status: text.format(token_env=token_env) for status, text in GITHUB_HINTS.items()}
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                   "X-GitHub-Api-Version": "2022-11-28"}
        self.api = Api(self.name, api_url, headers, ca_bundle, hints, GITHUB_API_HINT)

    def run(self, run_id: int) -> Run:
        """GET /repos/{owner}/{repo}/actions/runs/{run_id}: who triggered the run and this attempt."""
        path = f"{self.repo}/actions/runs/{run_id}"
        found = self.api.call("GET", path).fields()
        return Run(found.number("id"), found.number("run_attempt") if found.has("run_attempt") else 1,
                   _optional_user(found.optional_child("actor"), "login", self.api, path),
                   _optional_user(found.optional_child("triggering_actor"), "login", self.api, path))

    def reviews(self, run_id: int) -> Iterator[Review]:
        """GET /repos/{owner}/{repo}/actions/runs/{run_id}/approvals: the run's review history (one answer in
        GitHub's API description; a Link header's next page is followed all the same)."""
        path = f"{self.repo}/actions/runs/{run_id}/approvals"
        for reply in self.api.pages(path, Reply.next_link):
            for item in reply.items():
                yield Review(_user(item.child("user"), "login", self.api, path), item.text("state"),
                             environments=tuple(env.text("name") for env in item.objects("environments")))
