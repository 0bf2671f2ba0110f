"""Forge API calls: errors that name the call but never the token, and JSON bodies read only through
checked accessors (`Reply`, `Fields`), so a wrong API URL answering HTML or a body without the fields
mlci reads is one line naming the URL (exit 3), never a crash."""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import requests

from mlci.core import jsonsafe
from mlci.core.errors import EnvironmentProblem
from mlci.core.http import UnhonouredWait, make_session, no_answer, send, wait_for
from mlci.core.log import redact
from mlci.forge.base import Later

MAX_PAGES = 1000  # 100,000 comments at per_page=100


class ForgeError(EnvironmentProblem):
    """A forge API call failed: one line naming the method, path and the server's message."""

    def __init__(self, forge: str, method: str, path: str, status: int | None, message: str, hint: str = "") -> None:
        self.status, self.message = status, message
        path = path.split("?")[0]  # the query (pagination) says nothing the reader needs
        where = f"{forge} {status} on {method} {path}" if status else f"{forge}: {method} {path} failed"
        super().__init__(redact(f"{where}: {message}" + (f" ({hint})" if hint else "")))


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def server_message(response: requests.Response) -> str:
    """The error message the server put in its JSON body (`message`/`error`), else the reason."""
    try:
        body = jsonsafe.loads(response.content or b"null")
    except (ValueError, UnicodeDecodeError):
        return response.reason or "no message"
    if isinstance(body, dict):
        message = body.get("message") or body.get("error")
        if isinstance(message, dict):  # GitLab: {"message": {"error": "..."}} or {"message": {"note": [...]}}
            message = "; ".join(f"{key} {value}" if key != "error" else str(value) for key, value in message.items())
        if isinstance(body.get("error"), str) and isinstance(body.get("error_description"), str):
            message = f"{body['error']}: {body['error_description']}"  # OAuth-style (insufficient_scope)
        errors = body.get("errors")
        if errors and isinstance(errors, list) and isinstance(errors[0], dict) and errors[0].get("message"):
            message = f"{message}: {errors[0]['message']}"
        if message:
            return _one_line(str(message))[:500]
    return response.reason or "no message"


def _origin(url: str) -> tuple[str, str]:
    """Scheme and host:port, lower-cased, without userinfo: where a request goes (a URL without a scheme
    has no netloc to urlsplit, so its host is what comes before the first '/')."""
    parts = urlsplit(url)
    host = parts.netloc or (url.split("/", 1)[0] if not parts.scheme else "")
    return parts.scheme.lower(), host.lower().rpartition("@")[2]


def _no_answer_hint(exc: requests.RequestException, api_hint: str) -> str:
    """What to check when the forge gave no answer at all."""
    if isinstance(exc, requests.exceptions.SSLError):
        return ("behind an internal CA, set forge.ca_bundle (or REQUESTS_CA_BUNDLE) to the PEM bundle of the CA that "
                "signed the forge's certificate")
    if isinstance(exc, requests.exceptions.ProxyError):
        return "check HTTPS_PROXY / HTTP_PROXY (and the proxy's credentials), or add the forge's host to NO_PROXY"
    return api_hint + " Is it reachable from the runner?"


class Fields:
    """A JSON object from a forge, read only by checked accessors."""

    def __init__(self, data: dict[str, Any], where: str, hint: str) -> None:
        self._data, self._where, self._hint = data, where, hint

    def _fail(self, key: str, expected: str) -> EnvironmentProblem:
        got = self._data.get(key)
        shown = "no such field" if key not in self._data else f"got {type(got).__name__}"
        return EnvironmentProblem(redact(f"{self._where}: answered without {expected} `{key}` ({shown}); "
                                         f"{self._hint}"))

    def number(self, key: str) -> int:
        """An integer field (booleans are not integers)."""
        value = self._data.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, "an integer")
        return value

    def text(self, key: str, *, default: str | None = None) -> str:
        """A string field; `default` when it is absent or null (if a default is given)."""
        value = self._data.get(key)
        if value is None and default is not None:
            return default
        if not isinstance(value, str):
            raise self._fail(key, "a string")
        return value

    def flag(self, key: str) -> bool:
        """A boolean field; absent or null is False."""
        value = self._data.get(key)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self._fail(key, "a boolean")
        return value

    def child(self, key: str) -> Fields:
        """A nested object that must be there."""
        value = self._data.get(key)
        if not isinstance(value, dict):
            raise self._fail(key, "an object")
        return Fields(value, f"{self._where} `{key}`", self._hint)

    def optional_child(self, key: str) -> Fields | None:
        """A nested object, or None when it is absent or null."""
        return None if self._data.get(key) is None else self.child(key)

    def has(self, key: str) -> bool:
        """Whether the field is there and not null (fields a forge sends only in some tiers or versions)."""
        return self._data.get(key) is not None

    def objects(self, key: str) -> list[Fields]:
        """A nested list of objects that must be there."""
        value = self._data.get(key)
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise self._fail(key, "a list of objects")
        return [Fields(item, f"{self._where} `{key}` item {n}", self._hint) for n, item in enumerate(value)]


class Reply:
    """A successful forge answer: headers, links and the JSON body through checked accessors."""

    def __init__(self, response: requests.Response, where: str, hint: str) -> None:
        self.response, self._where, self._hint = response, where, hint

    @property
    def headers(self) -> requests.structures.CaseInsensitiveDict[str]:
        """The response headers."""
        return self.response.headers

    def next_link(self) -> str | None:
        """The URL of rel="next" in the Link header, if any."""
        url = self.response.links.get("next", {}).get("url")
        return url if isinstance(url, str) and url else None

    def _json(self) -> Any:
        content_type = self.response.headers.get("Content-Type", "unknown type").split(";")[0].strip()
        try:
            return jsonsafe.loads(self.response.content)
        except (ValueError, UnicodeDecodeError):
            raise EnvironmentProblem(redact(f"{self._where}: answered {self.response.status_code} with "
                                            f"{content_type or 'no type'}, not JSON; {self._hint}")) from None

    def fields(self) -> Fields:
        """The body as one JSON object."""
        body = self._json()
        if not isinstance(body, dict):
            raise EnvironmentProblem(redact(f"{self._where}: answered a JSON {type(body).__name__}, not an "
                                            f"object; {self._hint}"))
        return Fields(body, self._where, self._hint)

    def items(self) -> list[Fields]:
        """The body as a JSON array of objects."""
        body = self._json()
        if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
            raise EnvironmentProblem(redact(f"{self._where}: answered a JSON {type(body).__name__}, not a list "
                                            f"of objects; {self._hint}"))
        return [Fields(item, f"{self._where} item {n}", self._hint) for n, item in enumerate(body)]


class Api:
    """A forge REST API: one session, calls that raise ForgeError with a hint, and a POST sent once.

    `api_hint` is what to check when an answer is not the API's (HTML, missing fields): the API URL.
    """

    def __init__(self, name: str, base: str, headers: dict[str, str], ca_bundle: str | None,
                 hints: dict[int, str], api_hint: str) -> None:
        self.name, self.base, self.hints, self.api_hint = name, base.rstrip("/"), hints, api_hint
        self.session = make_session(headers, ca_bundle)

    def _send(self, method: str, url: str, idempotent: bool, **kwargs: Any) -> tuple[str, str, requests.Response]:
        full = url if url.startswith(("http://", "https://")) else self.base + url
        path = full.removeprefix(self.base)
        if _origin(full) != _origin(self.base):  # a pagination link to another host: the token is not sent there
            raise ForgeError(self.name, method, full.split("?")[0], None, f"the API's link points away from "
                             f"{_origin(self.base)}; mlci sends the token only there", self.api_hint)
        kwargs.setdefault("allow_redirects", method in ("GET", "HEAD"))  # a redirected write would turn into a GET
        try:
            response = send(self.session, method, full, idempotent=idempotent, **kwargs)
        except UnhonouredWait as exc:
            raise ForgeError(self.name, method, path, exc.status, exc.reason) from None
        except requests.RequestException as exc:
            raise ForgeError(self.name, method, path, None, f"{_origin(full)[1]}: {no_answer(exc)}",
                             _no_answer_hint(exc, self.api_hint)) from None
        return full, path, response

    def _check(self, method: str, full: str, path: str, response: requests.Response) -> Reply:
        if response.history and _origin(response.url) != _origin(self.base):
            raise ForgeError(self.name, method, path, response.history[0].status_code,
                             f"redirected to {response.url.split('?')[0]}, another origin, where mlci does not "
                             "send the token", "set forge.api_url to the API's own URL")
        if response.status_code >= 400:
            raise ForgeError(self.name, method, path, response.status_code, server_message(response),
                             self.hints.get(response.status_code, ""))
        if response.status_code >= 300:
            raise ForgeError(self.name, method, path, response.status_code,
                             f"redirected to {response.headers.get('Location', '?')}", self.api_hint)
        return Reply(response, f"{self.name}: {method} {full.split('?')[0]}", self.api_hint)

    def call(self, method: str, url: str, **kwargs: Any) -> Reply:
        """`url` is a path under the base or a full URL (pagination links); 3xx/4xx/5xx raise ForgeError."""
        full, path, response = self._send(method, url, True, **kwargs)
        return self._check(method, full, path, response)

    def update(self, method: str, url: str, body: str) -> bool:
        """Replace a comment's body (retried like every idempotent call); False when it answers 404: the comment
        was deleted after it was listed."""
        try:
            self.call(method, url, json={"body": body})
        except ForgeError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def pages(self, url: str, following: Callable[[Reply], str | None]) -> Iterator[Reply]:
        """GET `url` and every page `following` names after it; a page named twice, or more than MAX_PAGES, is
        ForgeError (a cache that ignores the query string would otherwise repeat one page forever)."""
        seen: set[str] = set()
        next_url: str | None = url
        while next_url is not None:
            if next_url in seen or len(seen) == MAX_PAGES:
                why = (f"more than {MAX_PAGES} pages" if next_url not in seen else
                       "the same page again: the pages do not end (a cache or proxy in front of the API that ignores "
                       "the query string?)")
                raise ForgeError(self.name, "GET", next_url.removeprefix(self.base), None, why, self.api_hint)
            seen.add(next_url)
            reply = self.call("GET", next_url)
            yield reply
            next_url = following(reply)

    def post_once(self, url: str, body: str) -> Reply | Later:
        """POST a new comment without retrying: Later(wait) for a rate limit (not processed), Later(None) when
        the outcome is unknown (5xx, no answer)."""
        try:
            full, path, response = self._send("POST", url, False, json={"body": body})
        except ForgeError as exc:
            if exc.status is None:
                return Later(None)
            raise
        try:
            wait = wait_for(response, "POST", full, 0)
        except UnhonouredWait as exc:
            raise ForgeError(self.name, "POST", path, exc.status, exc.reason) from None
        if wait is not None:
            return Later(wait)
        if response.status_code >= 500:
            return Later(None)
        return self._check("POST", full, path, response)
