"""Who promoted, and who approved, by `promote.environments.NAME.approval.mode`:

- `forge`: the forge's record. GitLab: the approvals of the deployment the promote job makes to a protected
  environment (Deployments API). GitHub: the reviews of the workflow run for the environment (its required
  reviewers). Distinct approvers count; the promoter never does (nor, on GitLab, the pipeline's creator, nor,
  on GitHub, whoever triggered the run), whatever the forge allows.
- `variable`: a CI variable names the approver. Weak (anyone who can set variables can name anyone): used only
  when configured, and flagged in the result.
- `none`: nothing required.

Every CI variable read here is listed in docs/promote.md; a test checks the list against the code.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlci.core import log
from mlci.core.errors import ConfigError, EnvironmentProblem, GateFailed
from mlci.forge.select import JOB_TOKEN, ca_bundle_of, detect_kind
from mlci.forge.settings import LOGIN, ForgeSettings
from mlci.promote.settings import Approval

if TYPE_CHECKING:  # the forge clients are imported by the mode that reads the forge
    from mlci.forge.reviews import Review, User

GITHUB_COM_API = "https://api.github.com"
# GitLab sends no `environment:action` for the default, `start`; the others make no deployment.
DEPLOYING_ACTIONS = ("", "start")
LOCAL_USER = "local user (not a CI job)"


@dataclass(frozen=True)
class Approver:
    """Who approved, and when (GitLab; GitHub's review history has no time)."""

    login: str
    at: str | None = None


@dataclass(frozen=True)
class Approvals:
    """Who promoted into `environment` and who approved it, for the promotion record.

    `promoter_source` says where the promoter's name comes from (the forge's API, a CI variable, or the local
    user when not in CI); `weak` marks an approval anyone who can set CI variables could fake (mode variable);
    `source` names the facts the approvers were read from.
    """

    environment: str
    mode: str
    promoter: str
    promoter_source: str
    approvers: tuple[Approver, ...]
    required: int
    weak: bool
    source: str

    def record(self) -> dict[str, Any]:
        """The record's `approval` entry, as JSON."""
        return {"mode": self.mode, "promoter": self.promoter, "promoter_source": self.promoter_source,
                "approvers": [{"login": a.login, **({"at": a.at} if a.at else {})} for a in self.approvers],
                "required": self.required, "weak": self.weak, "source": self.source}


def approvals(env_name: str, approval: Approval, environ: Mapping[str, str],
              forge: ForgeSettings | None = None) -> Approvals:
    """Who promotes into `env_name` and who approved it; GateFailed (exit 1) when the approvals `approval`
    requires are not there, naming who approved so far and what would satisfy it. Forge answers: ForgeError
    (exit 3) when it cannot be reached or refuses the token, one line naming the permission needed."""
    promoter, promoter_source = promoted_by(environ)
    at = f"promote.environments.{env_name}.approval"
    if approval.mode == "none":
        return Approvals(env_name, "none", promoter, promoter_source, (), 0, False,
                         "no approval required (approval.mode none)")
    if approval.mode == "variable":
        return _from_variable(env_name, at, approval, environ, promoter, promoter_source)
    settings = forge or ForgeSettings()
    kind = detect_kind(settings, environ)
    forge_env = approval.environment or env_name
    said = (promoter, promoter_source)
    if kind == "gitlab":
        return _from_gitlab(env_name, at, approval.required, forge_env, environ, settings, said)
    if kind == "github":
        return _from_github(env_name, at, approval.required, forge_env, environ, settings, said)
    raise GateFailed(f"{at}: mode forge reads the approvals from a GitLab or GitHub CI job, and this is neither "
                     "(no GITLAB_CI, GITHUB_ACTIONS or forge.kind): promote from the environment's CI job")


def promoted_by(environ: Mapping[str, str]) -> tuple[str, str]:
    """The person who ran the promote job and where that is read: GITLAB_USER_LOGIN (GitLab; the user who
    started a manual job), GITHUB_TRIGGERING_ACTOR (GitHub; who started this attempt, another user on a re-run)
    or GITHUB_ACTOR; outside CI the local user, marked as such."""
    for name in ("GITLAB_USER_LOGIN", "GITHUB_TRIGGERING_ACTOR", "GITHUB_ACTOR"):
        value = environ.get(name, "").strip()
        if value:
            if not re.fullmatch(LOGIN, value):
                raise EnvironmentProblem(f"{name} does not hold a login (letters, digits, `.`, `_`, `-`)")
            return value, name
    import getpass  # only outside CI: no promoter variable set

    try:
        local = getpass.getuser()
    except (OSError, KeyError):  # no USER/LOGNAME and no passwd entry (a container's arbitrary uid)
        local = ""
    return (local if re.fullmatch(LOGIN, local) else "unknown"), LOCAL_USER


def _from_variable(env_name: str, at: str, approval: Approval, environ: Mapping[str, str], promoter: str,
                   promoter_source: str) -> Approvals:
    """The approver a CI variable names: weak, flagged; never the promoter."""
    name = approval.variable
    if not name:
        raise ConfigError([f"{at}.variable: name the CI variable that holds the approver (mode variable)"])
    approver = environ.get(name, "").strip()
    if not approver:
        raise GateFailed(f"{at}: mode variable: {name} is not set: set it to the approver's login when the promote "
                         "job runs (a weak approval, flagged in the record: anyone who can set CI variables can name "
                         "anyone; approval.mode forge reads the forge's own record)")
    if not re.fullmatch(LOGIN, approver):
        raise GateFailed(f"{at}: mode variable: {name} does not hold a login (letters, digits, `.`, `_`, `-`)")
    if _same(approver, promoter):
        raise GateFailed(f"{at}: mode variable: {name} names the promoter, {promoter}: nobody approves their own "
                         "promotion; someone else must be named")
    log.logger.warning("mlci: %s: approved by %s, as the CI variable %s says: a weak approval (anyone who can set "
                       "CI variables can fake it), flagged in the record", env_name, approver, name)
    return Approvals(env_name, "variable", promoter, promoter_source, (Approver(approver),), 1, True,
                     f"CI variable {name} (weak: not checked with the forge)")


def _from_gitlab(env_name: str, at: str, required: int, forge_env: str, environ: Mapping[str, str],
                 settings: ForgeSettings, said: tuple[str, str]) -> Approvals:
    """The approvals of the deployment the running job makes (CI_JOB_ID, CI_ENVIRONMENT_NAME); the promoter is
    the job's user, as GitLab's API says (checked against GITLAB_USER_LOGIN, which a pipeline variable could
    override)."""
    job_id = _ci_number(environ, "CI_JOB_ID", at, "the deployment of the running promote job")
    job_env = environ.get("CI_ENVIRONMENT_NAME", "")
    if not job_env:
        raise GateFailed(f"{at}: the promote job has no GitLab environment (CI_ENVIRONMENT_NAME is not set): give it "
                         f"`environment: {forge_env}`, a protected environment that requires {required} approval(s)")
    if job_env != forge_env:
        raise GateFailed(f"{at}: the promote job deploys to the GitLab environment {job_env!r} (CI_ENVIRONMENT_NAME), "
                         f"not {forge_env!r}: its approvals are not {env_name}'s; promote from the job of "
                         f"{forge_env!r} (or set approval.environment)")
    action = environ.get("CI_ENVIRONMENT_ACTION", "")
    if action not in DEPLOYING_ACTIONS:
        raise GateFailed(f"{at}: the promote job's `environment:action` is {action[:20]!r}, which makes no deployment "
                         "and so has no approvals: use `action: start` (the default)")
    api = settings.api_url or environ.get("CI_API_V4_URL")
    project = settings.project or environ.get("CI_PROJECT_ID") or environ.get("CI_PROJECT_PATH")
    if not api or not project:
        raise ConfigError(["forge: set forge.api_url and forge.project (or run in GitLab CI) to read the deployment "
                           "approvals"])
    token, token_env, job_token = _gitlab_token(settings, environ)
    from mlci.forge.reviews import GitLabDeployments

    client = GitLabDeployments(api, project, token, token_env, ca_bundle_of(settings, environ), job_token=job_token)
    deployment = client.of_job(job_env, job_id)
    if deployment is None:
        raise GateFailed(f"{at}: GitLab has no deployment of job {job_id} among the newest of environment {job_env!r}: "
                         "a job makes one with `environment:` (action start); was the environment renamed?")
    where = f"GitLab deployment {deployment.id} of job {job_id} (environment {job_env})"
    if deployment.reviews is None:
        raise GateFailed(f"{at}: {where}: GitLab answered without `approvals`: deployment approvals need GitLab "
                         "Premium or Ultimate; without them use approval.mode variable (weak) or none")
    promoter, promoter_source = _checked(at, where, deployment.job_user, said, f"GitLab job {job_id}")
    excluded = [user for user in (deployment.job_user, deployment.user) if user is not None]
    fix = (f"approve deployment {deployment.id} (Operate > Environments > {job_env} > Approval options)"
           if deployment.pending else
           f"make {job_env!r} a protected environment that requires at least {required} approvals (Settings > CI/CD > "
           "Protected environments), so that GitLab holds the job until they are given; then run the job again")
    counted = _count(at, where, deployment.reviews, excluded, promoter, required, fix, deployment.pending)
    return Approvals(env_name, "forge", promoter, promoter_source, counted, required, False, f"{where} at {api}")


def _from_github(env_name: str, at: str, required: int, forge_env: str, environ: Mapping[str, str],
                 settings: ForgeSettings, said: tuple[str, str]) -> Approvals:
    """The reviews of the running workflow run (GITHUB_RUN_ID) for the environment; the promoter is who started
    this attempt of the run, as GitHub's API says (checked against GITHUB_TRIGGERING_ACTOR / GITHUB_ACTOR)."""
    run_id = _ci_number(environ, "GITHUB_RUN_ID", at, "the reviews of the running workflow run")
    repository = settings.project or environ.get("GITHUB_REPOSITORY")
    if not repository:
        raise ConfigError(["forge: set forge.project (owner/repo) or run in GitHub Actions to read the run's reviews"])
    api = settings.api_url or environ.get("GITHUB_API_URL") or GITHUB_COM_API
    token_env = settings.token_env or "GITHUB_TOKEN"
    token = environ.get(token_env)
    if not token:
        raise EnvironmentProblem(f"no token to read the run's reviews: set {token_env} (forge.token_env); "
                                 "GITHUB_TOKEN needs `permissions: actions: read`")
    log.add_secret(token)
    from mlci.forge.reviews import GitHubRuns

    client = GitHubRuns(api, repository, token, token_env, ca_bundle_of(settings, environ))
    run = client.run(run_id)
    where = f"GitHub run {run_id} (environment {forge_env})"
    starter = run.triggering_actor or run.actor
    checked = run.actor if said[1] == "GITHUB_ACTOR" else starter  # GITHUB_ACTOR names who triggered the run
    _checked(at, where, checked, said, "")
    promoter, promoter_source = (starter.login, f"GitHub run {run_id}") if starter is not None else said
    reviews = [review for review in client.reviews(run_id)
               if any(name.lower() == forge_env.lower() for name in review.environments)]
    excluded = [user for user in (run.actor, run.triggering_actor) if user is not None]
    fix = (f"give the promote job `environment: {forge_env}` and require reviewers there (Settings > Environments > "
           f"{forge_env} > Required reviewers, with Prevent self-review), so that GitHub holds the job until one "
           "approves; then re-run the job")
    if required > 1:
        fix += (f"; GitHub starts the job after one approval, so approval.required {required} cannot be met there: "
                "set it to 1")
    counted = _count(at, where, reviews, excluded, promoter, required, fix, 0)
    return Approvals(env_name, "forge", promoter, promoter_source, counted, required, False, f"{where} at {api}")


def _checked(at: str, where: str, user: User | None, said: tuple[str, str], source: str) -> tuple[str, str]:
    """The promoter the forge's API names, which the CI variable (if one named the promoter) must agree with;
    the CI variable's when the API names nobody (a deleted account)."""
    if user is None:
        return said
    login, variable = said
    if variable != LOCAL_USER and not _same(user.login, login):
        raise GateFailed(f"{at}: {where}: the forge says {user.login} runs the job, {variable} says {login}: is a "
                         f"pipeline variable overriding {variable}?")
    return user.login, source


def _count(at: str, where: str, reviews: Iterable[Review], excluded: list[User], promoter: str, required: int,
           fix: str, waiting: int) -> tuple[Approver, ...]:
    """Distinct approvers other than `excluded`, at least `required` of them and no rejection, else GateFailed."""
    rejected = sorted({review.user.login for review in reviews if review.state == "rejected"})
    if rejected:
        raise GateFailed(f"{at}: {where}: rejected by {', '.join(rejected)}: a rejection stands for this deployment; "
                         "run the job again, and have the new one approved")
    approved: dict[int, Review] = {}
    for review in reviews:
        if review.state == "approved":
            approved.setdefault(review.user.id, review)
    ids = {user.id for user in excluded}
    logins = {user.login.lower() for user in excluded} | {promoter.lower()}
    counted = [r for r in approved.values() if r.user.id not in ids and r.user.login.lower() not in logins]
    ignored = sorted(r.user.login for r in approved.values() if r not in counted)
    if len(counted) >= required and not waiting:
        return tuple(Approver(r.user.login, r.at) for r in sorted(counted, key=lambda r: (r.at or "", r.user.login)))
    so_far = ", ".join(sorted(r.user.login for r in counted)) or "nobody yet"
    message = f"{at}: {len(counted)} of {required} required approval(s) on {where}: approved by {so_far}"
    if ignored:
        message += f"; not counted: {', '.join(ignored)} (nobody approves their own promotion)"
    if waiting:
        message += f"; GitLab still waits for {waiting}"
    missing = max(required - len(counted), 1)
    raise GateFailed(f"{message}; to satisfy it, {missing} more approver(s) other than {promoter}: {fix}")


def _gitlab_token(settings: ForgeSettings, environ: Mapping[str, str]) -> tuple[str, str, bool]:
    """The token, the variable it is in and whether it is a CI job token (sent as JOB-TOKEN): forge.token_env or
    GITLAB_TOKEN, else CI_JOB_TOKEN (which may read deployments from GitLab 16.2 on)."""
    job = environ.get("CI_JOB_TOKEN", "")
    log.add_secret(job)
    for name in (settings.token_env or "GITLAB_TOKEN", "CI_JOB_TOKEN"):
        token = environ.get(name, "")
        if token:
            log.add_secret(token)
            return token, name, name == "CI_JOB_TOKEN" or token == job or JOB_TOKEN.match(token) is not None
    raise EnvironmentProblem(f"no token to read the deployment approvals: set {settings.token_env or 'GITLAB_TOKEN'} "
                             "(forge.token_env), or run in a GitLab job (CI_JOB_TOKEN)")


def _ci_number(environ: Mapping[str, str], name: str, at: str, what: str) -> int:
    """A positive id from a CI variable; GateFailed when it is not set (not in the forge's CI job)."""
    value = environ.get(name, "").strip()
    if not value:
        raise GateFailed(f"{at}: mode forge reads {what}, and {name} is not set: promote from the CI job")
    if not re.fullmatch(r"[1-9][0-9]{0,17}", value):
        raise EnvironmentProblem(f"{name}={value[:40]!r}: not an id")
    return int(value)


def _same(login: str, other: str) -> bool:
    """Logins compare case-insensitively, as both forges do."""
    return login.lower() == other.lower()
