"""HTTP to one Nexus host over core.http: its `registries` entry's credentials (Basic, sent pre-emptively as Nexus
clients do, and only to that origin) and CA bundle; one-line errors that name the host and never a credential."""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from mlci.core import jsonsafe
from mlci.core.errors import ConfigError
from mlci.core.http import make_session, no_answer, send
from mlci.nexus.errors import NexusError
from mlci.nexus.location import RawLocation
from mlci.oci.auth import basic_header
from mlci.oci.settings import RegistrySettings, options_for

MAX_JSON = 16 << 20  # an answer of the REST API longer than this is refused, not read
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_STANDARD_REASONS = frozenset({"", "bad request", "unauthorized", "forbidden", "not found"})


class Dropped(Exception):
    """The connection broke (or timed out) before an answer came: the request may or may not have landed."""


class NexusHttp:
    """Calls to the Nexus host of `location` with the credentials and CA bundle `registries` gives it."""

    def __init__(self, location: RawLocation, registries: Mapping[str, RegistrySettings] | None = None,
                 env: Mapping[str, str] | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        options = options_for(location.host, registries)
        if location.scheme == "http" and not options.plain_http:
            raise ConfigError([f"{location}: plain HTTP to Nexus needs `registries: {{{location.host}: "
                               "{plain_http: true}}` (loopback test servers only: credentials would travel in clear)"])
        if options.ca_bundle and not Path(options.ca_bundle).is_file():
            raise ConfigError([f"registries.{location.host}.ca_bundle: {options.ca_bundle}: not found (or not a file)"])
        credentials = options.credentials(env)
        self.host, self.sleep = location.host, sleep
        self.has_credentials = credentials is not None
        self.session = make_session({"Authorization": basic_header(credentials)} if credentials else {},
                                    options.ca_bundle)

    def call(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """An idempotent call (retried by core.http); no answer at all is a NexusError naming why."""
        try:
            return send(self.session, method, url, idempotent=True, sleep=self.sleep, **kwargs)
        except requests.RequestException as exc:
            raise NexusError(f"Nexus {self.host}: {method} {_path(url)}: {no_answer(exc)}") from None

    def call_once(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """A call sent once (a body that is a stream cannot be sent again by a retry); Dropped when the connection
        broke or timed out, a NexusError for a TLS failure (it does not clear on a retry)."""
        try:
            return send(self.session, method, url, idempotent=False, sleep=self.sleep, **kwargs)
        except requests.exceptions.SSLError as exc:
            raise NexusError(f"Nexus {self.host}: {method} {_path(url)}: {no_answer(exc)}") from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise Dropped(no_answer(exc)) from None
        except requests.RequestException as exc:
            raise NexusError(f"Nexus {self.host}: {method} {_path(url)}: {no_answer(exc)}") from None

    def refusal(self, response: requests.Response, method: str, url: str, repository: str) -> NexusError:
        """The one-line error for an answer that is not one mlci can go on from."""
        status, where = response.status_code, f"Nexus {self.host}: {response.status_code} on {method} {_path(url)}"
        if status == 401 and not self.has_credentials:
            return NexusError(f"{where}: Nexus wants credentials (`registries: {{{self.host}: {{username_env, "
                              "password_env}}}` or auth_file)")
        if status == 401:
            return NexusError(f"{where}: the credentials were refused (registries.{self.host})")
        if status == 403:
            privileges = ", ".join(f"nx-repository-view-raw-{repository}-{p}" for p in ("add", "read", "browse"))
            return NexusError(f"{where}: the user lacks a privilege on {repository} (the CI role needs {privileges})")
        said = message(response)
        return NexusError(f"{where}: {said}" if said else where)

    def json(self, response: requests.Response, what: str) -> Any:
        """The JSON body of a streamed answer, at most MAX_JSON bytes; NexusError naming `what` otherwise."""
        data = bytearray()
        try:
            for chunk in response.iter_content(1 << 20):
                data += chunk
                if len(data) > MAX_JSON:
                    raise NexusError(f"Nexus {self.host}: {what} is more than the {MAX_JSON} bytes mlci reads")
        except requests.RequestException as exc:
            raise NexusError(f"Nexus {self.host}: {what}: the answer broke off ({exc.__class__.__name__})") from None
        try:
            return jsonsafe.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise NexusError(f"Nexus {self.host}: {what} is not JSON (is {self.host} a Nexus?)") from None


def message(response: requests.Response) -> str:
    """What Nexus said about a refusal, one line of at most 200 characters: its reason phrase when it is not the
    standard one (Nexus puts its message there), else the start of a text body; '' when there is neither."""
    reason = (response.reason or "").strip()
    if reason.lower() not in _STANDARD_REASONS:
        text = reason
    elif "text/html" in response.headers.get("Content-Type", ""):
        text = ""
    else:
        try:
            text = response.content[:400].decode("utf-8", "replace")
        except requests.RequestException:
            text = ""
    return _CONTROL.sub(" ", text).strip()[:200]


def _path(url: str) -> str:
    return urlsplit(url).path
