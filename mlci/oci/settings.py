"""The `registries` section of mlci.yaml: per registry host (`HOST[:PORT]`), how to reach it and push to it.
Every OCI transfer (build, and later promotion and bundles) reads it through `options_for`."""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlci.core import log
from mlci.core.errors import ConfigError
from mlci.oci.auth import Credentials, credentials_for, credentials_from_file

DEFAULT_CHUNK_SIZE = 8 << 20  # 8 MiB: chunk buffers x concurrency = 48 MB at most
DEFAULT_CONCURRENCY = 6  # containers/image's default number of layers copied at once
MIN_CHUNK_SIZE = 64 << 10
MAX_CHUNK_SIZE = 256 << 20
MAX_CONCURRENCY = 32
HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
                  r"[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
MIRROR = re.compile(HOST.pattern + r"(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class RegistrySettings:
    """`registries.HOST[:PORT]`: credentials, TLS and transfer settings of one registry."""

    username_env: str | None = field(default=None, metadata={"doc": (
        "Name of the environment variable holding the user name (with password_env).")})
    password_env: str | None = field(default=None, metadata={"doc": (
        "Name of the environment variable holding the password or token (masked in all output).")})
    auth_file: str | None = field(default=None, metadata={"doc": (
        "A docker config.json / containers auth.json holding this host's credentials (instead of the *_env "
        "keys; default: REGISTRY_AUTH_FILE, then ~/.docker/config.json, then CI_REGISTRY_*).")})
    ca_bundle: str | None = field(default=None, metadata={"doc": (
        "A PEM CA bundle for this registry (must exist; relative to the current directory).")})
    plain_http: bool = field(default=False, metadata={"doc": (
        "Speak plain HTTP to this registry (loopback test registries only).")})
    mirrors: tuple[str, ...] = field(default=(), metadata={"doc": (
        "Pull mirrors, HOST[:PORT][/PREFIX], tried in order before the host itself for pulls (the base "
        "image); never used for pushes. A mirror's own settings come from its own registries entry.")})
    chunk_size: int = field(default=DEFAULT_CHUNK_SIZE, metadata={"doc": (
        "Bytes per upload chunk (64 KiB..256 MiB). Each blob upload holds one chunk in memory (a layer "
        "streamed while it is built: two, one sent while the other fills); a dropped connection resumes at a "
        "chunk boundary where the registry allows it. A blob over 64 MiB read from a file goes up in spans of "
        "max(64 MiB, chunk_size) streamed from it instead.")})
    concurrency: int = field(default=DEFAULT_CONCURRENCY, metadata={"doc": (
        "Blobs copied at once to or from this registry (1..32).")})


def registries_problems(registries: Mapping[str, RegistrySettings]) -> list[tuple[str, str]]:
    """(dotted key, `key: problem`) for keys that are no `HOST[:PORT]`, env names that are no names, and
    values out of range; values are never echoed except numbers."""
    problems: list[tuple[str, str]] = []

    def problem(key: str, text: str) -> None:
        problems.append((key, f"{key}: {text}"))

    for host, entry in registries.items():
        at = f"registries.{host}"
        if not HOST.fullmatch(host):
            problem(at, "not a registry host (HOST[:PORT], no scheme or path)")
        for key, name in (("username_env", entry.username_env), ("password_env", entry.password_env)):
            if name is not None and not ENV_NAME.fullmatch(name):
                problem(f"{at}.{key}", "must be the NAME of an environment variable, not its value")
        if (entry.username_env is None) != (entry.password_env is None):
            problem(at, "give both username_env and password_env, or neither")
        if entry.auth_file is not None and entry.password_env is not None:
            problem(at, "give auth_file or username_env/password_env, not both")
        if not MIN_CHUNK_SIZE <= entry.chunk_size <= MAX_CHUNK_SIZE:
            problem(f"{at}.chunk_size", f"{entry.chunk_size}: must be {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE} bytes")
        if not 1 <= entry.concurrency <= MAX_CONCURRENCY:
            problem(f"{at}.concurrency", f"{entry.concurrency}: must be 1..{MAX_CONCURRENCY}")
        for i, mirror in enumerate(entry.mirrors):
            if not MIRROR.fullmatch(mirror):
                problem(f"{at}.mirrors", f"[{i}]: not HOST[:PORT][/PREFIX]")
            elif mirror.split("/")[0] == host:
                problem(f"{at}.mirrors", f"[{i}]: the host itself is not a mirror")
    return problems


@dataclass(frozen=True)
class RegistryOptions:
    """What the engine needs to talk to one host: resolved settings, with the deprecated image.* keys folded in."""

    host: str
    plain_http: bool = False
    ca_bundle: str | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE
    concurrency: int = DEFAULT_CONCURRENCY
    mirrors: tuple[str, ...] = ()
    username_env: str | None = None
    password_env: str | None = None
    auth_file: str | None = None

    def credentials(self, env: Mapping[str, str] | None = None) -> Credentials | None:
        """The credentials for this host: the named variables, else the auth file, else the default chain."""
        environ = os.environ if env is None else env
        if self.username_env and self.password_env:
            missing = [n for n in (self.username_env, self.password_env) if not environ.get(n)]
            if missing:
                raise ConfigError([f"registries.{self.host}: {', '.join(missing)} not set (or empty) in the "
                                   "environment"])
            log.add_secret(environ[self.password_env])
            return Credentials(environ[self.username_env], environ[self.password_env])
        if self.auth_file:
            path = Path(self.auth_file)
            if not path.is_file():
                raise ConfigError([f"registries.{self.host}.auth_file: {self.auth_file}: not found (or not a file)"])
            return credentials_from_file(path, self.host)
        return credentials_for(self.host, environ)


def options_for(host: str, registries: Mapping[str, RegistrySettings] | None = None,
                legacy_plain_http: tuple[str, ...] = (), legacy_ca_bundle: str | None = None) -> RegistryOptions:
    """The options of `host`: its `registries` entry, else the deprecated image.plain_http / image.ca_bundle
    (still honoured), else defaults."""
    entry = (registries or {}).get(host)
    if entry is None:
        return RegistryOptions(host, plain_http=host in legacy_plain_http, ca_bundle=legacy_ca_bundle)
    return RegistryOptions(host, plain_http=entry.plain_http or host in legacy_plain_http,
                           ca_bundle=entry.ca_bundle or legacy_ca_bundle, chunk_size=entry.chunk_size,
                           concurrency=entry.concurrency, mirrors=entry.mirrors, username_env=entry.username_env,
                           password_env=entry.password_env, auth_file=entry.auth_file)


def deprecations(plain_http: tuple[str, ...], ca_bundle: str | None) -> list[str]:
    """The deprecation messages for the image.* keys that moved to `registries`."""
    messages = []
    if plain_http:
        messages.append("image.plain_http is deprecated (still honoured): write `registries: {HOST: "
                        "{plain_http: true}}` for " + ", ".join(plain_http))
    if ca_bundle:
        messages.append("image.ca_bundle is deprecated (still honoured): write `registries: {HOST: "
                        "{ca_bundle: PATH}}` for each registry host")
    return messages
