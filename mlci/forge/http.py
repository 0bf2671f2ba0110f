"""Forge API calls: errors that name the call but never the token, and the server's message."""
from __future__ import annotations

from typing import Any

import requests

from mlci.core.errors import EnvironmentProblem
from mlci.core.http import make_session, send
from mlci.core.log import redact


class ForgeError(EnvironmentProblem):
    """A forge API call failed: one line naming the method, path and the server's message."""

    def __init__(self, forge: str, method: str, path: str, status: int | None, message: str, hint: str = "") -> None:
        self.status = status
        where = f"{forge} {status} on {method} {path}" if status else f"{forge}: {method} {path} failed"
        super().__init__(redact(f"{where}: {message}" + (f" ({hint})" if hint else "")))


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
