"""A stand-in for a registry with the OCI 1.1 referrers API (zot, Harbor, ACR), which cannot run here: an HTTP
proxy in front of a real docker-registry that relays every request, remembers each manifest PUT with a `subject`
(described as distribution-spec 1.1 says: artifactType, else the config's media type; the annotations copied),
answers the PUT with `OCI-Subject` (unless `subject_header` is False: a registry that lists but does not say so)
and serves `GET /v2/<name>/referrers/<digest>[?artifactType=]` (with `OCI-Filters-Applied`). What the registry
itself stores is untouched: a fallback tag written through the proxy would be visible upstream."""
from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

HOST = "127.0.0.1"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_MANIFEST = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)$")
_REFERRERS = re.compile(r"^/v2/(?P<name>.+)/referrers/(?P<digest>sha256:[a-f0-9]{64})$")
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host"}


class ReferrersApi:
    """The proxy on 127.0.0.1:<free port> in front of `upstream` (a registry URL); `requests` lists what it served."""

    def __init__(self, upstream: str, subject_header: bool = True) -> None:
        self.upstream, self.subject_header = upstream.rstrip("/"), subject_header
        self.listed: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.server = _Server(self)
        self.host = f"{HOST}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def remember(self, name: str, body: bytes, digest: str) -> str | None:
        """Record a pushed manifest if it has a subject; the subject's digest (None otherwise)."""
        try:
            manifest = json.loads(body)
            subject = manifest["subject"]["digest"]
        except (ValueError, KeyError, TypeError):
            return None
        entry: dict[str, Any] = {"mediaType": manifest.get("mediaType"), "digest": digest, "size": len(body)}
        artifact = manifest.get("artifactType") or (manifest.get("config") or {}).get("mediaType")
        if artifact:
            entry["artifactType"] = artifact
        if manifest.get("annotations"):
            entry["annotations"] = manifest["annotations"]
        with self.lock:
            entries = self.listed.setdefault((name, subject), [])
            if all(e["digest"] != digest for e in entries):
                entries.append(entry)
        return str(subject)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, api: ReferrersApi) -> None:
        self.api = api
        super().__init__((HOST, 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        match = _REFERRERS.match(urlsplit(self.path).path)
        if match is None:
            self._relay()
            return
        api = self.server.api
        with api.lock:
            api.requests.append(("GET", self.path))
            entries = list(api.listed.get((match["name"], match["digest"]), []))
        wanted = parse_qs(urlsplit(self.path).query).get("artifactType")
        if wanted:
            entries = [e for e in entries if e.get("artifactType") == wanted[0]]
        data = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
        self.send_response(200)
        self.send_header("Content-Type", OCI_INDEX)
        if wanted:
            self.send_header("OCI-Filters-Applied", "artifactType")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_HEAD(self) -> None:
        self._relay()

    def do_PUT(self) -> None:
        self._relay()

    def do_POST(self) -> None:
        self._relay()

    def do_PATCH(self) -> None:
        self._relay()

    def do_DELETE(self) -> None:
        self._relay()

    def _relay(self) -> None:
        api = self.server.api
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with api.lock:
            api.requests.append((self.command, self.path))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        headers["Host"] = api.host  # the registry's Location headers then point back here
        answer = requests.request(self.command, api.upstream + self.path, data=body, headers=headers, timeout=30,
                                  allow_redirects=False)
        extra: dict[str, str] = {}
        match = _MANIFEST.match(urlsplit(self.path).path)
        if self.command == "PUT" and match and answer.status_code == 201:
            subject = api.remember(match["name"], body, answer.headers.get("Docker-Content-Digest", ""))
            if subject and api.subject_header:
                extra["OCI-Subject"] = subject
        self.send_response(answer.status_code)
        for key, value in answer.headers.items():
            if key.lower() not in _HOP:
                self.send_header(key, value)
        for key, value in extra.items():
            self.send_header(key, value)
        content = b"" if self.command == "HEAD" else answer.content
        self.send_header("Content-Length", answer.headers.get("Content-Length", "0") if self.command == "HEAD"
                         else str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""
