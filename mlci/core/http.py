"""HTTP for every client mlci has (forges, registries): one session per client with a User-Agent and a
custom CA bundle, and a narrow retry policy. Idempotent calls are retried on 5xx, connection errors and
rate limits; a rate limit (429, or GitHub's 403 with Retry-After / x-ratelimit-remaining: 0) means the
request was not processed, so its wait is honoured for every method: as told, when it can be read and is
at most MAX_WAIT, else the call fails at once (exit 3) naming the URL."""
from __future__ import annotations

import datetime as dt
import email.utils
import re
import time
from collections.abc import Callable
from typing import Any

import requests

from mlci import __version__
from mlci.core import jsonsafe
from mlci.core.errors import EnvironmentProblem
from mlci.core.log import logger, redact

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_ATTEMPTS = 5
MAX_WAIT = 60.0  # the longest single wait mlci honours; a longer one fails the call at once
UNTOLD_LIMIT_WAIT = 60.0  # GitHub: a secondary limit without headers means "wait at least one minute"
TIMEOUT = 30.0
# (remaining, reset at epoch second): GitHub's primary limit, GitLab's RateLimit-* headers
RESET_HEADERS = (("x-ratelimit-remaining", "x-ratelimit-reset"), ("RateLimit-Remaining", "RateLimit-Reset"))
_SECONDS = re.compile(r"\d{1,9}(\.\d{1,6})?")
_EPOCH = re.compile(r"\d{1,12}")
_PROXY_REFUSED = re.compile(r"Tunnel connection failed: 4\d\d")


class UnhonouredWait(EnvironmentProblem):
    """The server asked for a wait mlci cannot honour: longer than MAX_WAIT, or a header it cannot read."""

    def __init__(self, method: str, url: str, status: int, reason: str) -> None:
        self.status, self.reason = status, reason
        super().__init__(redact(f"{status} on {method} {url.split('?')[0]}: {reason}"))


class _Session(requests.Session):
    """A session whose own headers (credentials: PRIVATE-TOKEN, Authorization, ...) never follow a redirect to
    another origin. requests strips only `Authorization` there; any other header would reach the new host."""

    def __init__(self, credentials: tuple[str, ...]) -> None:
        super().__init__()
        self.credentials = credentials

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        """requests' own rule (Authorization, netrc), then every credential header when the origin changes."""
        super().rebuild_auth(prepared_request, response)  # type: ignore[no-untyped-call]
        old, new = response.request.url, prepared_request.url
        if old is not None and new is not None and self.should_strip_auth(old, new):  # type: ignore[no-untyped-call]
            for name in self.credentials:
                prepared_request.headers.pop(name, None)


def make_session(headers: dict[str, str], ca_bundle: str | None) -> requests.Session:
    """A session sending `headers` (auth) on every request, and only to its origin (not after a redirect to
    another host, port or scheme), verifying TLS with `ca_bundle` if given."""
    session = _Session(tuple(headers))
    session.headers.update({"User-Agent": f"mlci/{__version__}", "Accept": "application/json", **headers})
    if ca_bundle:
        session.verify = ca_bundle
    return session


def backoff(attempt: int) -> float:
    """Exponential backoff: 0.5 s, 1 s, 2 s, ... at most MAX_WAIT."""
    return min(0.5 * 2.0 ** attempt, MAX_WAIT)


def rate_limit_wait(response: requests.Response, attempt: int) -> float | None:
    """Seconds to wait when `response` refused the request for a rate limit (it was not processed), else None.

    429 always; 403 only with Retry-After, `x-ratelimit-remaining: 0` or a "rate limit" message (GitHub's
    primary and secondary limits; a plain 403 is a permission error). Raises ValueError for a wait header
    that cannot be read.
    """
    status, headers = response.status_code, response.headers
    if status not in (403, 429):
        return None
    if headers.get("Retry-After") is not None:
        return retry_after_seconds(response)
    for remaining, reset in RESET_HEADERS:
        if headers.get(remaining, "").strip() == "0" and headers.get(reset) is not None:
            value = headers[reset].strip()
            if not _EPOCH.fullmatch(value):
                raise ValueError(f"{reset} {value[:40]!r} is not a time in epoch seconds")
            return max(int(value) + 1.0 - _server_now(response), 0.0)  # +1: the epoch second is truncated
    if status == 429:
        return backoff(attempt)
    return UNTOLD_LIMIT_WAIT if "rate limit" in _message(response).lower() else None


def retry_after_seconds(response: requests.Response) -> float:
    """Retry-After as seconds: delay-seconds or an HTTP date (against the server's Date); ValueError if neither."""
    value = response.headers.get("Retry-After", "").strip()
    if _SECONDS.fullmatch(value):
        return float(value)
    when = _http_date(value)
    if when is None:
        raise ValueError(f"Retry-After {value[:40]!r} is neither seconds nor an HTTP date")
    return max(when - _server_now(response), 0.0)


def wait_for(response: requests.Response, method: str, url: str, attempt: int) -> float | None:
    """The rate-limit wait of `response` (None if it is not one); UnhonouredWait if it cannot be honoured."""
    try:
        wait = rate_limit_wait(response, attempt)
    except ValueError as exc:
        raise UnhonouredWait(method, url, response.status_code, f"rate limited, but {exc}") from None
    if wait is not None and wait > MAX_WAIT:
        raise UnhonouredWait(method, url, response.status_code,
                             f"rate limited for {wait:.0f} s, longer than mlci waits ({MAX_WAIT:.0f} s): "
                             "run the job again later")
    return wait


def send(session: requests.Session, method: str, url: str, *, idempotent: bool,
         sleep: Callable[[float], None] = time.sleep, timeout: float | tuple[float, float] = TIMEOUT,
         **kwargs: Any) -> requests.Response:
    """One call; idempotent calls are retried on 429/5xx/connection errors and rate-limit 403s.

    A non-idempotent call is sent once: its caller decides, after looking, whether to send it again
    (`wait_for` tells it how long a rate limit asks to wait). `timeout`: requests' (connect, read) seconds, for
    a call whose answer may take longer than TIMEOUT (a server storing gigabytes before it answers).
    """
    attempts = MAX_ATTEMPTS if idempotent else 1
    kwargs.setdefault("verify", session.verify)  # per request: REQUESTS_CA_BUNDLE must not override ca_bundle
    for attempt in range(attempts):
        try:
            response = session.request(method, url, timeout=timeout, **kwargs)
        except requests.exceptions.SSLError:
            raise  # a certificate problem does not clear on retry
        except requests.ConnectionError as exc:
            if attempt + 1 == attempts or _PROXY_REFUSED.search(str(exc)):
                raise  # the last attempt, or a proxy that answered 4xx (407: it wants credentials)
            logger.debug("mlci: %s %s: %s; retrying", method, url, redact(str(exc)))
            sleep(backoff(attempt))
            continue
        except requests.RequestException:
            raise
        except OSError as exc:  # requests' CA bundle lookup: a REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE path that is not there
            raise EnvironmentProblem(redact(f"{method} {url.split('?')[0]}: {exc} (a CA bundle named by a ca_bundle "
                                            "setting, REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE)")) from None
        if attempt + 1 == attempts:
            return response
        wait = wait_for(response, method, url, attempt)
        if wait is None and response.status_code in RETRY_STATUSES:
            wait = _server_error_wait(response, method, url, attempt)
        if wait is None:
            return response
        logger.info("mlci: %s %s returned %s; retrying in %.1f s", method, url.split("?")[0],
                    response.status_code, wait)
        sleep(wait)
    raise AssertionError("unreachable")


def no_answer(exc: requests.RequestException) -> str:
    """Why a request got no answer, in one line: the TLS, proxy, connection or timeout reason, not a class name."""
    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        found = re.search(r"\[[A-Z0-9_]+: [A-Z0-9_]+\] (.+?) \(_ssl\.c:\d+\)", text)
        return f"TLS: {found[1] if found else 'the handshake failed'}"
    if isinstance(exc, requests.Timeout):
        return f"no answer within {TIMEOUT:.0f} s"
    errno = re.search(r"\[Errno -?\d+\] ([^'\"()]+)", text)
    tunnel = re.search(r"Tunnel connection failed: ([^'\"()]+)", text)
    if isinstance(exc, requests.exceptions.ProxyError):
        reason = tunnel[1] if tunnel else errno[1] if errno else "unable to connect to the proxy"
        return f"the proxy: {reason.strip()}"
    if isinstance(exc, requests.ConnectionError):
        return f"cannot connect: {errno[1].strip() if errno else 'the connection failed'}"
    return exc.__class__.__name__


def _server_error_wait(response: requests.Response, method: str, url: str, attempt: int) -> float:
    """A 5xx: its Retry-After (at most MAX_WAIT) or backoff."""
    if response.headers.get("Retry-After") is None:
        return backoff(attempt)
    try:
        return min(retry_after_seconds(response), MAX_WAIT)
    except ValueError as exc:
        raise UnhonouredWait(method, url, response.status_code, str(exc)) from None


def _http_date(value: str) -> float | None:
    """An HTTP date (IMF-fixdate and the obsolete forms) as epoch seconds, or None."""
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    try:
        return when.timestamp()
    except (OverflowError, OSError, ValueError):
        return None


def _server_now(response: requests.Response) -> float:
    """The server's clock from its Date header (waits are relative to it), else ours."""
    server = _http_date(response.headers.get("Date", ""))
    return time.time() if server is None else server


def _message(response: requests.Response) -> str:
    """The `message` of a JSON error body, or ''."""
    try:
        body = jsonsafe.loads(response.content or b"null")
    except (ValueError, UnicodeDecodeError):
        return ""
    message = body.get("message") if isinstance(body, dict) else None
    return message if isinstance(message, str) else ""
