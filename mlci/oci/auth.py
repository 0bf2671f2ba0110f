"""Registry credentials (REGISTRY_AUTH_FILE or docker config.json, else GitLab's CI_REGISTRY_* variables;
never argv) and the auth challenge
of the distribution spec: `WWW-Authenticate: Basic realm=...` or `Bearer realm=...,service=...,scope=...`."""
from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mlci.core import log
from mlci.core.errors import ConfigError

_PARAM = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class Credentials:
    """A username and password (or identity token) for one registry."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password='[MASKED]')"


@dataclass(frozen=True)
class Challenge:
    """A parsed WWW-Authenticate header."""

    scheme: str  # "basic" | "bearer"
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge:
    """`Bearer realm="...",service="...",scope="..."` -> Challenge("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    return Challenge(scheme.lower(), dict(_PARAM.findall(rest)))


def auth_files(env: Mapping[str, str]) -> list[Path]:
    """Where credentials are looked up, in order: REGISTRY_AUTH_FILE, $DOCKER_CONFIG, ~/.docker."""
    files = []
    if env.get("REGISTRY_AUTH_FILE"):
        files.append(Path(env["REGISTRY_AUTH_FILE"]))
    docker = Path(env["DOCKER_CONFIG"]) if env.get("DOCKER_CONFIG") else Path(env.get("HOME", "~")) / ".docker"
    files.append(docker / "config.json")
    return files


def credentials_for(host: str, env: Mapping[str, str] | None = None) -> Credentials | None:
    """The credentials stored for `host` in the first auth file that has them (registered as secrets)."""
    environ = os.environ if env is None else env
    for path in auth_files(environ):
        if not path.is_file():
            continue
        try:
            auths = json.loads(path.read_text(encoding="utf-8")).get("auths", {})
        except (ValueError, AttributeError):
            raise ConfigError([f"{path}: not a valid auth file (expected JSON with `auths`)"]) from None
        entry = auths.get(host) or auths.get(f"https://{host}") or auths.get(f"http://{host}")
        if not entry:
            continue
        if entry.get("auth"):
            user, _, password = base64.b64decode(entry["auth"]).decode("utf-8").partition(":")
        else:
            user, password = entry.get("username", ""), entry.get("password", "")
        if entry.get("identitytoken"):
            user, password = "<token>", entry["identitytoken"]
        log.add_secret(password)
        log.add_secret(entry.get("auth"))
        return Credentials(user, password)
    return _ci_registry(host, environ)


def _ci_registry(host: str, env: Mapping[str, str]) -> Credentials | None:
    """GitLab's own registry credentials (CI_REGISTRY, CI_REGISTRY_USER, CI_REGISTRY_PASSWORD)."""
    if env.get("CI_REGISTRY") == host and env.get("CI_REGISTRY_USER") and env.get("CI_REGISTRY_PASSWORD"):
        log.add_secret(env["CI_REGISTRY_PASSWORD"])
        return Credentials(env["CI_REGISTRY_USER"], env["CI_REGISTRY_PASSWORD"])
    return None


def basic_header(creds: Credentials) -> str:
    """The Authorization value for Basic auth."""
    return "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
