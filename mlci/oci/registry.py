"""A client for the OCI distribution API over `requests`: ping, Basic and Bearer-token auth from the
WWW-Authenticate challenge, manifests (OCI and Docker v2 schema 2, indexes), blobs (HEAD, streaming
GET verified as it streams, chunked upload that resumes, cross-repository mount), tag listing.

Safe across threads: each thread has its own `requests` session (connection pool), and the auth state
(one Authorization value per scope) is shared under a lock, refreshed once when several threads meet
the same 401. Reads are retried (core.http). A request body is never a stream: a blob goes up in
chunks of at most `chunk_size` bytes held in memory, so a retry (after a 401, a dropped connection or
a 5xx) re-sends that buffer, never a half-read stream. After a drop or a 5xx the upload session is
asked for its offset (GET, `Range: 0-N`) and the upload continues from there when it is consistent;
otherwise that blob restarts in a new session from a re-opened source (docker-registry 2.8 cancels
a session whose chunk was cut mid-body)."""
from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import quote, urljoin, urlsplit

import requests

from mlci.core import jsonsafe
from mlci.core.errors import EnvironmentProblem, GateFailed, UsageError
from mlci.core.http import make_session, no_answer, send
from mlci.core.log import logger
from mlci.oci.auth import Credentials, basic_header, parse_challenge
from mlci.oci.manifest import (
    MANIFEST_TYPES,
    MAX_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Manifest,
    NotFound,
    sha256_digest,
)
from mlci.oci.transport import StreamLost

READ_CHUNK = 1 << 20
DEFAULT_CHUNK_SIZE = 8 << 20  # 8 MiB x default concurrency 6 = 48 MB of copy buffers at most (a BlobStream: 2)
UPLOAD_SESSIONS = 3  # a blob is tried in at most this many upload sessions
# A blob larger than this, from a source that can seek (a file), goes up in PATCHes of this size streamed from
# the file and resumed by seeking: no chunk in memory, and fewer PATCHes (docker-registry fsyncs after each).
SPAN_SIZE = 64 << 20
RESUMES = 5  # resumes within one session (each after a drop or a 5xx)
REFERRER_PAGES = 64  # pages of one referrers listing, at most
Opener = Callable[[], BinaryIO]


# distribution-spec codes of a 400 that says what is wrong with the manifest itself; any other 400 to a manifest PUT
# may be a refusal to overwrite (Nexus "Disable redeploy" answers BLOB_UPLOAD_INVALID, "Repository does not allow
# updating assets"), and is answered by a look at what the reference names
INVALID_MANIFEST = frozenset({"MANIFEST_INVALID", "MANIFEST_BLOB_UNKNOWN", "MANIFEST_UNVERIFIED", "BLOB_UNKNOWN",
                              "TAG_INVALID", "NAME_INVALID", "NAME_UNKNOWN", "DIGEST_INVALID", "SIZE_INVALID",
                              "UNSUPPORTED"})


class RegistryError(EnvironmentProblem):
    """A registry call failed: one line with the call, the status and the registry's error codes."""


class TagImmutable(GateFailed):
    """A tag names another manifest and is not moved to the one asked for: the registry refuses to (Nexus "Disable
    redeploy"), or a promotion policy does (`why` says which). Exit 1: nothing was changed."""

    def __init__(self, where: str, tag: str, existing: str, wanted: str, why: str) -> None:
        self.where, self.tag, self.existing, self.wanted = where, tag, existing, wanted
        super().__init__(f"{where}:{tag} names {existing}; {why}, so it is not moved to {wanted}")


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


class _Dropped(Exception):
    """The connection broke before an answer came (the request may or may not have reached the registry)."""


class _SessionLost(Exception):
    """The upload session cannot go on (cancelled, or an offset that does not fit): start a new one."""


class Registry:
    """One registry host; credentials and a CA bundle are per client, tokens are cached per scope."""

    def __init__(self, host: str, *, plain_http: bool = False, ca_bundle: str | None = None,
                 credentials: Credentials | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        if ca_bundle and not Path(ca_bundle).is_file():
            raise UsageError(f"CA bundle {ca_bundle}: not found (or not a file)")
        if chunk_size < 1:
            raise UsageError(f"registry {host}: chunk_size must be at least 1 byte")
        self.host = host
        self.base = f"{'http' if plain_http else 'https'}://{host}"
        self.credentials = credentials
        self.ca_bundle = ca_bundle
        self.chunk_size = chunk_size
        self._local = threading.local()
        self._auth: dict[str, str] = {}  # scope -> Authorization header value
        self._auth_lock = threading.Lock()  # guards _auth; held while a token is fetched (one fetch per scope)

    @property
    def session(self) -> requests.Session:
        """This thread's session: requests' Session and its connection pool are not shared across threads."""
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = make_session({}, self.ca_bundle)
        return session

    def authorization(self, scope: str) -> str | None:
        """The Authorization value cached for `scope` (None before the first challenge)."""
        with self._auth_lock:
            return self._auth.get(scope)

    def _request(self, method: str, url: str, scope: str, *, idempotent: bool = True,
                 data: bytes | memoryview | _Span | None = None, **kwargs: Any) -> requests.Response:
        """One call with auth: a 401 with a challenge is answered once (the body is sent again: bytes or a view as
        they are, a span from its start). A broken connection is _Dropped; other transport failures are a
        RegistryError. Credentials go only to the registry's own origin: an upload Location on another host
        gets none."""
        full = urljoin(self.base, url)
        own = _origin(full) == _origin(self.base)
        headers = dict(kwargs.pop("headers", {}))
        response: requests.Response | None = None
        for attempt in range(2):
            sent_auth = self.authorization(scope) if own else None
            if sent_auth is not None:
                headers["Authorization"] = sent_auth
            if isinstance(data, _Span):
                data.rewind()
            try:
                response = send(self.session, method, full, idempotent=idempotent, headers=headers, data=data,
                                **kwargs)
            except requests.ConnectionError as exc:
                if isinstance(exc, requests.exceptions.SSLError):
                    hint = (f"the CA bundle {self.ca_bundle} does not verify it (a PEM file of the CA that signed "
                            "its certificate)" if self.ca_bundle else
                            f"trust its CA with registries.{self.host}.ca_bundle (a PEM file), or set "
                            f"registries.{self.host}.plain_http for a registry without TLS")
                    raise RegistryError(f"registry {self.host}: {method} {url.split('?')[0]}: {no_answer(exc)}; "
                                        f"{hint}") from None
                raise _Dropped(f"{exc.__class__.__name__}") from None
            except requests.RequestException as exc:
                raise RegistryError(f"registry {self.host}: {method} {url.split('?')[0]}: "
                                    f"{exc.__class__.__name__}") from None
            except OSError as exc:  # requests' own checks, e.g. a CA bundle path that does not exist
                raise RegistryError(f"registry {self.host}: {method} {url.split('?')[0]}: {exc}") from None
            if response.status_code == 401 and attempt == 0 and own and "WWW-Authenticate" in response.headers:
                self._authenticate(response.headers["WWW-Authenticate"], scope, sent_auth)
                continue
            return response
        assert response is not None
        return response

    def _call(self, method: str, url: str, scope: str, *, ok: tuple[int, ...], idempotent: bool = True,
              data: bytes | memoryview | _Span | None = None, **kwargs: Any) -> requests.Response:
        try:
            response = self._request(method, url, scope, idempotent=idempotent, data=data, **kwargs)
        except _Dropped as exc:
            raise RegistryError(f"registry {self.host}: {method} {url.split('?')[0]}: {exc}") from None
        if response.status_code not in ok:
            raise RegistryError(f"registry {self.host}: {response.status_code} on {method} {url.split('?')[0]}: "
                                f"{_errors(response)}")
        return response

    def _authenticate(self, header: str, scope: str, rejected: str | None) -> None:
        """Answer a challenge for `scope`, unless another thread already replaced the `rejected` value."""
        with self._auth_lock:
            if self._auth.get(scope) != rejected:
                return  # refreshed meanwhile by another thread: use that one
            self._auth[scope] = self._answer(header, scope)

    def _answer(self, header: str, scope: str) -> str:
        challenge = parse_challenge(header)
        if challenge.scheme == "basic":
            if self.credentials is None:
                raise RegistryError(f"registry {self.host} needs credentials "
                                    "(registries.HOST credentials, docker config.json or REGISTRY_AUTH_FILE)")
            return basic_header(self.credentials)
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
            body = jsonsafe.loads(response.content)
        except ValueError:
            body = None
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not token or not isinstance(token, str):
            raise RegistryError(f"registry {self.host}: token service returned no token")
        from mlci.core import log

        log.add_secret(token)
        return f"Bearer {token}"

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
        reader = VerifyingReader(response.iter_content(READ_CHUNK), digest,
                                 f"registry {self.host}: blob {digest} of {repo}")
        return cast(BinaryIO, io.BufferedReader(reader, READ_CHUNK))

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Cross-repository mount: True if the registry linked the blob without an upload."""
        scope = f"{_push(repo)} {_pull(from_repo)}"
        response = self._call("POST", f"/v2/{repo}/blobs/uploads/?mount={digest}&from={from_repo}", scope,
                              ok=(201, 202), idempotent=False)
        if response.status_code == 202:  # not mounted: an upload session was opened instead; close it
            self._call("DELETE", response.headers["Location"], scope, ok=(204, 404), idempotent=False)
            return False
        return True

    def upload_blob(self, repo: str, digest: str, size: int, source: Opener, chunk_size: int | None = None) -> int:
        """Upload a blob of `size` bytes read from `source()` (called again for each new session); returns the
        bytes sent. At most `chunk_size` bytes of it are in memory at a time."""
        chunk = chunk_size or self.chunk_size
        sent = 0
        for session in range(UPLOAD_SESSIONS):
            with source() as stream:
                try:
                    return sent + self._upload_session(repo, digest, size, stream, chunk)
                except _SessionLost as exc:
                    sent += exc.args[1]
                    if session + 1 == UPLOAD_SESSIONS:
                        raise RegistryError(f"registry {self.host}: upload of {digest} to {repo} failed "
                                            f"{UPLOAD_SESSIONS} times; last: {exc.args[0]}") from None
                    logger.info("mlci: registry %s: upload of %s restarts in a new session (%s)",
                                self.host, digest[7:19], exc.args[0])
        raise AssertionError("unreachable")

    def _upload_session(self, repo: str, digest: str, size: int, stream: BinaryIO, chunk_size: int) -> int:
        """One upload session: POST, then the blob in PATCH chunks (one PUT with the body if it fits in one
        chunk), then the closing PUT. Raises _SessionLost (with the bytes sent) when the session is gone."""
        scope = _push(repo)
        location = self._call("POST", f"/v2/{repo}/blobs/uploads/", scope, ok=(202,),
                              idempotent=False).headers["Location"]
        if size > max(SPAN_SIZE, chunk_size) and bool(getattr(stream, "seekable", lambda: False)()):
            return self._send_spans(location, scope, digest, size, stream, repo, max(SPAN_SIZE, chunk_size))
        buffer = bytearray(min(size, chunk_size))  # one chunk buffer per session, refilled in place
        if size <= chunk_size:
            body = _read_exactly(stream, buffer, size, digest)
            response = self._try("PUT", _with_digest(location, digest), scope, body, {
                "Content-Type": "application/octet-stream"})
            if response is None or response.status_code >= 500:
                raise _SessionLost("the connection dropped during the upload" if response is None
                                   else f"{response.status_code} on PUT", len(body))
            if not self._there_anyway(response, repo, digest):
                self._expect(response, (201,), "PUT", digest)
            return len(body)
        offset, sent = 0, 0
        while offset < size:
            body = _read_exactly(stream, buffer, min(chunk_size, size - offset), digest)
            location, sent = self._send_chunk(location, scope, offset, body, digest, sent)
            offset += len(body)
            body.release()  # the buffer is refilled for the next chunk
        return self._close_session(repo, location, scope, digest, size, sent)

    def _send_chunk(self, location: str, scope: str, offset: int, body: memoryview, what_blob: str, sent: int
                    ) -> tuple[str, int]:
        """PATCH one buffered chunk at `offset` (see _send_part)."""
        return self._send_part(location, scope, offset, len(body), lambda done: body[done:], what_blob, sent)

    def _send_part(self, location: str, scope: str, offset: int, length: int,
                   part_from: Callable[[int], memoryview | _Span], what_blob: str, sent: int) -> tuple[str, int]:
        """PATCH `length` bytes at `offset`, the body from `part_from(done)` (the part past the `done` bytes the
        registry has: a slice of a buffer, or a span of a file); after a drop or a 5xx, resume from the offset
        the session reports. Returns the session's next URL and the bytes sent so far; _SessionLost when it
        cannot go on."""
        done = 0  # bytes of this part the registry has
        for _resume in range(RESUMES + 1):
            part = part_from(done)
            response = self._try("PATCH", location, scope, part, {
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset + done}-{offset + length - 1}"})
            sent += part.handed if isinstance(part, _Span) else len(part)
            del part
            if response is not None and response.status_code == 202:
                return response.headers.get("Location", location), sent
            if response is not None and response.status_code in (401, 403):
                self._expect(response, (202,), "PATCH", what_blob)  # refused credentials: no new session helps
            if response is not None and response.status_code < 500:
                raise _SessionLost(f"{response.status_code} on PATCH: {_errors(response)}", sent)
            what = "the connection dropped" if response is None else f"{response.status_code} on PATCH"
            have, location = self._upload_offset(location, scope, what, sent)
            if not offset <= have <= offset + length:
                raise _SessionLost(f"{what}; the session reports {have} bytes, expected "
                                   f"{offset}..{offset + length}", sent)
            done = have - offset
            logger.info("mlci: registry %s: %s during %s; resuming at byte %d", self.host, what,
                        what_blob[7:19] or "a streamed blob", have)
            if done == length:
                return location, sent
        raise _SessionLost(f"{RESUMES} resumes did not get bytes {offset}.. through", sent)

    def _send_spans(self, location: str, scope: str, digest: str, size: int, stream: BinaryIO, repo: str,
                    span: int) -> int:
        """The blob in PATCHes of `span` bytes streamed from `stream`, a failed one resumed by seeking to the
        offset the session reports; then the closing PUT. Returns the bytes sent."""
        start, offset, sent = stream.tell(), 0, 0
        while offset < size:
            length = min(span, size - offset)
            def span_from(done: int, at: int = start + offset, length: int = length) -> _Span:
                return _Span(stream, at + done, length - done, digest)
            location, sent = self._send_part(location, scope, offset, length, span_from, digest, sent)
            offset += length
        return self._close_session(repo, location, scope, digest, size, sent)

    def _close_session(self, repo: str, location: str, scope: str, digest: str, size: int, sent: int) -> int:
        """The closing PUT `?digest=` of a session that holds all `size` bytes; returns the bytes sent."""
        for _resume in range(RESUMES + 1):
            response = self._try("PUT", _with_digest(location, digest), scope, b"",
                                 {"Content-Type": "application/octet-stream"})
            if response is not None and response.status_code < 500:
                if not self._there_anyway(response, repo, digest):
                    self._expect(response, (201,), "PUT", digest)
                return sent
            what = "the connection dropped" if response is None else f"{response.status_code} on PUT"
            if self.blob_exists(repo, digest):  # the PUT went through, only its answer was lost
                return sent
            have, location = self._upload_offset(location, scope, what, sent)
            if have != size:
                raise _SessionLost(f"{what}; the session reports {have} of {size} bytes", sent)
        raise _SessionLost("the closing PUT did not get through", sent)

    def _there_anyway(self, response: requests.Response, repo: str, digest: str) -> bool:
        """A closing PUT refused with 400 for a blob the repository has (Nexus "Disable redeploy" when another upload
        of it finished first, sonatype/nexus-public#967): it is there, which is all an upload is for."""
        return response.status_code == 400 and self.blob_exists(repo, digest)

    def blob_writer(self, repo: str, media_type: str, chunk_size: int | None = None) -> BlobStream:
        """A blob of unknown digest uploaded as it is written (see BlobStream)."""
        return BlobStream(self, repo, media_type, chunk_size or self.chunk_size)

    def _try(self, method: str, url: str, scope: str, body: bytes | memoryview | _Span, headers: dict[str, str]
             ) -> requests.Response | None:
        """A non-idempotent upload call: its answer, or None when the connection dropped."""
        try:
            response = self._request(method, url, scope, idempotent=False, data=body, headers=headers)
        except _Dropped as exc:
            logger.debug("mlci: registry %s: %s %s: %s", self.host, method, url.split("?")[0], exc)
            return None
        response.request.body = None  # the answer would keep the chunk alive while the next one is read
        for earlier in response.history:
            earlier.request.body = None
        return response

    def _upload_offset(self, location: str, scope: str, what: str, sent: int) -> tuple[int, str]:
        """How many bytes the upload session holds (GET on it: `Range: 0-N`), and its current URL."""
        try:
            response = self._request("GET", location, scope)
        except _Dropped as exc:
            raise _SessionLost(f"{what}; the session could not be asked for its offset ({exc})", sent) from None
        if response.status_code != 204:
            raise _SessionLost(f"{what}; the session is gone ({response.status_code}: {_errors(response)})", sent)
        text = response.headers.get("Range", "")
        first, dash, last = text.strip().partition("-")
        if not text or text.strip() == "0-0":  # distribution says 0-0 for an empty session (and for 1 byte,
            have = 0                              # which a chunked upload never holds: chunks are larger)
        elif dash and first == "0" and last.isdigit():
            have = int(last) + 1
        else:
            raise _SessionLost(f"{what}; the session reports an unreadable Range {text[:40]!r}", sent)
        return have, response.headers.get("Location", location)

    def _expect(self, response: requests.Response, ok: tuple[int, ...], method: str, digest: str) -> None:
        if response.status_code not in ok:
            raise RegistryError(f"registry {self.host}: {response.status_code} on {method} of blob {digest}: "
                                f"{_errors(response)}")

    def get_manifest(self, repo: str, reference: str) -> Manifest:
        """A manifest by tag or digest, in whatever OCI/Docker type the registry has; digests verified."""
        return self.fetch_manifest(repo, reference)[0]

    def fetch_manifest(self, repo: str, reference: str, max_size: int = MAX_MANIFEST) -> tuple[Manifest, str | None]:
        """A manifest (as get_manifest) and the registry's ETag for it. More than `max_size` bytes (4 MiB, the
        limit of containerd and distribution 3) is an error, read no further."""
        response = self._call("GET", f"/v2/{repo}/manifests/{reference}", _pull(repo), ok=(200, 404),
                              headers={"Accept": ", ".join(MANIFEST_TYPES)}, stream=True)
        with response:
            if response.status_code == 404:
                raise NotFound(f"registry {self.host}: {repo}:{reference} not found ({_errors(response)})")
            data = self._bounded_body(response, max_size, f"manifest {repo}:{reference}")
        digest = sha256_digest(data)
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError(f"registry {self.host}: manifest {reference} of {repo}: digest did not match")
        media_type = response.headers.get("Content-Type", "").split(";")[0] or OCI_MANIFEST
        return Manifest(data, media_type, digest), response.headers.get("ETag")

    def _bounded_body(self, response: requests.Response, max_size: int, what: str) -> bytes:
        """A streamed answer's body, at most `max_size` bytes (a RegistryError beyond, or when it breaks off)."""
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_size:
            raise RegistryError(f"registry {self.host}: {what} is {declared} bytes, more than the {max_size} "
                                "mlci reads")
        data = bytearray()
        try:
            for chunk in response.iter_content(READ_CHUNK):
                data += chunk
                if len(data) > max_size:
                    raise RegistryError(f"registry {self.host}: {what} is more than the {max_size} bytes mlci reads")
        except requests.RequestException as exc:
            raise RegistryError(f"registry {self.host}: {what}: the answer broke off ({exc.__class__.__name__})"
                                ) from None
        return bytes(data)

    def has_manifest(self, repo: str, reference: str) -> bool:
        """HEAD the manifest: True on 200, False on 404, an error otherwise."""
        response = self._call("HEAD", f"/v2/{repo}/manifests/{reference}", _pull(repo), ok=(200, 404),
                              headers={"Accept": ", ".join(MANIFEST_TYPES)})
        return response.status_code == 200

    def put_manifest(self, repo: str, reference: str, manifest: Manifest) -> str:
        """PUT a manifest under a tag or its digest; returns its digest."""
        self.push_manifest(repo, reference, manifest)
        return manifest.digest

    def _settle_refused_put(self, repo: str, reference: str, manifest: Manifest, response: requests.Response) -> None:
        refused = RegistryError(f"registry {self.host}: 400 on PUT /v2/{repo}/manifests/{reference}: "
                                f"{_errors(response)}")
        if _codes(response) & INVALID_MANIFEST:
            raise refused
        try:
            existing = self.fetch_manifest(repo, reference)[0].digest
        except NotFound:
            raise refused from None
        if existing != manifest.digest:
            raise TagImmutable(f"registry {self.host}: {repo}", reference, existing, manifest.digest,
                               f"the registry does not overwrite it (400: {_errors(response)}; what Nexus answers "
                               'with "Disable redeploy")')
        logger.info("mlci: registry %s: %s:%s already names %s (the registry does not overwrite)", self.host, repo,
                    reference, manifest.digest)

    def push_manifest(self, repo: str, reference: str, manifest: Manifest, *, headers: dict[str, str] | None = None,
                      once: bool = False, accept: tuple[int, ...] = (201,)) -> requests.Response:
        """PUT a manifest and return the answer, one of `accept` (e.g. 412: a condition in `headers`, If-Match,
        failed). `once`: sent once, never retried (a retried PUT of a shared tag could land late, over a newer one).

        A registry that does not overwrite (Nexus "Disable redeploy": 400 for any reference that exists) is answered
        by a look, unless `accept` takes the 400 itself: the same manifest there is success (its 400 is returned),
        another one is TagImmutable naming the reference and both digests."""
        response = self._call("PUT", f"/v2/{repo}/manifests/{reference}", _push(repo),
                              ok=accept if 400 in accept else (*accept, 400), data=manifest.data, idempotent=not once,
                              headers={"Content-Type": manifest.media_type, **(headers or {})})
        if response.status_code == 400 and 400 not in accept:
            self._settle_refused_put(repo, reference, manifest, response)
        return response

    @staticmethod
    def error_codes(response: requests.Response) -> str:
        """The distribution-spec error codes and messages of an answer (its reason when it has none)."""
        return _errors(response)

    def referrers_pages(self, repo: str, digest: str, artifact_type: str | None = None,
                        max_pages: int = REFERRER_PAGES) -> list[bytes] | None:
        """The referrers API's answer for `digest` (each page's body, the Link header followed), or None when the
        registry has no referrers API (404, or a 400/405/501 from one that does not know the route)."""
        url: str | None = f"/v2/{repo}/referrers/{digest}"
        if artifact_type:
            url = f"{url}?artifactType={quote(artifact_type, safe='')}"
        pages: list[bytes] = []
        while url:
            if len(pages) == max_pages:
                raise RegistryError(f"registry {self.host}: the referrers of {repo}@{digest} run past "
                                    f"{max_pages} pages")
            response = self._call("GET", url, _pull(repo), ok=(200, 400, 404, 405, 501),
                                  headers={"Accept": OCI_INDEX}, stream=True)
            with response:
                if response.status_code != 200 and not pages:
                    return None
                if response.status_code != 200:
                    raise RegistryError(f"registry {self.host}: {response.status_code} on page {len(pages) + 1} of "
                                        f"the referrers of {repo}@{digest}: {_errors(response)}")
                pages.append(self._bounded_body(response, MAX_MANIFEST, f"referrers of {repo}@{digest}"))
            url = response.links.get("next", {}).get("url")
        return pages

    def tags(self, repo: str, last: str | None = None) -> Iterator[str]:
        """Every tag of a repository (after `last`, where the registry honours it: the spec's lexical order),
        following the Link header's pages."""
        url: str | None = f"/v2/{repo}/tags/list?n=100" + (f"&last={quote(last, safe='')}" if last else "")
        while url:
            response = self._call("GET", url, _pull(repo), ok=(200, 404))
            if response.status_code == 404:
                return
            try:
                tags = jsonsafe.loads(response.content).get("tags") or []
            except (ValueError, AttributeError):
                raise RegistryError(f"registry {self.host}: the tag list of {repo} is not JSON") from None
            if not isinstance(tags, list):
                raise RegistryError(f"registry {self.host}: the tag list of {repo} is not a list")
            yield from (t for t in tags if isinstance(t, str))
            url = response.links.get("next", {}).get("url")


class _Span:
    """`length` bytes of a seekable source from `start`, as a request body read in pieces (requests sends
    `len()` as its Content-Length); `rewind` starts it over; `handed` counts the bytes it gave out."""

    def __init__(self, stream: BinaryIO, start: int, length: int, digest: str) -> None:
        self.stream, self.start, self.length, self.digest = stream, start, length, digest
        self.left, self.handed = 0, 0

    def __len__(self) -> int:
        return self.length

    def rewind(self) -> None:
        self.stream.seek(self.start)
        self.left = self.length

    def read(self, size: int = -1) -> bytes:
        want = self.left if size < 0 else min(size, self.left)
        if not want:
            return b""
        data = self.stream.read(want)
        if not data:
            raise EnvironmentProblem(f"blob {self.digest}: the source ended {self.left} bytes early")
        self.left -= len(data)
        self.handed += len(data)
        return data


def _read_exactly(stream: BinaryIO, buffer: bytearray, size: int, digest: str) -> memoryview:
    """`size` bytes of the source read into the start of `buffer` (no new chunk allocated per read), as a view;
    an error when the source ends early: it is not the blob its descriptor names."""
    view = memoryview(buffer)[:size]
    readinto = getattr(stream, "readinto", None)
    got = 0
    while got < size:
        if readinto is not None:
            n = int(readinto(view[got:]) or 0)
        else:
            data = stream.read(size - got)
            n = len(data)
            view[got:got + n] = data
        if not n:
            view.release()
            raise EnvironmentProblem(f"blob {digest}: the source ended after {got} of {size} bytes")
        got += n
    return view


def _origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port of a URL (the default port made explicit)."""
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(parts.scheme)


def _pull(repo: str) -> str:
    return f"repository:{repo}:pull"


def _push(repo: str) -> str:
    return f"repository:{repo}:pull,push"


def _with_digest(location: str, digest: str) -> str:
    return location + ("&" if "?" in location else "?") + f"digest={digest}"


def _codes(response: requests.Response) -> set[str]:
    """The distribution-spec error codes of an answer."""
    try:
        errors = jsonsafe.loads(response.content).get("errors") or []
        return {e["code"] for e in errors if isinstance(e, dict) and isinstance(e.get("code"), str)}
    except (ValueError, AttributeError, TypeError):
        return set()


def _errors(response: requests.Response) -> str:
    """The registry's error codes and messages (distribution spec error body), or the reason."""
    try:
        errors = jsonsafe.loads(response.content).get("errors") or []
        text = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
    except (ValueError, AttributeError):
        text = ""
    return text or response.reason or "no message"


class BlobStream:
    """A blob uploaded while it is produced: one upload session (opened at the first full chunk), each full
    chunk PATCHed as it fills, the closing PUT `?digest=` with the sha256 computed on the way. Two chunk
    buffers: a full one is sent by a sender thread while the producer fills the other, so that producing (reading,
    hashing, tarring) and the registry's storing overlap; a chunk waits for the one before to be through (the
    session takes them in order). A drop or a 5xx between or within chunks resumes in the session from the
    buffered chunk when the session reports a consistent offset; when the session is gone (docker-registry
    cancels one whose chunk was cut mid-body) the bytes before the buffer cannot be sent again:
    transport.StreamLost, and the producer starts the blob over."""

    def __init__(self, registry: Registry, repo: str, media_type: str, chunk_size: int) -> None:
        self.registry, self.repo, self.media_type, self.chunk_size = registry, repo, media_type, chunk_size
        self.scope = _push(repo)
        self.sha = hashlib.sha256()
        self.buffer: bytearray | None = None  # the chunk being filled, allocated at the first write
        self.spare: bytearray | None = None  # the other one: in flight, or free
        self.filled = 0  # bytes of the buffer in use
        self.offset = 0  # bytes handed to the session (the chunk in flight included)
        self.sent = 0
        self.location: str | None = None
        self.sender: ThreadPoolExecutor | None = None
        self.in_flight: Future[None] | None = None

    def _open(self) -> str:
        if self.location is None:
            self.location = self.registry._call("POST", f"/v2/{self.repo}/blobs/uploads/", self.scope, ok=(202,),
                                                idempotent=False).headers["Location"]
        return self.location

    def _lost(self, exc: _SessionLost) -> StreamLost:
        self.abort()
        return StreamLost(f"registry {self.registry.host}: upload of a streamed blob to {self.repo} lost its "
                          f"session after {self.offset} bytes: {exc.args[0]}")

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        with memoryview(data) as view:
            while view:
                if self.buffer is None:
                    self.buffer = bytearray(self.chunk_size)
                take = min(len(view), self.chunk_size - self.filled)
                self.buffer[self.filled:self.filled + take] = view[:take]
                self.filled += take
                view = view[take:]
                if self.filled == self.chunk_size:
                    self._flush()
        return len(data)

    def _flush(self) -> None:
        """Hand the filled buffer to the sender (after the chunk before it is through) and fill the other."""
        self._wait()
        assert self.buffer is not None
        if self.sender is None:
            self.sender = ThreadPoolExecutor(1, thread_name_prefix="mlci-send")
        self.in_flight = self.sender.submit(self._send, self.buffer, self.filled, self.offset)
        self.offset += self.filled
        self.buffer, self.spare, self.filled = self.spare, self.buffer, 0

    def _wait(self) -> None:
        """The chunk in flight through (its failure raised here, in the producer)."""
        in_flight, self.in_flight = self.in_flight, None
        if in_flight is not None:
            try:
                in_flight.result()
            except _SessionLost as exc:
                raise self._lost(exc) from None

    def _send(self, buffer: bytearray, length: int, offset: int) -> None:
        with memoryview(buffer)[:length] as body:
            for session in range(UPLOAD_SESSIONS):
                try:
                    self.location, self.sent = self.registry._send_chunk(self._open(), self.scope, offset, body, "",
                                                                         self.sent)
                    return
                except _SessionLost as exc:
                    if offset or session + 1 == UPLOAD_SESSIONS:  # bytes before this chunk are gone
                        raise
                    logger.info("mlci: registry %s: a streamed upload restarts its first chunk in a new session "
                                "(%s)", self.registry.host, exc.args[0])
                    self._cancel()

    def finish(self) -> Descriptor:
        digest = "sha256:" + self.sha.hexdigest()
        size = self.offset + self.filled
        try:
            if self.in_flight is None and self.location is None:  # it fits in one chunk: one PUT with the body
                body = bytes(self.buffer[:self.filled]) if self.buffer is not None else b""
                self._release()
                self.sent += self.registry.upload_blob(self.repo, digest, size, lambda: io.BytesIO(body),
                                                       self.chunk_size)
            else:
                if self.filled:
                    self._flush()
                self._wait()
                assert self.location is not None
                self.sent = self.registry._close_session(self.repo, self.location, self.scope, digest, size,
                                                         self.sent)
                self._release()
        except _SessionLost as exc:
            raise self._lost(exc) from None
        self.location = None
        return Descriptor(self.media_type, digest, size)

    def abort(self) -> None:
        """Cancel the upload session (a registry that cannot lets it expire) and drop the buffers; a chunk in
        flight is let through first (its session is cancelled after it)."""
        in_flight, self.in_flight = self.in_flight, None
        if in_flight is not None:
            try:
                in_flight.result()
            except Exception as exc:  # noqa: BLE001  # the upload is given up either way
                logger.debug("mlci: %s", exc)
        self._release()
        self._cancel()

    def _release(self) -> None:
        self.buffer, self.spare, self.filled = None, None, 0
        if self.sender is not None:
            self.sender.shutdown(wait=True)
            self.sender = None

    def _cancel(self) -> None:
        location, self.location = self.location, None
        if location is not None:
            try:
                self.registry._call("DELETE", location, self.scope, ok=(204, 404), idempotent=False)
            except RegistryError as exc:
                logger.debug("mlci: %s", exc)
