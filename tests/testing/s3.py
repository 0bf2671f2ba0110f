"""A real S3 endpoint for tests: moto's standalone server (``moto_server``) on 127.0.0.1.

:func:`start_s3` runs ``moto_server -H 127.0.0.1 -p <free port>`` (from ``moto[server]``
in this venv) as a subprocess and waits until it answers; :func:`stop_s3` ends it.
The ``s3`` fixture does both once per session (per pytest-xdist worker). moto keeps
everything in memory; :meth:`S3Server.reset` wipes it.

Clients reach it with :attr:`S3Server.endpoint_url` and the dummy credentials
:data:`ACCESS_KEY_ID` / :data:`SECRET_ACCESS_KEY` (moto accepts any), region
``us-east-1``, path-style addressing (the default for an IP endpoint). botocore,
aiobotocore and so s3fs also honour ``AWS_ENDPOINT_URL`` from the environment:
:meth:`S3Server.env` gives all of it for a subprocess.

DuckDB reads from it only through fsspec (the httpfs extension cannot be
downloaded offline): ``con.register_filesystem(s3fs.S3FileSystem(...))``, then
``read_parquet('s3://bucket/key')`` / ``read_csv(...)``; globs such as
``s3://bucket/dir/*.parquet`` and ``**`` work too (s3fs lists the prefix).
:meth:`S3Server.duckdb` returns such a connection.

Gotcha: s3fs caches instances (same arguments give the same object) and
directory listings, so an object uploaded after a listing is missed by a later
glob. :meth:`S3Server.filesystem` therefore returns a fresh, uncached instance.
"""

from __future__ import annotations

import atexit
import http.client
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.testing.procs import free_port, tail, terminate

if TYPE_CHECKING:
    import duckdb
    import s3fs  # type: ignore[import-untyped]

HOST = "127.0.0.1"
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"
REGION = "us-east-1"
START_ATTEMPTS = 3
START_TIMEOUT = 30.0
INSTALL_HINT = "run scripts/test once (it installs the pinned test requirements, moto[server] among them)"
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class MotoNotInstalled(RuntimeError):
    """moto (with its server extra) is missing from this venv."""


@dataclass(frozen=True)
class S3Server:
    """A running moto_server; every client needs :attr:`endpoint_url` and the dummy credentials."""

    endpoint_url: str
    port: int
    log_file: Path
    access_key_id: str = ACCESS_KEY_ID
    secret_access_key: str = SECRET_ACCESS_KEY
    region: str = REGION
    process: subprocess.Popen[bytes] | None = field(default=None, compare=False, repr=False)

    def env(self) -> dict[str, str]:
        """AWS_* variables for a subprocess (boto3, s3fs, DVC's S3 remote honour AWS_ENDPOINT_URL)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
        }

    def client(self) -> Any:
        """A boto3 S3 client for this server."""
        import boto3  # type: ignore[import-untyped]

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region,
                            aws_access_key_id=self.access_key_id, aws_secret_access_key=self.secret_access_key)

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh unique name when ``name`` is None) and return its name."""
        name = name or f"mlci-{secrets.token_hex(6)}"
        if not _BUCKET_RE.match(name):
            raise ValueError(f"not a valid S3 bucket name: {name!r}")
        self.client().create_bucket(Bucket=name)
        return name

    def put_file(self, bucket: str, key: str, path: Path) -> str:
        """Upload a local file; returns its ``s3://bucket/key`` URL."""
        self.client().upload_file(str(path), bucket, key)
        return f"s3://{bucket}/{key}"

    def put_bytes(self, bucket: str, key: str, data: bytes) -> str:
        """Store ``data`` at ``bucket/key``; returns its ``s3://`` URL."""
        self.client().put_object(Bucket=bucket, Key=key, Body=data)
        return f"s3://{bucket}/{key}"

    def get_bytes(self, bucket: str, key: str) -> bytes:
        body: bytes = self.client().get_object(Bucket=bucket, Key=key)["Body"].read()
        return body

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """All keys under ``prefix``, sorted."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def filesystem(self, **kwargs: Any) -> s3fs.S3FileSystem:
        """A new s3fs filesystem for this server, without instance or listings cache."""
        import s3fs

        options: dict[str, Any] = {"endpoint_url": self.endpoint_url, "key": self.access_key_id,
                                   "secret": self.secret_access_key,
                                   "client_kwargs": {"region_name": self.region},
                                   "skip_instance_cache": True, "use_listings_cache": False}
        return s3fs.S3FileSystem(**{**options, **kwargs})

    def duckdb(self, database: str = ":memory:") -> duckdb.DuckDBPyConnection:
        """A DuckDB connection that reads ``s3://`` paths from this server (fsspec route)."""
        import duckdb

        con = duckdb.connect(database)
        con.register_filesystem(self.filesystem())
        return con

    def reset(self) -> None:
        """Drop every bucket and object (moto's ``POST /moto-api/reset``)."""
        status = _request(self.port, "POST", "/moto-api/reset")
        if status != 200:
            raise RuntimeError(f"moto reset answered HTTP {status}")


def start_s3(log_dir: Path | None = None) -> S3Server:
    """Start moto_server on 127.0.0.1:<free port>; its request log goes to ``log_dir`` (default: a temp dir)."""
    try:
        import flask  # noqa: F401  (moto's server extra)
        import moto  # noqa: F401
    except ImportError as error:
        raise MotoNotInstalled(f"moto[server] is not installed in {sys.prefix} ({error}): {INSTALL_HINT}") from None
    script = Path(sys.executable).parent / "moto_server"
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "moto.server"]
    own_dir = log_dir is None
    directory = Path(tempfile.mkdtemp(prefix="mlci-s3-")) if log_dir is None else log_dir
    directory.mkdir(parents=True, exist_ok=True)
    log_file = directory / "moto_server.log"
    try:
        for attempt in range(1, START_ATTEMPTS + 1):
            port = free_port()
            with log_file.open("ab") as log:
                process = subprocess.Popen([*command, "-H", HOST, "-p", str(port)], stdin=subprocess.DEVNULL,
                                           stdout=log, stderr=subprocess.STDOUT, cwd=directory,
                                           env={**os.environ, "PYTHONUNBUFFERED": "1"})
            server = S3Server(endpoint_url=f"http://{HOST}:{port}", port=port, log_file=log_file, process=process)
            if _wait_until_up(server):
                _LIVE[id(server)] = (server, directory if own_dir else None)
                return server
            terminate(process)
            log_text = tail(log_file)
            if attempt < START_ATTEMPTS and "already in use" in log_text:
                continue
            raise RuntimeError(f"moto_server did not come up on {server.endpoint_url} "
                               f"(exit code {process.returncode}); {log_file}:\n{log_text}")
        raise AssertionError("unreachable")
    except BaseException:
        if own_dir:
            shutil.rmtree(directory, ignore_errors=True)
        raise


def stop_s3(server: S3Server) -> None:
    """Stop moto_server (SIGTERM, then SIGKILL) and remove its temp dir if start_s3 made one. Idempotent."""
    entry = _LIVE.pop(id(server), None)
    if server.process is not None:
        terminate(server.process)
    if entry is not None and entry[1] is not None:
        shutil.rmtree(entry[1], ignore_errors=True)


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A moto S3 server for the whole session (one per xdist worker). Tests share it: create
    their own buckets (``s3.create_bucket()`` picks a unique name) rather than reset it."""
    try:
        server = start_s3(tmp_path_factory.mktemp("moto"))
    except MotoNotInstalled as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield server
    finally:
        stop_s3(server)


# --- internals -------------------------------------------------------------------------------------

_LIVE: dict[int, tuple[S3Server, Path | None]] = {}


@atexit.register
def _stop_leftovers() -> None:
    for server, _ in list(_LIVE.values()):
        stop_s3(server)



def _request(port: int, method: str, path: str, timeout: float = 5.0) -> int:
    """One plain HTTP request straight to 127.0.0.1 (no proxy variables involved); returns the status."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _wait_until_up(server: S3Server) -> bool:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process is not None and server.process.poll() is not None:
            return False
        try:
            if _request(server.port, "GET", "/moto-api/", timeout=2.0) == 200:
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False




