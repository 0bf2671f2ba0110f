"""Which forge, MR/PR and token a report goes to: mlci.yaml `forge`, then the CI environment.

Every CI variable read here (and in report/baseline.py and commands/report.py) is listed in docs/report.md;
a test checks the list against the code.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlci.core import jsonsafe, log
from mlci.core.errors import ConfigError, EnvironmentProblem
from mlci.forge.base import Forge
from mlci.forge.settings import ForgeSettings

MAX_EVENT_BYTES = 64 * 1024 * 1024  # GitHub caps webhook payloads at 25 MB
# GitLab 17+ job tokens: `glcbt-`, after an instance prefix if the instance sets one.
JOB_TOKEN = re.compile(r"([A-Za-z0-9]{1,20}-)?glcbt-")
GITLAB_PROJECT = ("CI_MERGE_REQUEST_PROJECT_ID", "CI_MERGE_REQUEST_PROJECT_PATH", "CI_PROJECT_ID", "CI_PROJECT_PATH")


def detect_kind(settings: ForgeSettings, env: Mapping[str, str]) -> str | None:
    """gitlab or github, from the config or the CI environment."""
    if settings.kind:
        return settings.kind
    if env.get("GITLAB_CI") or env.get("CI_API_V4_URL"):
        return "gitlab"
    if env.get("GITHUB_ACTIONS") or env.get("GITHUB_API_URL"):
        return "github"
    return None


def merge_request(kind: str, env: Mapping[str, str]) -> int | None:
    """The MR iid (GitLab) or PR number (GitHub) of this pipeline, or None outside one."""
    if kind == "gitlab":
        iid = env.get("CI_MERGE_REQUEST_IID", "").strip()
        if not iid:
            return None
        if not re.fullmatch(r"[1-9][0-9]{0,17}", iid):
            raise EnvironmentProblem(f"CI_MERGE_REQUEST_IID={iid[:40]!r}: not a merge request number")
        return int(iid)
    match = re.fullmatch(r"refs/pull/([1-9][0-9]{0,17})/(merge|head)", env.get("GITHUB_REF", ""))
    if match:
        return int(match[1])
    event = env.get("GITHUB_EVENT_PATH")
    return _event_pull_request(Path(event)) if event else None


def _event_pull_request(path: Path) -> int | None:
    """`pull_request.number` of the GitHub event payload (pull_request, pull_request_target, ...), or None when
    the event is not about a pull request; a file that is not an event payload is exit 3 naming it."""
    where = f"GITHUB_EVENT_PATH {path}"
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_EVENT_BYTES + 1)
    except OSError as exc:
        raise EnvironmentProblem(f"{where}: cannot read the event payload: {exc.strerror or exc}") from None
    if len(raw) > MAX_EVENT_BYTES:
        raise EnvironmentProblem(f"{where}: larger than {MAX_EVENT_BYTES // 2**20} MB: not an event payload")
    try:
        event: Any = jsonsafe.loads(raw)
    except RecursionError:
        raise EnvironmentProblem(f"{where}: nested too deeply: not an event payload") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise EnvironmentProblem(f"{where}: not valid JSON ({_first_line(exc)})") from None
    if not isinstance(event, dict):
        raise EnvironmentProblem(f"{where}: a JSON {type(event).__name__}, not an event object")
    pull = event.get("pull_request")
    if pull is None:
        return None
    number = pull.get("number") if isinstance(pull, dict) else None
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise EnvironmentProblem(f"{where}: pull_request.number is {json.dumps(number)[:40]}, not a positive "
                                 "integer")
    return number


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else exc.__class__.__name__


def connect(settings: ForgeSettings, env: Mapping[str, str]) -> Forge | None:
    """The forge client for this MR/PR, or None when not in one (nothing to post to)."""
    kind = detect_kind(settings, env)
    if kind is None:
        return None
    number = merge_request(kind, env)
    if number is None:
        return None
    token_env = settings.token_env or ("GITLAB_TOKEN" if kind == "gitlab" else "GITHUB_TOKEN")
    token = env.get(token_env)
    if not token:
        hint = " (CI_JOB_TOKEN cannot post merge request notes)" if kind == "gitlab" else ""
        raise EnvironmentProblem(f"no token to post the report: set {token_env} (forge.token_env){hint}")
    log.add_secret(token)
    if kind == "gitlab" and (token == env.get("CI_JOB_TOKEN") or JOB_TOKEN.match(token)):
        raise EnvironmentProblem(f"{token_env} holds a CI job token (CI_JOB_TOKEN), which cannot post merge request "
                                 f"notes: store a project access token (Reporter, `api` scope) or a personal one in "
                                 f"{token_env}, as a masked CI/CD variable")
    ca_bundle = ca_bundle_of(settings, env)
    if kind == "gitlab":
        from mlci.forge.gitlab import GitLab

        api = settings.api_url or env.get("CI_API_V4_URL")
        # The MR's own project: a fork's pipeline runs in the fork (CI_PROJECT_ID), but its MR is in the target.
        project = settings.project or next((env[name] for name in GITLAB_PROJECT if env.get(name)), None)
        if not api or not project:
            raise ConfigError(["forge: set forge.api_url and forge.project (or run in GitLab CI)"])
        return GitLab(api, project, number, token, token_env, ca_bundle, settings.bot_login)
    from mlci.forge.github import GitHub

    api = settings.api_url or env.get("GITHUB_API_URL") or "https://api.github.com"
    project = settings.project or env.get("GITHUB_REPOSITORY")
    if not project:
        raise ConfigError(["forge: set forge.project (owner/repo) or run in GitHub Actions"])
    return GitHub(api, project, number, token, token_env, ca_bundle, settings.bot_login)


def ca_bundle_of(settings: ForgeSettings, env: Mapping[str, str]) -> str | None:
    """forge.ca_bundle, else REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE (as requests reads them), checked to exist: a
    PEM file or a directory of hashed certificates."""
    for name, value in (("forge.ca_bundle", settings.ca_bundle), ("REQUESTS_CA_BUNDLE", env.get("REQUESTS_CA_BUNDLE")),
                        ("CURL_CA_BUNDLE", env.get("CURL_CA_BUNDLE"))):
        if not value:
            continue
        if not Path(value).exists():
            problem = f"{name} {value}: no such file: name the PEM bundle of the CA that signed the forge's certificate"
            raise ConfigError([problem]) if name == "forge.ca_bundle" else EnvironmentProblem(problem)
        return value
    return None
