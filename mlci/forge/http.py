"""One HTTP session for the forge clients: User-Agent, custom CA bundle, a narrow retry policy,
and errors that name the call but never the token."""
from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from typing import Any

import requests

from mlci import __version__
from mlci.core.errors import EnvironmentProblem
from mlci.core.log import logger, redact

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_ATTEMPTS = 5
MAX_SLEEP = 60.0
TIMEOUT = 30.0


class ForgeError(EnvironmentProblem):
    """A forge API call failed: one line naming the method, path and the server's message."""

    def __init__(self, forge: str, method: str, path: str, status: int | None, message: str, hint: str = "") -> None:
        self.status = status
        where = f"{forge} {status} on {method} {path}" if status else f"{forge}: {method} {path} failed"
        super().__init__(redact(f"{where}: {message}" + (f" ({hint})" if hint else "")))


def make_session(headers: dict[str, str], ca_bundle: str | None) -> requests.Session:
    """A session sending `headers` (auth) on every request, verifying TLS with `ca_bundle` if given."""
    session = requests.Session()
    session.headers.update({"User-Agent": f"mlci/{__version__}", "Accept": "application/json", **headers})
    if ca_bundle:
        session.verify = ca_bundle
    return session


def retry_after(response: requests.Response, attempt: int) -> float:
    """Seconds to wait before the next attempt: Retry-After (seconds or HTTP date), else 0.5 * 2**attempt."""
    header = response.headers.get("Retry-After")
    if header:
        try:
            return min(float(header), MAX_SLEEP)
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(header)
            return float(min(max(parsed.timestamp() - time.time(), 0.0), MAX_SLEEP))
    return backoff(attempt)


def backoff(attempt: int) -> float:
    """Exponential backoff: 0.5 s, 1 s, 2 s, ... at most MAX_SLEEP."""
    return min(0.5 * 2.0 ** attempt, MAX_SLEEP)


def send(session: requests.Session, method: str, url: str, *, idempotent: bool,
         sleep: Callable[[float], None] = time.sleep, **kwargs: Any) -> requests.Response:
    """One call; idempotent calls are retried on 429/5xx/connection errors, honouring Retry-After.

    A non-idempotent call is sent once: its caller decides, after looking, whether to send it again.
    """
    attempts = MAX_ATTEMPTS if idempotent else 1
    kwargs.setdefault("verify", session.verify)  # per request: REQUESTS_CA_BUNDLE must not override ca_bundle
    for attempt in range(attempts):
        try:
            response = session.request(method, url, timeout=TIMEOUT, **kwargs)
        except requests.ConnectionError as exc:
            if attempt + 1 == attempts:
                raise
            logger.debug("mlci: %s %s: %s; retrying", method, url, redact(str(exc)))
            sleep(backoff(attempt))
            continue
        if response.status_code not in RETRY_STATUSES or attempt + 1 == attempts:
            return response
        wait = retry_after(response, attempt)
        logger.info("mlci: %s %s returned %s; retrying in %.1f s", method, url, response.status_code, wait)
        sleep(wait)
    raise AssertionError("unreachable")


def server_message(response: requests.Response) -> str:
    """The error message the server put in its JSON body (`message`/`error`), else the reason."""
    try:
        body = response.json()
    except ValueError:
        return response.reason or "no message"
    if isinstance(body, dict):
        message = body.get("message") or body.get("error") or body.get("error_description")
        errors = body.get("errors")
        if errors and isinstance(errors, list) and isinstance(errors[0], dict) and errors[0].get("message"):
            message = f"{message}: {errors[0]['message']}"
        if message:
            return str(message)
    return response.reason or "no message"


class Api:
    """A forge REST API: one session, calls that raise ForgeError with a hint, and a POST sent once."""

    def __init__(self, name: str, base: str, headers: dict[str, str], ca_bundle: str | None,
                 hints: dict[int, str]) -> None:
        self.name, self.base, self.hints = name, base.rstrip("/"), hints
        self.session = make_session(headers, ca_bundle)

    def call(self, method: str, url: str, *, idempotent: bool = True, **kwargs: Any) -> requests.Response:
        """`url` is a path under the base or a full URL (pagination links); 4xx/5xx raise ForgeError."""
        full = url if url.startswith(("http://", "https://")) else self.base + url
        path = full.removeprefix(self.base)
        try:
            response = send(self.session, method, full, idempotent=idempotent, **kwargs)
        except requests.RequestException as exc:
            raise ForgeError(self.name, method, path, None, exc.__class__.__name__) from None
        if response.status_code >= 400:
            message = server_message(response)
            raise ForgeError(self.name, method, path, response.status_code, message,
                             self.hints.get(response.status_code, ""))
        return response

    def post_once(self, url: str, body: str) -> Any:
        """POST a new comment without retrying; None when the outcome is unknown (5xx, no answer)."""
        try:
            return self.call("POST", url, idempotent=False, json={"body": body}).json()
        except ForgeError as exc:
            if exc.status is None or exc.status >= 500:
                return None
            raise
