"""HTTP for every client mlci has (forges, registries): one session per client with a User-Agent and a
custom CA bundle, and a narrow retry policy: only idempotent calls are retried, on 429, 5xx and
connection errors, with exponential backoff that honours Retry-After."""
from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from typing import Any

import requests

from mlci import __version__
from mlci.core.log import logger, redact

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_ATTEMPTS = 5
MAX_SLEEP = 60.0
TIMEOUT = 30.0


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
