"""The `forge` section of mlci.yaml."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class ForgeSettings:
    """`forge` in mlci.yaml: where the report is posted."""

    kind: Literal["gitlab", "github"] | None = field(default=None, metadata={"doc": (
        "gitlab or github; default: from the CI environment (GITLAB_CI / GITHUB_ACTIONS).")})
    api_url: str | None = field(default=None, metadata={"doc": (
        "API base URL; default: CI_API_V4_URL (GitLab, self-managed too) or GITHUB_API_URL.")})
    token_env: str | None = field(default=None, metadata={"doc": (
        "Name of the env var holding the token; default: GITLAB_TOKEN / GITHUB_TOKEN. Never the token.")})
    project: str | None = field(default=None, metadata={"doc": (
        "GitLab project id or path / GitHub owner/repo; default: CI_PROJECT_ID / GITHUB_REPOSITORY.")})
    ca_bundle: str | None = field(default=None, metadata={"doc": (
        "A CA bundle (PEM) for a forge behind an internal CA; default: REQUESTS_CA_BUNDLE or the system's.")})
    bot_login: str | None = field(default=None, metadata={"doc": (
        "The login whose comment the report updates, e.g. `<app-slug>[bot]` for a GitHub App token; default: the "
        "token's user (GET /user), or github-actions[bot] for an installation token (GITHUB_TOKEN).")})


# A GitHub login (an App's bot: `<slug>[bot]`) or a GitLab username.
LOGIN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}(\[bot\])?"


def forge_problems(settings: ForgeSettings) -> list[str]:
    """A token_env that is not an environment variable's name (a pasted token, say), an api_url that is no
    http(s) URL, or a bot_login that is not a login; values are never echoed."""
    problems = []
    if settings.token_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", settings.token_env):
        problems.append("forge.token_env: must be the NAME of the environment variable holding the token, "
                        "not the token")
    if settings.api_url is not None and not re.match(r"https?://[^/?#\s]", settings.api_url, re.I):
        problems.append("forge.api_url: must be an http(s):// URL (the API root, e.g. https://gitlab.bank/api/v4)")
    if settings.bot_login is not None and not re.fullmatch(LOGIN, settings.bot_login):
        problems.append("forge.bot_login: not a login (letters, digits, `.`, `_`, `-`, optionally ending in "
                        "`[bot]`)")
    return problems
