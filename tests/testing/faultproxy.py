"""A fault-injecting HTTP/1.1 proxy for tests, between mlci and a real registry on 127.0.0.1.

It relays requests one by one (Content-Length bodies; responses with Content-Length, chunked or no body),
counts what the client sent, and applies :class:`Fault` rules to the N-th request matching a method and a
path fragment:

* ``drop_before``: the connection is closed as soon as the request's headers arrived; the registry never
  sees it (a drop *between* chunks, from the registry's point of view).
* ``drop_mid_body``: headers and half the body are relayed, then both connections are closed (a drop in
  the middle of a chunk).
* ``error_503``: the body is read and not relayed; the client gets ``503 Service Unavailable``.
* ``unauthorized``: the body is read and not relayed; the client gets ``401`` with
  :attr:`FaultProxy.challenge` as ``WWW-Authenticate`` (an expired token).

``delay`` holds each upload request (PATCH/PUT with a body under ``/blobs/uploads/``) before relaying it, so
that concurrent uploads overlap for certain; :attr:`FaultProxy.max_in_flight` is the most requests that
were waiting for an answer at one time.
"""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import pytest

Action = Literal["drop_before", "drop_mid_body", "error_503", "unauthorized"]
HOST = "127.0.0.1"


@dataclass
class Fault:
    """Apply `action` to the `nth` (1-based) request with `method` whose path contains `path`."""

    method: str
    nth: int
    action: Action
    path: str = "/blobs/uploads/"
    seen: int = 0
    fired: bool = False


@dataclass
class Seen:
    """One request as the proxy saw it."""

    method: str
    path: str
    body_bytes: int  # body bytes read from the client (whether relayed or not)
    fault: Action | None = None


class _Closed(Exception):
    pass


class FaultProxy:
    """A proxy on 127.0.0.1:<free port> in front of `upstream` (HOST:PORT)."""

    def __init__(self, upstream: str, faults: list[Fault] | None = None, delay: float = 0.0,
                 challenge: str = 'Basic realm="mlci-test"') -> None:
        self.upstream = upstream
        self.faults = list(faults or [])
        self.delay = delay
        self.challenge = challenge
        self.seen: list[Seen] = []
        self.connections = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((HOST, 0))
        self._listener.listen(64)
        self.host = f"{HOST}:{self._listener.getsockname()[1]}"
        self._stopped = False
        self._threads: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)
        self._thread.start()

    def upload_bytes(self) -> int:
        """Body bytes the client sent in blob uploads (PATCH/PUT under /blobs/uploads/), re-sent ones included."""
        with self._lock:
            return sum(s.body_bytes for s in self.seen if s.method in ("PATCH", "PUT") and "/blobs/uploads/" in s.path)

    def fired(self) -> list[Fault]:
        """The faults that were applied."""
        return [f for f in self.faults if f.fired]

    def stop(self) -> None:
        self._stopped = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        host, port = self.upstream.rsplit(":", 1)
        try:
            upstream = socket.create_connection((host, int(port)))
        except OSError:
            client.close()
            return
        reader = _Reader(client)
        upstream_reader = _Reader(upstream)
        try:
            while True:
                if not self._relay_one(reader, client, upstream, upstream_reader):
                    break
        except (_Closed, OSError):
            pass
        finally:
            for s in (client, upstream):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def _fault_for(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.method == method and fault.path in path and not fault.fired:
                    fault.seen += 1
                    if fault.seen == fault.nth:
                        fault.fired = True
                        return fault
        return None

    def _relay_one(self, reader: _Reader, client: socket.socket, upstream: socket.socket,
                   upstream_reader: _Reader) -> bool:
        head = reader.head()
        if head is None:
            return False
        method, path, length = _request_line(head)
        record = Seen(method, path, 0)
        with self._lock:
            self.seen.append(record)
        fault = self._fault_for(method, path)
        if fault is not None:
            record.fault = fault.action
        if fault is not None and fault.action == "drop_before":
            record.body_bytes = reader.buffered()  # what had arrived with the headers
            return False
        if fault is not None and fault.action in ("error_503", "unauthorized"):
            for chunk in reader.body(length):
                record.body_bytes += len(chunk)
            if fault.action == "error_503":
                client.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            else:
                client.sendall(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: " + self.challenge.encode()
                               + b"\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
                               b"Connection: close\r\n\r\n{}")
            return False
        if self.delay and length and method in ("PATCH", "PUT") and "/blobs/uploads/" in path:
            self._enter()
            time.sleep(self.delay)
        else:
            self._enter()
        try:
            upstream.sendall(head)
            limit = length // 2 if fault is not None and fault.action == "drop_mid_body" else length
            for chunk in reader.body(limit):
                record.body_bytes += len(chunk)
                upstream.sendall(chunk)
            if fault is not None:  # drop_mid_body: half of it went through
                return False
            status_head = upstream_reader.head()
            if status_head is None:
                return False
        finally:
            self._leave()
        client.sendall(status_head)
        status = int(status_head.split(b" ", 2)[1])
        headers = _headers(status_head)
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return True
        if headers.get("transfer-encoding", "").lower() == "chunked":
            for chunk in upstream_reader.chunked():
                client.sendall(chunk)
        elif "content-length" in headers:
            for chunk in upstream_reader.body(int(headers["content-length"])):
                client.sendall(chunk)
        else:
            for chunk in upstream_reader.until_closed():
                client.sendall(chunk)
            return False
        return headers.get("connection", "").lower() != "close"

    def _enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1


class _Reader:
    """Buffered reads from a socket: a header block, a counted body, a chunked body."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buffer = sock, b""

    def buffered(self) -> int:
        return len(self.buffer)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buffer += data
        return True

    def head(self) -> bytes | None:
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                if self.buffer:
                    raise _Closed()
                return None
        end = self.buffer.index(b"\r\n\r\n") + 4
        head, self.buffer = self.buffer[:end], self.buffer[end:]
        return head

    def body(self, length: int) -> Iterator[bytes]:
        left = length
        while left > 0:
            if not self.buffer and not self._fill():
                raise _Closed()
            chunk, self.buffer = self.buffer[:left], self.buffer[left:]
            left -= len(chunk)
            yield chunk

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            if not self._fill():
                raise _Closed()
        end = self.buffer.index(b"\r\n") + 2
        line, self.buffer = self.buffer[:end], self.buffer[end:]
        return line

    def chunked(self) -> Iterator[bytes]:
        while True:
            size_line = self.line()
            yield size_line
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:
                    trailer = self.line()
                    yield trailer
                    if trailer == b"\r\n":
                        return
            yield from self.body(size + 2)

    def until_closed(self) -> Iterator[bytes]:
        if self.buffer:
            yield self.buffer
            self.buffer = b""
        while self._fill():
            yield self.buffer
            self.buffer = b""


def _request_line(head: bytes) -> tuple[str, str, int]:
    first = head.split(b"\r\n", 1)[0].decode("latin-1")
    method, path, _ = first.split(" ", 2)
    headers = _headers(head)
    if headers.get("transfer-encoding"):
        raise AssertionError("the fault proxy relays Content-Length request bodies only")
    return method, path, int(headers.get("content-length", "0"))


def _headers(head: bytes) -> dict[str, str]:
    result = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, colon, value = line.partition(":")
        if colon:
            result[name.strip().lower()] = value.strip()
    return result


@pytest.fixture
def fault_proxies() -> Iterator[list[FaultProxy]]:
    """Proxies a test starts (append them); stopped after it."""
    proxies: list[FaultProxy] = []
    yield proxies
    for proxy in proxies:
        proxy.stop()
