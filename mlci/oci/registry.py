"""A client for the OCI distribution API over `requests`: ping, Basic and Bearer-token auth from the
WWW-Authenticate challenge, manifests (OCI and Docker v2 schema 2, indexes), blobs (HEAD, streaming
GET verified as it streams, monolithic and chunked upload, cross-repository mount), tag listing.

Reads are retried (core.http); uploads are not: a failed copy is re-run, and blobs already present
are skipped, as skopeo does."""
from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import urljoin

import requests

from mlci.core.errors import EnvironmentProblem, UsageError
from mlci.core.http import make_session, send
from mlci.core.log import logger
from mlci.oci.auth import Credentials, basic_header, parse_challenge

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
CHUNK = 1 << 20


class RegistryError(EnvironmentProblem):
    """A registry call failed: one line with the call, the status and the registry's error codes."""


class NotFound(EnvironmentProblem):
    """The manifest (tag or digest) is not there: the one answer that means "not built yet"."""


@dataclass(frozen=True)
class Manifest:
    """A manifest's exact bytes, media type and digest."""

    data: bytes
    media_type: str
    digest: str


class VerifyingReader(io.RawIOBase):
    """A read-only stream over chunks that hashes what passes and fails at the end on a mismatch."""

    def __init__(self, chunks: Iterator[bytes], digest: str, what: str) -> None:
        super().__init__()
        self._chunks, self._digest, self._what = chunks, digest, what
        self._hasher, self._buffer, self._done = hashlib.sha256(), b"", False

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer and not self._done:
            try:
                self._buffer = next(self._chunks)
                self._hasher.update(self._buffer)
            except StopIteration:
                self._done = True
                got = "sha256:" + self._hasher.hexdigest()
                if got != self._digest:
                    raise EnvironmentProblem(f"{self._what}: digest did not match, got {got}") from None
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


def sha256_digest(data: bytes) -> str:
    """The OCI digest of bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Registry:
    """One registry host; credentials and a CA bundle are per client, tokens are cached per scope."""

    def __init__(self, host: str, *, plain_http: bool = False, ca_bundle: str | None = None,
                 credentials: Credentials | None = None) -> None:
        if ca_bundle and not Path(ca_bundle).is_file():
            raise UsageError(f"CA bundle {ca_bundle}: not found (or not a file)")
        self.host = host
        self.base = f"{'http' if plain_http else 'https'}://{host}"
        self.credentials = credentials
        self.session = make_session({}, ca_bundle)
        self._auth: dict[str, str] = {}  # scope -> Authorization header value

    def _call(self, method: str, url: str, scope: str, *, ok: tuple[int, ...], idempotent: bool = True,
              **kwargs: Any) -> requests.Response:
        full = urljoin(self.base, url)
        headers = dict(kwargs.pop("headers", {}))
        for attempt in range(2):
            if scope in self._auth:
                headers["Authorization"] = self._auth[scope]
            try:
                response = send(self.session, method, full, idempotent=idempotent, headers=headers, **kwargs)
            except requests.RequestException as exc:
                raise RegistryError(f"registry {self.host}: {method} {url.split('?')[0]}: "
                                    f"{exc.__class__.__name__}") from None
            except OSError as exc:  # requests' own checks, e.g. a CA bundle path that does not exist
                raise RegistryError(f"registry {self.host}: {method} {url.split('?')[0]}: {exc}") from None
            if response.status_code == 401 and attempt == 0 and "WWW-Authenticate" in response.headers:
                self._authenticate(response.headers["WWW-Authenticate"], scope)
                continue
            if response.status_code not in ok:
                raise RegistryError(f"registry {self.host}: {response.status_code} on {method} {url.split('?')[0]}: "
                                    f"{_errors(response)}")
            return response
        raise AssertionError("unreachable")

    def _authenticate(self, header: str, scope: str) -> None:
        challenge = parse_challenge(header)
        if challenge.scheme == "basic":
            if self.credentials is None:
                raise RegistryError(f"registry {self.host} needs credentials "
                                    "(docker config.json or REGISTRY_AUTH_FILE)")
            self._auth[scope] = basic_header(self.credentials)
            return
        realm = challenge.params.get("realm")
        if challenge.scheme != "bearer" or not realm:
            raise RegistryError(f"registry {self.host}: unsupported auth challenge {challenge.scheme!r}")
        params = {"service": challenge.params.get("service", "")}
        if scope:
            params["scope"] = scope
        headers = {"Authorization": basic_header(self.credentials)} if self.credentials else {}
        try:
            response = send(self.session, "GET", realm, idempotent=True, params=params, headers=headers)
        except OSError as exc:
            raise RegistryError(f"registry {self.host}: token service {realm}: {exc.__class__.__name__}") from None
        if response.status_code != 200:
            raise RegistryError(f"registry {self.host}: token service refused ({response.status_code}); "
                                "check the credentials for this registry")
        try:
            body = response.json()
        except ValueError:
            body = None
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not token or not isinstance(token, str):
            raise RegistryError(f"registry {self.host}: token service returned no token")
        self._auth[scope] = f"Bearer {token}"

    def ping(self) -> None:
        """GET /v2/: the registry answers, speaks the distribution API, and accepts the credentials.
        Sent once, not retried: this is the first contact, and a registry that is down fails the job now."""
        response = self._call("GET", "/v2/", "", ok=(200,), idempotent=False)
        if "Docker-Distribution-API-Version" not in response.headers \
                and "json" not in response.headers.get("Content-Type", ""):
            raise RegistryError(f"registry {self.host}: GET /v2/ answered, but not as a registry "
                                f"({response.headers.get('Content-Type') or 'no content type'}); check the host")

    def check_push(self, repo: str) -> None:
        """Open an upload session and cancel it: the credentials may push to `repo` (before any build)."""
        scope = _push(repo)
        response = self._call("POST", f"/v2/{repo}/blobs/uploads/", scope, ok=(202,), idempotent=False)
        location = response.headers.get("Location")
        try:  # a registry that cannot cancel lets the session expire: not worth failing the build for
            if location:
                self._call("DELETE", location, scope, ok=(204, 404), idempotent=False)
        except RegistryError as exc:
            logger.debug("mlci: %s", exc)

    def blob_exists(self, repo: str, digest: str) -> bool:
        """HEAD the blob: True on 200, False on 404, an error otherwise."""
        response = self._call("HEAD", f"/v2/{repo}/blobs/{digest}", _pull(repo), ok=(200, 404))
        return response.status_code == 200

    def open_blob(self, repo: str, digest: str) -> BinaryIO:
        """A blob as a stream that verifies its sha256 when it reaches the end."""
        response = self._call("GET", f"/v2/{repo}/blobs/{digest}", _pull(repo), ok=(200,), stream=True)
        reader = VerifyingReader(response.iter_content(CHUNK), digest, f"registry {self.host}: blob {digest} of {repo}")
        return cast(BinaryIO, io.BufferedReader(reader, CHUNK))

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Cross-repository mount: True if the registry linked the blob without an upload."""
        scope = f"{_push(repo)} {_pull(from_repo)}"
        response = self._call("POST", f"/v2/{repo}/blobs/uploads/?mount={digest}&from={from_repo}", scope,
                              ok=(201, 202), idempotent=False)
        if response.status_code == 202:  # not mounted: an upload session was opened instead; close it
            self._call("DELETE", response.headers["Location"], scope, ok=(204, 404), idempotent=False)
            return False
        return True

    def upload_blob(self, repo: str, digest: str, data: BinaryIO, size: int, chunk_size: int | None = None) -> None:
        """Upload a blob: one PUT (monolithic), or PATCH chunks then PUT (chunked, for large layers)."""
        scope = _push(repo)
        location = self._call("POST", f"/v2/{repo}/blobs/uploads/", scope, ok=(202,),
                              idempotent=False).headers["Location"]
        if chunk_size:
            offset = 0
            while offset < size:
                chunk = data.read(chunk_size)
                response = self._call("PATCH", location, scope, ok=(202,), idempotent=False, data=chunk, headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}", "Content-Length": str(len(chunk))})
                location, offset = response.headers["Location"], offset + len(chunk)
            body: Any = b""
        else:
            body = _Sized(data, size)
        self._call("PUT", _with_digest(location, digest), scope, ok=(201,), idempotent=False, data=body,
                   headers={"Content-Type": "application/octet-stream",
                            "Content-Length": str(0 if chunk_size else size)})

    def get_manifest(self, repo: str, reference: str) -> Manifest:
        """A manifest by tag or digest, in whatever OCI/Docker type the registry has; digests verified."""
        response = self._call("GET", f"/v2/{repo}/manifests/{reference}", _pull(repo), ok=(200, 404),
                              headers={"Accept": ", ".join(MANIFEST_TYPES)})
        if response.status_code == 404:
            raise NotFound(f"registry {self.host}: {repo}:{reference} not found ({_errors(response)})")
        data = response.content
        digest = sha256_digest(data)
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError(f"registry {self.host}: manifest {reference} of {repo}: digest did not match")
        media_type = response.headers.get("Content-Type", "").split(";")[0] or OCI_MANIFEST
        return Manifest(data, media_type, digest)

    def put_manifest(self, repo: str, reference: str, manifest: Manifest) -> str:
        """PUT a manifest under a tag or its digest; returns its digest."""
        self._call("PUT", f"/v2/{repo}/manifests/{reference}", _push(repo), ok=(201,), data=manifest.data,
                   headers={"Content-Type": manifest.media_type})
        return manifest.digest

    def tags(self, repo: str) -> Iterator[str]:
        """Every tag of a repository, following the Link header's pages."""
        url: str | None = f"/v2/{repo}/tags/list?n=100"
        while url:
            response = self._call("GET", url, _pull(repo), ok=(200, 404))
            if response.status_code == 404:
                return
            yield from response.json().get("tags") or []
            url = response.links.get("next", {}).get("url")


class _Sized:
    """A stream with a known length, so requests sends Content-Length and streams it (not chunked)."""

    def __init__(self, stream: BinaryIO, size: int) -> None:
        self.stream, self.size = stream, size

    def __len__(self) -> int:
        return self.size

    def read(self, n: int = -1) -> bytes:
        return self.stream.read(n)


def _pull(repo: str) -> str:
    return f"repository:{repo}:pull"


def _push(repo: str) -> str:
    return f"repository:{repo}:pull,push"


def _with_digest(location: str, digest: str) -> str:
    return location + ("&" if "?" in location else "?") + f"digest={digest}"


def _errors(response: requests.Response) -> str:
    """The registry's error codes and messages (distribution spec error body), or the reason."""
    try:
        errors = response.json().get("errors") or []
        text = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
    except (ValueError, AttributeError):
        text = ""
    return text or response.reason or "no message"
