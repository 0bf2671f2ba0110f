"""Which forge, MR/PR and token a report goes to: mlci.yaml `forge`, then the CI environment."""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

from mlci.core import log
from mlci.core.errors import ConfigError, EnvironmentProblem
from mlci.forge.base import Forge
from mlci.forge.settings import ForgeSettings


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
        iid = env.get("CI_MERGE_REQUEST_IID")
        return int(iid) if iid and iid.isdigit() else None
    match = re.match(r"refs/pull/(\d+)/", env.get("GITHUB_REF", ""))
    if match:
        return int(match[1])
    event = env.get("GITHUB_EVENT_PATH")
    if event and Path(event).is_file():
        number = json.loads(Path(event).read_text()).get("pull_request", {}).get("number")
        return int(number) if number else None
    return None


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
    ca_bundle = settings.ca_bundle or env.get("REQUESTS_CA_BUNDLE") or None
    if kind == "gitlab":
        from mlci.forge.gitlab import GitLab

        api = settings.api_url or env.get("CI_API_V4_URL")
        project = settings.project or env.get("CI_PROJECT_ID") or env.get("CI_PROJECT_PATH")
        if not api or not project:
            raise ConfigError(["forge: set forge.api_url and forge.project (or run in GitLab CI)"])
        return GitLab(api, project, number, token, token_env, ca_bundle)
    from mlci.forge.github import GitHub

    api = settings.api_url or env.get("GITHUB_API_URL") or "https://api.github.com"
    project = settings.project or env.get("GITHUB_REPOSITORY")
    if not project:
        raise ConfigError(["forge: set forge.project (owner/repo) or run in GitHub Actions"])
    return GitHub(api, project, number, token, token_env, ca_bundle)
