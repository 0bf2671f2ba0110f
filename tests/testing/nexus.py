"""Stand-ins for the parts of Sonatype Nexus Repository 3 that a file server cannot play (Nexus cannot run here).

:class:`NexusRest` is the REST API (``/service/rest/v1``) over the files :mod:`tests.testing.nginx` stores,
following Nexus 3's documented API and its sources (``sonatype/nexus-public``: ``AssetsResource``,
``ComponentsResource``, ``AssetXO``, ``RawUploadHandler``, ``ValidatingComponentUpload``), awkward parts included:

* ``GET /v1/search/assets?repository=R&group=G&name=N&sha1=..&sha256=..&md5=..&continuationToken=T``: exact
  matches (Nexus >= 3.57). A raw asset's ``group`` is its directory with a leading ``/`` and its ``name`` (the
  component's) is ``/`` + its path, the datastore way; 50 items a page. ``index_delay`` seconds pass before a new
  or changed file is searchable (Nexus's search index is updated after the write, not with it).
* ``GET /v1/assets?repository=R&continuationToken=T``: every asset of a repository, ``assets_page_size`` (10 until
  3.74, 100 since) a page, in an order that is stable and not alphabetical.
* Paging as ``AssetsResource`` does it: ``continuationToken`` is null when a page holds fewer items than the page
  size, so a last page that is exactly full still carries a token, and the next page is empty with a null token.
  Tokens are opaque; an unknown one answers 400 (a stand-in choice: Nexus fails it in its own ways).
* An asset is ``AssetXO`` as JSON: ``path`` with a leading ``/`` (datastore; OrientDB-era Nexus had none),
  ``downloadUrl``, ``id``, ``repository``, ``format: raw``, ``checksum`` (``checksums``: sha1, sha256, sha512, md5
  as current Nexus computes for raw; Nexus before the datastore kept only md5 and sha1), ``contentType``,
  ``lastModified``, ``fileSize``, ``blobCreated``, ``uploader``...; checksums are computed from the stored bytes.
* ``POST /v1/components?repository=R``, multipart ``raw.directory``, ``raw.assetN``, ``raw.assetN.filename``: the
  raw upload. 204 without a body; validation errors are 400 with Nexus's ``[{"id": .., "message": ..}]``
  (``Missing required component field 'Directory'``, ``Missing required asset field 'Filename' on '1'``,
  ``The assets 1 and 2 have identical coordinates``); ``redeploy=False`` refuses an existing path with
  ``400 R/PATH cannot be updated``, after the assets before it were stored (not atomic, like Nexus).
* With ``users``, a request without valid Basic credentials is 401 with ``WWW-Authenticate: BASIC
  realm="Sonatype Nexus Repository Manager"``.

``on_search`` (a callable) runs before each search is answered: a test changes the stored bytes there (a disk or
another writer corrupting the upload). ``requests`` records every request (method, path, query).

:class:`NexusDockerProxy` plays a Nexus docker hosted repository's connector port with "Disable redeploy": a
proxy in front of a real docker-registry that answers a manifest PUT to a reference that already exists with
Nexus's ``400 {"errors":[{"code":"BLOB_UPLOAD_INVALID","message":"blob upload invalid","detail":"Repository does
not allow updating assets: R"}]}`` (what Nexus 3.29 sent jib, GoogleContainerTools/jib#3057), whatever the
manifest, and the closing PUT of a blob upload whose blob is already there with ``detail: "R/v2/-/blobs/DIGEST
cannot be updated"`` (sonatype/nexus-public#967); everything else is relayed.
"""
from __future__ import annotations

import base64
import email.parser
import email.policy
import hashlib
import http.client
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.testing.nginx import Nginx, start_nginx, stop_nginx

HOST = "127.0.0.1"
REALM = "Sonatype Nexus Repository Manager"
SEARCH_PAGE_SIZE = 50
ALL_CHECKSUMS = ("sha1", "sha256", "sha512", "md5")
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json",
                  "application/vnd.docker.distribution.manifest.list.v2+json")
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
                        "proxy-authorization", "proxy-authenticate", "content-length"})


@dataclass(frozen=True)
class Seen:
    """One request the stand-in answered."""

    method: str
    path: str
    query: dict[str, list[str]]
    status: int


@dataclass(frozen=True)
class _Asset:
    repository: str
    path: str  # relative, no leading slash
    file: Path
    mtime: float


class NexusRest:
    """The REST stand-in on 127.0.0.1:<free port> over ``root`` (nginx's document root: root/repository/R/...)."""

    def __init__(self, root: Path, repositories: tuple[str, ...] = ("mlci-raw",), *,
                 users: Mapping[str, str] | None = None, assets_page_size: int = 10,
                 search_page_size: int = SEARCH_PAGE_SIZE, checksums: tuple[str, ...] = ALL_CHECKSUMS,
                 index_delay: float = 0.0, redeploy: bool = True) -> None:
        self.root, self.repositories = root, repositories
        self.users = dict(users or {})
        self.assets_page_size, self.search_page_size = assets_page_size, search_page_size
        self.checksums, self.index_delay, self.redeploy = checksums, index_delay, redeploy
        self.on_search: Callable[[], None] | None = None
        self.requests: list[Seen] = []
        self._tokens: dict[str, tuple[str, int]] = {}  # token -> (listing key, offset)
        self._digests: dict[tuple[str, int, int, int], dict[str, str]] = {}
        self._lock = threading.Lock()
        self._httpd = _Server(self)
        self.host = f"{HOST}:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="nexus-rest", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def seen(self, path_part: str) -> list[Seen]:
        """The requests whose path contains ``path_part``."""
        with self._lock:
            return [s for s in self.requests if path_part in s.path]

    # --- the API ------------------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> tuple[int, str, bytes]:
        """(status, content type, body) for one request."""
        parts = urlsplit(target)
        query = parse_qs(parts.query, keep_blank_values=True)
        if self.users and not self._authorized(headers.get("Authorization")):
            status, ctype, data = 401, "text/plain", b""
        elif method == "GET" and parts.path == "/service/rest/v1/search/assets":
            status, ctype, data = self._search(query, headers)
        elif method == "GET" and parts.path == "/service/rest/v1/assets":
            status, ctype, data = self._assets(query, headers)
        elif method == "POST" and parts.path == "/service/rest/v1/components":
            status, ctype, data = self._upload(query, headers, body)
        else:
            status, ctype, data = 404, "text/plain", b""
        with self._lock:
            self.requests.append(Seen(method, parts.path, query, status))
        return status, ctype, data

    def _authorized(self, header: str | None) -> bool:
        scheme, _, value = (header or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except ValueError:
            return False
        return user in self.users and secrets.compare_digest(self.users[user], password)

    def _search(self, query: dict[str, list[str]], headers: Mapping[str, str]) -> tuple[int, str, bytes]:
        if self.on_search is not None:
            self.on_search()
        filters = {k: v[0] for k, v in query.items() if k != "continuationToken"}
        horizon = time.time() - self.index_delay
        found = []
        for asset in self._all(filters.get("repository")):
            if asset.mtime > horizon:
                continue  # not in the search index yet
            if "group" in filters and filters["group"] != _group(asset.path):
                continue
            if "name" in filters and filters["name"] != "/" + asset.path:
                continue
            if filters.get("format", "raw") != "raw":
                continue
            checksum = self._checksum(asset)
            if any(k in filters and filters[k] != checksum.get(k) for k in ALL_CHECKSUMS):
                continue
            found.append(asset)
        key = "search:" + json.dumps(sorted(filters.items()))
        return self._page(key, found, self.search_page_size, query, headers)

    def _assets(self, query: dict[str, list[str]], headers: Mapping[str, str]) -> tuple[int, str, bytes]:
        repository = query.get("repository", [""])[0]
        if not repository:
            return 422, "application/json", json.dumps("Parameter 'repository' is required").encode()
        if repository not in self.repositories:
            return 404, "text/plain", f"Unable to locate repository with id '{repository}'".encode()
        return self._page("assets:" + repository, self._all(repository), self.assets_page_size, query, headers)

    def _page(self, key: str, assets: list[_Asset], size: int, query: dict[str, list[str]],
              headers: Mapping[str, str]) -> tuple[int, str, bytes]:
        offset = 0
        token = query.get("continuationToken", [""])[0]
        if token:
            with self._lock:
                known = self._tokens.get(token)
            if known is None or known[0] != key:
                return 400, "application/json", json.dumps([{"id": "*", "message": "Invalid continuation token"}]
                                                           ).encode()
            offset = known[1]
        page = assets[offset:offset + size]
        next_token = None
        if len(page) == size:  # AssetsResource: null only when a page is not full
            next_token = secrets.token_hex(16)
            with self._lock:
                self._tokens[next_token] = (key, offset + size)
        base = f"{headers.get('X-Forwarded-Proto', 'http')}://{headers.get('Host', self.host)}"
        body = {"items": [self._xo(a, base) for a in page], "continuationToken": next_token}
        return 200, "application/json", json.dumps(body, indent=2).encode()

    def _xo(self, asset: _Asset, base: str) -> dict[str, Any]:
        """The asset as Nexus's AssetXO (datastore flavour)."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000+00:00", time.gmtime(asset.mtime))
        internal = hashlib.sha1(f"{asset.repository}/{asset.path}".encode()).hexdigest()[:32]
        return {
            "downloadUrl": f"{base}/repository/{asset.repository}/{asset.path}",
            "path": "/" + asset.path,
            "id": base64.urlsafe_b64encode(f"{asset.repository}:{internal}".encode()).decode().rstrip("="),
            "repository": asset.repository,
            "format": "raw",
            "checksum": self._checksum(asset),
            "contentType": "application/octet-stream",
            "lastModified": stamp,
            "lastDownloaded": None,
            "uploader": next(iter(self.users), "anonymous"),
            "uploaderIp": HOST,
            "fileSize": asset.file.stat().st_size,
            "blobCreated": stamp,
            "blobStoreName": "default",
            "raw": {},
        }

    def _all(self, repository: str | None) -> list[_Asset]:
        """Every stored file of `repository` (all repositories when None), in a stable, non-alphabetical order."""
        found = []
        for repo in self.repositories if repository is None else (repository,):
            top = self.root / "repository" / repo
            if repo not in self.repositories or not top.is_dir():
                continue
            for file in top.rglob("*"):
                if file.is_file():
                    found.append(_Asset(repo, file.relative_to(top).as_posix(), file, file.stat().st_mtime))
        return sorted(found, key=lambda a: hashlib.sha1(f"{a.repository}/{a.path}".encode()).digest())

    def _checksum(self, asset: _Asset) -> dict[str, str]:
        stat = asset.file.stat()
        key = (str(asset.file), stat.st_size, stat.st_mtime_ns, stat.st_ino)
        with self._lock:
            cached = self._digests.get(key)
        if cached is None:
            hashers = {name: hashlib.new(name) for name in ALL_CHECKSUMS}
            with asset.file.open("rb") as stream:
                while chunk := stream.read(1 << 20):
                    for hasher in hashers.values():
                        hasher.update(chunk)
            cached = {name: hasher.hexdigest() for name, hasher in hashers.items()}
            with self._lock:
                self._digests[key] = cached
        return {name: cached[name] for name in self.checksums}

    def _upload(self, query: dict[str, list[str]], headers: Mapping[str, str], body: bytes
                ) -> tuple[int, str, bytes]:
        repository = query.get("repository", [""])[0]
        if not repository:
            return 422, "application/json", json.dumps("Parameter 'repository' is required").encode()
        if repository not in self.repositories:
            return 404, "text/plain", f"Unable to locate repository with id '{repository}'".encode()
        ctype = headers.get("Content-Type", "")
        if not ctype.startswith("multipart/"):
            return 400, "application/json", b'"Expected multipart Content-Type"'
        fields, files = _multipart(ctype, body)
        errors = _validate(fields, files)
        if errors:
            return 400, "application/json", json.dumps(errors).encode()
        directory = fields["directory"].strip()
        for name in sorted(files, key=lambda n: int(n[5:]) if n[5:].isdigit() else 0):
            path = _normalize(directory + "/" + fields[f"{name}.filename"].strip())
            target = self.root / "repository" / repository / path
            if not self.redeploy and target.exists():
                return 400, "text/plain", f"{repository}/{path} cannot be updated".encode()
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}")
            temp.write_bytes(files[name])
            os.replace(temp, target)
        return 204, "text/plain", b""


def _group(path: str) -> str:
    """RawCoordinatesHelper.getGroup: the directory of a path, with a leading '/' ('/' at the top)."""
    return "/" + path.rpartition("/")[0]


def _normalize(path: str) -> str:
    """RawUploadHandlerSupport.normalizePath: no repeated, leading or trailing '/'."""
    return "/".join(p for p in path.split("/") if p)


def _multipart(ctype: str, body: bytes) -> tuple[dict[str, str], dict[str, bytes]]:
    """Form fields and files of a multipart/form-data body, their `raw.` prefix removed."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {ctype}\r\n\r\n".encode() + body)
    fields: dict[str, str] = {}
    files: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        name = name.removeprefix("raw.")
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        if part.get_filename() is not None:
            files[name] = data
        else:
            fields[name] = data.decode()
    return fields, files


def _validate(fields: dict[str, str], files: dict[str, bytes]) -> list[dict[str, str]]:
    """ValidatingComponentUpload for the raw format."""
    errors = []
    if not files:
        errors.append({"id": "*", "message": "No assets found in upload"})
    for key in fields:
        if key != "directory" and key.partition(".")[0] not in files:
            errors.append({"id": key, "message": f"Unknown component field '{key}'"})
    if not fields.get("directory", "").strip():
        errors.append({"id": "directory", "message": "Missing required component field 'Directory'"})
    seen: dict[str, int] = {}
    for index, name in enumerate(sorted(files), start=1):
        filename = fields.get(f"{name}.filename", "").strip()
        if not filename:
            errors.append({"id": "filename", "message": f"Missing required asset field 'Filename' on '{index}'"})
        elif filename in seen:
            errors.append({"id": "*", "message": f"The assets {seen[filename]} and {index} have identical "
                                                 "coordinates"})
        seen.setdefault(filename, index)
    return errors


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, ctype, data = self.server.api.handle(self.command, self.path, dict(self.headers.items()), body)
        self.send_response(status)
        if status == 401:
            self.send_header("WWW-Authenticate", f'BASIC realm="{REALM}"')
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, api: NexusRest) -> None:
        self.api = api
        super().__init__((HOST, 0), _Handler)


# --- the docker side ----------------------------------------------------------------------------------


@dataclass
class NexusDockerProxy:
    """A connector port with "Disable redeploy" in front of the registry at ``upstream`` (HOST:PORT)."""

    upstream: str
    repository: str = "docker-hosted"
    refused: list[str] = field(default_factory=list)  # the manifest PUT paths answered 400
    host: str = ""

    def __post_init__(self) -> None:
        self._httpd = _ProxyServer(self)
        self.host = f"{HOST}:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="nexus-docker",
                         daemon=True).start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def relay(self, method: str, path: str, headers: Mapping[str, str], body: bytes
              ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Answer one request: refuse a redeploy, else relay it upstream."""
        if method == "PUT" and "/manifests/" in path and self._exists(path, headers):
            return self._refuse(path, f"Repository does not allow updating assets: {self.repository}")
        parts = urlsplit(path)
        digest = parse_qs(parts.query).get("digest", [""])[0]
        if method == "PUT" and "/blobs/uploads/" in parts.path and digest:
            name = parts.path.removeprefix("/v2/").partition("/blobs/uploads/")[0]
            if self._exists(f"/v2/{name}/blobs/{digest}", headers):  # another upload of it finished first
                return self._refuse(path, f"{self.repository}/v2/-/blobs/{digest} cannot be updated")
        return self._forward(method, path, headers, body)

    def _refuse(self, path: str, detail: str) -> tuple[int, list[tuple[str, str]], bytes]:
        self.refused.append(path)
        data = json.dumps({"errors": [{"code": "BLOB_UPLOAD_INVALID", "message": "blob upload invalid",
                                       "detail": detail}]}).encode()
        return 400, [("Content-Type", "application/json"), ("Docker-Distribution-Api-Version", "registry/2.0")], data

    def _exists(self, path: str, headers: Mapping[str, str]) -> bool:
        ask = {"Accept": ", ".join(MANIFEST_TYPES), **({"Authorization": headers["Authorization"]}
                                                        if "Authorization" in headers else {})}
        status, _, _ = self._forward("HEAD", path, ask, b"")
        return status == 200

    def _forward(self, method: str, path: str, headers: Mapping[str, str], body: bytes
                 ) -> tuple[int, list[tuple[str, str]], bytes]:
        host, port = self.upstream.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            sent = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
            conn.request(method, path, body=body or None, headers=sent)
            response = conn.getresponse()
            data = response.read()
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
            if method == "HEAD":
                kept.append(("Content-Length", response.getheader("Content-Length") or "0"))
            return response.status, kept, data
        finally:
            conn.close()


class _ProxyHandler(BaseHTTPRequestHandler):
    server: _ProxyServer
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, headers, data = self.server.proxy.relay(self.command, self.path, dict(self.headers.items()), body)
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, proxy: NexusDockerProxy) -> None:
        self.proxy = proxy
        super().__init__((HOST, 0), _ProxyHandler)


# --- nginx and the REST stand-in as one Nexus ----------------------------------------------------------------


@dataclass
class Nexus:
    """A raw hosted repository: nginx serves the content, the stand-in the REST API, on one origin."""

    nginx: Nginx
    rest: NexusRest | None

    @property
    def repository_url(self) -> str:
        return self.nginx.repository_url

    @property
    def host(self) -> str:
        return self.nginx.host

    def stored(self, path: str) -> Path:
        return self.nginx.stored(path)


def start_nexus(directory: Path, *, redeploy: bool = False, auth: bool = False, tls: bool = False,
                rest: bool = True, port: int | None = None, **rest_options: Any) -> Nexus:
    """nginx (Disable redeploy unless `redeploy`) with the REST stand-in behind /service/rest (unless not `rest`:
    a host without Nexus's API, whose checksums only a read-back checks)."""
    api = None
    if rest:
        api = NexusRest(directory / "data", users=None, redeploy=redeploy, **rest_options)
    try:
        server = start_nginx(directory, redeploy=redeploy, auth=auth, tls=tls,
                             rest_upstream=api.host if api else None, port=port)
    except BaseException:
        if api is not None:
            api.stop()
        raise
    if api is not None and server.username and server.password and server.reader and server.reader_password:
        api.users = {server.username: server.password, server.reader: server.reader_password}
    return Nexus(server, api)


def stop_nexus(nexus: Nexus) -> None:
    stop_nginx(nexus.nginx)
    if nexus.rest is not None:
        nexus.rest.stop()
