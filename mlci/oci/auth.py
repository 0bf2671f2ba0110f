"""Registry credentials and the auth challenge of the distribution spec (`WWW-Authenticate: Basic
realm=...` or `Bearer realm=...,service=...,scope=...`).

Credentials are looked up, in order, in REGISTRY_AUTH_FILE, then `$DOCKER_CONFIG/config.json` (default
`~/.docker/config.json`): the `auths` entry of the host (`auth`, or `username`/`password`, or
`identitytoken`); then GitLab's CI_REGISTRY_USER / CI_REGISTRY_PASSWORD when the host is CI_REGISTRY.
Credential helpers (`credsStore`, `credHelpers`) are not run. Never from argv."""
from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlci.core import jsonsafe, log
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
    explicit = environ.get("REGISTRY_AUTH_FILE")
    if explicit and not Path(explicit).is_file():
        raise ConfigError([f"REGISTRY_AUTH_FILE={explicit}: not found (or not a file)"])
    for path in auth_files(environ):
        if not path.is_file():
            continue
        auths, helpers = _read_auth_file(path)
        entry = auths.get(host) or auths.get(f"https://{host}") or auths.get(f"http://{host}")
        if not entry:
            if host in helpers:
                log.logger.warning("mlci: %s names a credential helper for %s; mlci does not run credential "
                                   "helpers (write the credentials into REGISTRY_AUTH_FILE)", path, host)
            continue
        return _entry_credentials(entry, path, host)
    return _ci_registry(host, environ)


def credentials_from_file(path: Path, host: str) -> Credentials | None:
    """The credentials for `host` in one auth file (registries.HOST.auth_file), registered as secrets."""
    auths, helpers = _read_auth_file(path)
    entry = auths.get(host) or auths.get(f"https://{host}") or auths.get(f"http://{host}")
    if not entry:
        if host in helpers:
            log.logger.warning("mlci: %s names a credential helper for %s; mlci does not run credential helpers",
                               path, host)
        return None
    return _entry_credentials(entry, path, host)


def _read_auth_file(path: Path) -> tuple[dict[str, Any], set[str]]:
    """(`auths`, hosts with a credential helper) of an auth file; ConfigError naming it when malformed."""
    try:
        data = jsonsafe.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError([f"{path}: not a readable auth file ({exc.__class__.__name__}; "
                           "expected JSON with `auths`)"]) from None
    auths = data.get("auths", {}) if isinstance(data, dict) else None
    if not isinstance(auths, dict) or not all(isinstance(v, dict) for v in auths.values()):
        raise ConfigError([f"{path}: not a valid auth file (expected JSON with `auths`: host -> mapping)"])
    helpers = data.get("credHelpers")
    hosts = set(helpers) if isinstance(helpers, dict) else set()
    if data.get("credsStore"):
        hosts.update(auths)
    return auths, hosts


def _entry_credentials(entry: dict[str, Any], path: Path, host: str) -> Credentials:
    for value in (entry.get("auth"), entry.get("password"), entry.get("identitytoken")):
        if isinstance(value, str):
            log.add_secret(value)
    if isinstance(entry.get("identitytoken"), str) and entry["identitytoken"]:
        return Credentials("<token>", entry["identitytoken"])
    if isinstance(entry.get("auth"), str) and entry["auth"]:
        try:
            user, colon, password = base64.b64decode(entry["auth"], validate=True).decode("utf-8").partition(":")
        except ValueError:
            colon = ""
        if not colon:
            raise ConfigError([f"{path}: auths.{host}.auth: not base64 of `user:password`"])
        log.add_secret(password)
        return Credentials(user, password)
    name, secret = entry.get("username"), entry.get("password")
    if not isinstance(name, str) or not isinstance(secret, str):
        raise ConfigError([f"{path}: auths.{host}: no `auth`, `username`/`password` or `identitytoken`"])
    return Credentials(name, secret)


def _ci_registry(host: str, env: Mapping[str, str]) -> Credentials | None:
    """GitLab's own registry credentials (CI_REGISTRY, CI_REGISTRY_USER, CI_REGISTRY_PASSWORD)."""
    if env.get("CI_REGISTRY") == host and env.get("CI_REGISTRY_USER") and env.get("CI_REGISTRY_PASSWORD"):
        log.add_secret(env["CI_REGISTRY_PASSWORD"])
        return Credentials(env["CI_REGISTRY_USER"], env["CI_REGISTRY_PASSWORD"])
    return None


def basic_header(creds: Credentials) -> str:
    """The Authorization value for Basic auth."""
    return "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
