"""Uploads into a raw hosted repository: `PUT /repository/REPO/PATH`, the body streamed from the file (hashed on
the way: sha256 and sha1), then the stored checksum checked against it: the assets API's `checksum` map (sha256,
or sha1 from Nexus versions that keep no sha256), waiting a little for Nexus's search index, else a read-back.

"Disable redeploy": a path that exists (HEAD first, or a PUT answered 400) holding the same bytes is success
("already there"); other bytes are ArtifactExists (exit 1) naming both checksums. The multipart components API
(`POST /service/rest/v1/components`) is not used: its 204 carries no checksum, a redeploy refusal comes after the
assets before it were stored, and a PUT works with any HTTP file server, so mlci keeps one way that it verifies."""
from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import requests

from mlci.core.errors import UsageError
from mlci.core.http import RETRY_STATUSES, TIMEOUT, backoff
from mlci.core.log import logger
from mlci.nexus.assets import Asset, AssetsApi
from mlci.nexus.client import Dropped, NexusHttp
from mlci.nexus.errors import ArtifactExists, NexusError
from mlci.nexus.location import RawLocation, parse_location
from mlci.oci.settings import RegistrySettings

CHUNK = 1 << 20
PUT_ATTEMPTS = 3  # a dropped upload is sent again from its start, at most this often
LOOK_FIRST = 8 << 20  # a larger file is looked for (HEAD) before it is sent; a smaller one is PUT (400 if there)
PUT_ANSWER_TIMEOUT = 900.0  # Nexus answers a PUT after it stored the blob: minutes for GBs on a slow blob store
INDEX_WAITS = (0.25, 0.5, 1.0, 2.0, 4.0)  # waits for the search index to list a new asset, then a read-back


@dataclass(frozen=True)
class Stream:
    """`size` bytes that `open()` reads from their start, each time it is called (a member of a bundle)."""

    name: str  # for messages
    size: int
    open: Callable[[], BinaryIO]

    def __str__(self) -> str:
        return self.name


Source = Path | bytes | Stream
Algorithm = Literal["sha256", "sha1"]
Check = Literal["assets API", "read-back"]


@dataclass(frozen=True)
class Uploaded:
    """One file in the repository, its stored checksum checked."""

    path: str  # inside the repository
    url: str
    size: int
    sha256: str
    state: Literal["uploaded", "already there"]
    verified: Check  # where the stored checksum came from
    algorithm: Algorithm  # which checksum was compared (sha1: a Nexus without sha256 for raw)

    def to_json(self) -> dict[str, object]:
        return {"path": self.path, "url": self.url, "size": self.size, "sha256": self.sha256, "state": self.state,
                "verified": self.verified, "algorithm": self.algorithm}


@dataclass(frozen=True)
class _Local:
    size: int
    sha256: str
    sha1: str

    def get(self, algorithm: str) -> str:
        return self.sha256 if algorithm == "sha256" else self.sha1


class RawRepository:
    """A raw hosted repository at `url` (https://HOST[:PORT][/CONTEXT]/repository/REPO[/PREFIX]); credentials and
    CA bundle from `registries` (the host's entry), as for a registry."""

    def __init__(self, url: str, registries: Mapping[str, RegistrySettings] | None = None, *,
                 env: Mapping[str, str] | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        try:
            self.location: RawLocation = parse_location(url)
        except ValueError as exc:
            raise UsageError(f"Nexus raw repository URL: {exc}") from None
        self.http = NexusHttp(self.location, registries, env, sleep)
        self.assets = AssetsApi(self.http, self.location)
        self.sleep = sleep

    def upload(self, path: str, source: Source) -> Uploaded:
        """Put `source` (a file or a Stream, streamed; or bytes) at `path` under the location, and check what Nexus
        stored."""
        try:
            asset = self.location.asset_path(path)
        except ValueError as exc:
            raise UsageError(f"Nexus {self.location}: {exc}") from None
        url = self.location.url(asset)
        size = _size(source)
        last = ""
        for attempt in range(PUT_ATTEMPTS):
            if (size > LOOK_FIRST or attempt) and self._exists(url):  # a refusal costs no GBs; a retry may have landed
                return self._already_there(asset, url, source, None)
            body = _Body(source, size)
            try:
                response = self.http.call_once("PUT", url, data=body if size else b"",
                                               timeout=(TIMEOUT, PUT_ANSWER_TIMEOUT),
                                               headers={"Content-Type": "application/octet-stream"})
            except Dropped as exc:
                last = f"the connection dropped ({exc})"
            else:
                response.close()
                if response.status_code in (200, 201, 204):
                    return self._verified(asset, url, body.digests())
                if response.status_code == 400 and self._exists(url):  # "Disable redeploy", or another uploader
                    return self._already_there(asset, url, source, body.digests())
                if response.status_code not in RETRY_STATUSES:
                    raise self.http.refusal(response, "PUT", url, self.location.repository)
                last = f"{response.status_code} on PUT"
            logger.info("mlci: Nexus %s: %s; sending %s again", self.http.host, last, asset)
            self.sleep(backoff(attempt))
        raise NexusError(f"Nexus {self.http.host}: PUT {asset} failed {PUT_ATTEMPTS} times; last: {last}")

    def upload_checksums(self, directory: str, uploaded: Sequence[Uploaded], name: str = "SHA256SUMS") -> Uploaded:
        """Upload DIRECTORY/NAME, a `sha256sum -c` file of `uploaded` (files under `directory`, named relative to
        it). Uploaded last, it marks a complete version, and PROD checks a download with standard tools."""
        try:
            base = self.location.asset_path(directory) + "/"
        except ValueError as exc:
            raise UsageError(f"Nexus {self.location}: {exc}") from None
        outside = [u.path for u in uploaded if not u.path.startswith(base)]
        if outside:
            raise UsageError(f"Nexus {self.location}: {outside[0]} is not under {directory}")
        sums = "".join(f"{u.sha256}  {u.path.removeprefix(base)}\n" for u in uploaded)
        return self.upload(f"{directory}/{name}", sums.encode())

    def _exists(self, url: str) -> bool:
        response = self.http.call("HEAD", url)
        if response.status_code in (200, 404):
            return response.status_code == 200
        raise self.http.refusal(response, "HEAD", url, self.location.repository)

    def _already_there(self, asset: str, url: str, source: Source, local: _Local | None) -> Uploaded:
        local = local or _digests(source)
        algorithm, stored, how = self._stored(asset, url)
        if stored != local.get(algorithm):
            raise ArtifactExists(f"Nexus {self.http.host}: {self.location.repository}/{asset}", algorithm, stored,
                                 local.get(algorithm))
        logger.info("mlci: Nexus %s: %s is already there with the same %s", self.http.host, asset, algorithm)
        return Uploaded(asset, url, local.size, local.sha256, "already there", how, algorithm)

    def _verified(self, asset: str, url: str, local: _Local | None) -> Uploaded:
        if local is None:  # answered before the whole body was read: not an upload of this file
            raise NexusError(f"Nexus {self.http.host}: PUT {asset} was answered before the file was sent")
        algorithm, stored, how = self._stored(asset, url)
        if stored != local.get(algorithm):
            raise NexusError(f"Nexus {self.http.host}: {self.location.repository}/{asset}: the stored file's "
                             f"{algorithm} is {stored} ({how}), the uploaded file's is {local.get(algorithm)}: changed "
                             "in transit or by another writer; upload it again")
        logger.info("mlci: Nexus %s: uploaded %s (%d bytes, sha256 %s, checked by the %s)", self.http.host, asset,
                    local.size, local.sha256, how)
        return Uploaded(asset, url, local.size, local.sha256, "uploaded", how, algorithm)

    def _stored(self, asset: str, url: str) -> tuple[Algorithm, str, Check]:
        """(algorithm, stored hex, where from): the assets API (waiting for the search index), else a read-back."""
        found = self._listed(asset)
        strongest = found.strongest() if found else None
        if strongest is not None:
            return ("sha256" if strongest[0] == "sha256" else "sha1"), strongest[1], "assets API"
        return "sha256", self._read_back(url), "read-back"

    def _listed(self, asset: str) -> Asset | None:
        for wait in (*INDEX_WAITS, None):
            found = self.assets.find(asset)
            if found is not None or not self.assets.available or wait is None:
                return found
            self.sleep(wait)
        return None

    def _read_back(self, url: str) -> str:
        response = self.http.call("GET", url, stream=True)
        with response:
            if response.status_code != 200:
                raise self.http.refusal(response, "GET", url, self.location.repository)
            hasher = hashlib.sha256()
            try:
                for chunk in response.iter_content(CHUNK):
                    hasher.update(chunk)
            except requests.RequestException as exc:
                raise NexusError(f"Nexus {self.http.host}: GET {url}: the answer broke off "
                                 f"({exc.__class__.__name__})") from None
        return hasher.hexdigest()


class _Body:
    """A request body streamed from the source in CHUNK pieces (one in memory at a time), hashed as it is sent.
    It is exactly `size` bytes long: a file that changed meanwhile is an error, not a wrong Content-Length."""

    def __init__(self, source: Source, size: int) -> None:
        self.source, self.size = source, size
        self.sha256, self.sha1, self.sent = hashlib.sha256(), hashlib.sha1(), 0

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[bytes]:
        self.sha256, self.sha1, self.sent = hashlib.sha256(), hashlib.sha1(), 0
        with _open(self.source) as stream:
            while self.sent < self.size:
                chunk = stream.read(min(CHUNK, self.size - self.sent))
                if not chunk:
                    name = "the data" if isinstance(self.source, bytes) else str(self.source)
                    raise UsageError(f"{name}: the file shrank while it was uploaded")
                self.sha256.update(chunk)
                self.sha1.update(chunk)
                self.sent += len(chunk)
                yield chunk

    def digests(self) -> _Local | None:
        """The checksums of what was sent, when all of it was (a server may answer before reading the body)."""
        if self.sent != self.size:
            return None
        return _Local(self.size, self.sha256.hexdigest(), self.sha1.hexdigest())


def _open(source: Source) -> BinaryIO:
    if isinstance(source, bytes):
        return io.BytesIO(source)
    if isinstance(source, Stream):
        return source.open()
    try:
        return source.open("rb")
    except OSError as exc:
        raise UsageError(f"{source}: cannot be read ({exc.strerror or exc.__class__.__name__})") from None


def _size(source: Source) -> int:
    if isinstance(source, bytes):
        return len(source)
    if isinstance(source, Stream):
        return source.size
    try:
        if not source.is_file():
            raise UsageError(f"{source}: not a file")
        return source.stat().st_size
    except OSError as exc:
        raise UsageError(f"{source}: cannot be read ({exc.strerror or exc.__class__.__name__})") from None


def _digests(source: Source) -> _Local:
    """sha256 and sha1 of the whole source, read in CHUNK pieces."""
    body = _Body(source, _size(source))
    for _chunk in body:
        pass
    digests = body.digests()
    assert digests is not None
    return digests
