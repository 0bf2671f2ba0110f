"""Real OCI registries for tests: CNCF distribution 2.8 (Debian ``docker-registry``) on 127.0.0.1.

:func:`start_registry` writes a config (JSON, which the registry's YAML parser reads) into a
directory of its own and runs ``/usr/bin/docker-registry serve CONFIG`` on a free port, then
waits until ``GET /v2/`` answers (about 0.1 s); :func:`stop_registry` ends it. Kinds:

* ``anonymous``: no auth at all.
* ``basic``: htpasswd auth with a fresh user and password (bcrypt via libxcrypt through ctypes,
  so neither ``bcrypt`` nor ``htpasswd`` is needed). Challenge: ``Basic realm="mlci-test"``.
* ``token``: the Docker token spec. A :class:`TokenIssuer` (stdlib HTTP server in a thread)
  answers ``GET <realm>?service=..&scope=..`` with Basic credentials, signs an ES256 JWT whose
  header carries ``x5c`` (the signing cert) and ``kid`` (its libtrust fingerprint, what 2.x
  looks up; 3.x would want an RFC 7638 thumbprint, but ``x5c`` is tried first in both), and
  records every request in :attr:`TokenIssuer.issued`. Challenge:
  ``Bearer realm="<realm>",service="<service>",scope="repository:NAME:pull"`` (plus
  ``error="invalid_token"`` or ``error="insufficient_scope"`` when a token was sent).

``tls=True`` serves HTTPS (and the token issuer too) with a server cert for 127.0.0.1 signed
by a fresh test CA: trust :attr:`Registry.ca_bundle`.

The registry writes its access log (Apache combined format, stdout) and its own log (logrus,
stderr, level info: token rejections are explained there) into :attr:`Registry.log_file`;
:func:`access_log` parses the former and :func:`blob_upload_count` counts completed blob
uploads (``PUT .../blobs/uploads/<uuid>?digest=...`` answered 201).

:func:`push_random_image` uploads random layers, a config and an OCI manifest with plain
``requests`` so that tests have something to pull. Fixtures: ``registry``, ``registry_basic``,
``registry_token``, ``registry_tls`` (basic auth over HTTPS), one fresh registry per test.
"""

from __future__ import annotations

import atexit
import base64
import ctypes
import datetime as dt
import hashlib
import http.client
import json
import os
import re
import secrets
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests

from tests.testing.forge import TlsFiles, make_tls_files
from tests.testing.procs import free_port, tail, terminate

HOST = "127.0.0.1"
REGISTRY_BINARY = Path("/usr/bin/docker-registry")
INSTALL_HINT = "apt-get install docker-registry (Debian 12: 2.8.2+ds1-1)"
SERVICE = "mlci-test-registry"
ISSUER = "mlci-test-issuer"
BASIC_REALM = "mlci-test"
START_ATTEMPTS = 3
START_TIMEOUT = 15.0
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
Kind = Literal["anonymous", "basic", "token"]

_ACCESS_LINE = re.compile(r'^\S+ \S+ \S+ \[[^\]]+\] "(?P<method>[A-Z]+) (?P<target>\S+) HTTP/[\d.]+" '
                          r'(?P<status>\d{3}) ')
_UPLOAD_DONE = re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/[^/?]+\?(?:.*&)?digest=")


class RegistryNotInstalled(RuntimeError):
    """/usr/bin/docker-registry is missing."""


@dataclass(frozen=True)
class IssuedToken:
    """One request the token issuer answered (or refused): what was asked and what was granted."""

    service: str
    scopes: tuple[str, ...]
    account: str | None
    status: int
    access: tuple[dict[str, Any], ...] = ()
    token: str = ""


@dataclass(frozen=True)
class AccessLogEntry:
    """One line of the registry's access log."""

    method: str
    target: str
    status: int


class TokenIssuer:
    """A Docker token-spec issuer for one registry: Basic credentials in, an ES256 JWT out."""

    def __init__(self, directory: Path, username: str, password: str, tls: TlsFiles | None) -> None:
        """Make the signing key and cert (``directory/token-signer.pem``) and serve on a free port."""
        self.username, self.password = username, password
        self.service, self.issuer = SERVICE, ISSUER
        self.expires_in = 300
        self.allowed_actions: set[str] = {"pull", "push", "delete", "*"}
        self.issued: list[IssuedToken] = []
        self._lock = threading.Lock()
        self._key, cert_der = _signing_key_and_cert()
        self.cert_bundle = directory / "token-signer.pem"
        self.cert_bundle.write_text(_pem("CERTIFICATE", cert_der))
        self._x5c = base64.b64encode(cert_der).decode()
        self.kid = _libtrust_key_id(self._key.public_key())
        self._httpd = _IssuerHTTPServer(self)
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls.server_cert, tls.server_key)
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.realm = f"{scheme}://{HOST}:{self._httpd.server_address[1]}/token"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="registry-token-issuer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()

    def requested_scopes(self) -> list[str]:
        """Every scope asked for so far, in order (refused requests included)."""
        with self._lock:
            return [scope for entry in self.issued for scope in entry.scopes]

    def sign(self, claims: dict[str, Any], *, x5c: bool = True, kid: bool = True) -> str:
        """A compact ES256 JWS of ``claims``; the header carries ``x5c`` and/or ``kid``."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        header: dict[str, Any] = {"typ": "JWT", "alg": "ES256"}
        if kid:
            header["kid"] = self.kid
        if x5c:
            header["x5c"] = [self._x5c]
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def claims(self, subject: str, access: Sequence[dict[str, Any]], expires_in: int | None = None) -> dict[str, Any]:
        """The claim set the registry checks: iss, sub, aud, exp, nbf, iat, jti, access."""
        now = int(time.time())
        return {"iss": self.issuer, "sub": subject, "aud": self.service,
                "exp": now + (self.expires_in if expires_in is None else expires_in), "nbf": now - 5, "iat": now,
                "jti": secrets.token_hex(16), "access": list(access)}

    def mint(self, subject: str, scopes: Sequence[str]) -> str:
        """A token granting ``scopes`` (as allowed) without going through HTTP; not recorded in :attr:`issued`."""
        return self.sign(self.claims(subject, self._grant(scopes)))

    def handle(self, query: str, authorization: str | None) -> tuple[int, dict[str, Any]]:
        """Answer one token request: (status, JSON body)."""
        params = parse_qs(query)
        service = params.get("service", [""])[0]
        scopes = tuple(scope for value in params.get("scope", []) for scope in value.split())
        account = _basic_user(authorization, self.username, self.password)
        access: list[dict[str, Any]] = []
        body: dict[str, Any]
        if account is None:
            status, body = 401, {"errors": [{"code": "UNAUTHORIZED", "message": "valid Basic credentials required"}]}
        elif service != self.service:
            status, body = 400, {"errors": [{"code": "INVALID_SERVICE", "message": f"unknown service {service!r}"}]}
        else:
            access = self._grant(scopes)
            claims = self.claims(account, access)
            token = self.sign(claims)
            issued_at = dt.datetime.fromtimestamp(claims["iat"], dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            status, body = 200, {"token": token, "access_token": token, "expires_in": self.expires_in,
                                 "issued_at": issued_at}
        entry = IssuedToken(service=service, scopes=scopes, account=account or params.get("account", [None])[0],
                            status=status, access=tuple(access),
                            token=str(body.get("token", "")))
        with self._lock:
            self.issued.append(entry)
        return status, body

    def _grant(self, scopes: Sequence[str]) -> list[dict[str, Any]]:
        """The ``access`` claim for ``scopes``: every requested action in :attr:`allowed_actions`."""
        granted: list[dict[str, Any]] = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            allowed = [action for action in actions.split(",") if action in self.allowed_actions]
            if kind and name and allowed:
                granted.append({"type": kind, "name": name, "actions": allowed})
        return granted


class _IssuerHandler(BaseHTTPRequestHandler):
    """GET /token only; everything else is 404/405."""

    server: _IssuerHTTPServer

    def do_GET(self) -> None:
        """Serve the token endpoint."""
        path, _, query = self.path.partition("?")
        if path != "/token":
            self._reply(404, {"errors": [{"code": "NOT_FOUND", "message": path}]})
            return
        status, body = self.server.issuer.handle(query, self.headers.get("Authorization"))
        self._reply(status, body)

    def do_POST(self) -> None:
        """The OAuth2 POST flow is not implemented."""
        self._reply(405, {"errors": [{"code": "UNSUPPORTED", "message": "only GET token requests"}]})

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        """Send a JSON answer (with a Basic challenge on 401)."""
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="mlci test token issuer"')
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""


class _IssuerHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer on 127.0.0.1 that knows its issuer."""

    daemon_threads = True

    def __init__(self, issuer: TokenIssuer) -> None:
        """Bind a free port on 127.0.0.1."""
        self.issuer = issuer
        super().__init__((HOST, 0), _IssuerHandler)


@dataclass
class Registry:
    """A running registry; clients need :attr:`url` (or :attr:`host`), credentials and :attr:`ca_bundle`."""

    kind: Kind
    host: str
    url: str
    root: Path
    log_file: Path
    config_file: Path
    username: str | None = None
    password: str | None = None
    ca_bundle: Path | None = None
    token_issuer: TokenIssuer | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    directory: Path | None = field(default=None, repr=False)

    @property
    def realm(self) -> str | None:
        """The token issuer's URL (token mode only)."""
        return self.token_issuer.realm if self.token_issuer is not None else None

    @property
    def issued(self) -> list[IssuedToken]:
        """Every token request seen by the issuer (empty outside token mode)."""
        return list(self.token_issuer.issued) if self.token_issuer is not None else []

    @property
    def auth(self) -> tuple[str, str] | None:
        """(username, password), or None for an anonymous registry."""
        return (self.username, self.password) if self.username and self.password else None


def start_registry(kind: Kind = "anonymous", tls: bool = False, directory: Path | None = None,
                   port: int | None = None) -> Registry:
    """Start a registry of ``kind`` on 127.0.0.1:<free port> (or ``port``: in a fresh network namespace every port
    is free); files go to ``directory`` (default: a temp dir)."""
    if not REGISTRY_BINARY.is_file():
        raise RegistryNotInstalled(f"{REGISTRY_BINARY} is missing: {INSTALL_HINT}")
    if kind not in ("anonymous", "basic", "token"):
        raise ValueError(f"unknown registry kind {kind!r}")
    own = directory is None
    base = Path(tempfile.mkdtemp(prefix="mlci-registry-")) if directory is None else directory
    issuer = None
    try:
        base.mkdir(parents=True, exist_ok=True)
        (base / "data").mkdir(exist_ok=True)
        tls_files = make_tls_files(base / "tls") if tls else None
        username, password = (f"user-{secrets.token_hex(3)}", secrets.token_urlsafe(12)) if kind != "anonymous" \
            else (None, None)
        if kind == "token":
            assert username is not None and password is not None
            issuer = TokenIssuer(base, username, password, tls_files)
        auth = _auth_config(kind, base, username, password, issuer)
        registry = _launch(kind, base, auth, tls_files, issuer, port)
        registry.username, registry.password = username, password
        registry.directory = base if own else None
        _LIVE[id(registry)] = registry
        return registry
    except BaseException:
        if issuer is not None:
            issuer.stop()
        if own:
            shutil.rmtree(base, ignore_errors=True)
        raise


def stop_registry(registry: Registry) -> None:
    """Stop the registry (SIGTERM, then SIGKILL) and its issuer; remove its temp dir if it made one. Idempotent."""
    _LIVE.pop(id(registry), None)
    if registry.process is not None:
        terminate(registry.process)
    if registry.token_issuer is not None:
        issuer, registry.token_issuer = registry.token_issuer, None
        issuer.stop()
    if registry.directory is not None:
        shutil.rmtree(registry.directory, ignore_errors=True)
        registry.directory = None


def session(registry: Registry) -> requests.Session:
    """A requests session that trusts :attr:`Registry.ca_bundle` and ignores proxy/netrc variables."""
    s = requests.Session()
    s.trust_env = False
    s.verify = str(registry.ca_bundle) if registry.ca_bundle is not None else True
    return s


def auth_headers(registry: Registry, scopes: Sequence[str] = ()) -> dict[str, str]:
    """Authorization for ``scopes``: nothing, Basic, or a minted Bearer token (not recorded as issued)."""
    if registry.kind == "basic" and registry.auth is not None:
        raw = f"{registry.username}:{registry.password}".encode()
        return {"Authorization": f"Basic {base64.b64encode(raw).decode()}"}
    if registry.kind == "token" and registry.token_issuer is not None and registry.username is not None:
        return {"Authorization": f"Bearer {registry.token_issuer.mint(registry.username, scopes)}"}
    return {}


def pulled_blob(registry: Registry, repo: str, digest: str) -> bytes:
    """A blob's bytes as a client pulls them (200 asserted)."""
    response = session(registry).get(f"{registry.url}/v2/{repo}/blobs/{digest}", timeout=30,
                                     headers=auth_headers(registry, [f"repository:{repo}:pull"]))
    assert response.status_code == 200
    return response.content


def push_random_image(registry: Registry, repo: str, tag: str = "latest",
                      layers: Sequence[int | bytes] = (1024,)) -> str:
    """Upload random layers (int: size) or given bytes, a config and an OCI manifest; returns the manifest digest."""
    http = session(registry)
    http.headers.update(auth_headers(registry, [f"repository:{repo}:pull,push"]))
    blobs = [layer if isinstance(layer, bytes) else os.urandom(layer) for layer in layers]
    descriptors = [_upload_blob(http, registry, repo, blob, OCI_LAYER) for blob in blobs]
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descriptors]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": _upload_blob(http, registry, repo, config, OCI_CONFIG),
                           "layers": descriptors}).encode()
    response = http.put(f"{registry.url}/v2/{repo}/manifests/{tag}", data=manifest,
                        headers={"Content-Type": OCI_MANIFEST}, timeout=30)
    _expect(response, 201)
    digest = _digest(manifest)
    if response.headers.get("Docker-Content-Digest") != digest:
        raise AssertionError(f"registry digest {response.headers.get('Docker-Content-Digest')} != {digest}")
    return digest


def plain_http(*hosts: str) -> dict[str, str]:
    """The variable that makes mlci speak plain HTTP to these loopback registries (the `registries` section)."""
    return {"MLCI_REGISTRIES": json.dumps({host: {"plain_http": True} for host in hosts})}


def access_log(registry: Registry) -> list[AccessLogEntry]:
    """Every request in the registry's access log so far, oldest first."""
    entries = []
    for line in registry.log_file.read_text(errors="replace").splitlines():
        match = _ACCESS_LINE.match(line)
        if match:
            entries.append(AccessLogEntry(match["method"], match["target"], int(match["status"])))
    return entries


def blob_upload_count(registry: Registry, repo: str | None = None) -> int:
    """Completed blob uploads (``PUT .../blobs/uploads/<uuid>?digest=`` -> 201), optionally for one repo."""
    count = 0
    for entry in access_log(registry):
        match = _UPLOAD_DONE.match(entry.target)
        if entry.method == "PUT" and entry.status == 201 and match and repo in (None, match["name"]):
            count += 1
    return count


def bcrypt_hash(password: str, cost: int = 4) -> str:
    """A ``$2b$`` bcrypt hash from libxcrypt (libcrypt.so.1, on every Debian) via ctypes."""
    lib = ctypes.CDLL("libcrypt.so.1")
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    salt = lib.crypt_gensalt(b"$2b$", cost, None, 0)
    hashed = lib.crypt(password.encode(), salt) if salt else None
    if not hashed or not hashed.startswith(b"$2b$"):
        raise RuntimeError("libcrypt.so.1 could not make a bcrypt hash")
    return str(hashed.decode())


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    """A fresh anonymous plain-HTTP registry per test."""
    yield from _fixture("anonymous", False, tmp_path / "registry")


@pytest.fixture
def registry_stage(tmp_path: Path) -> Iterator[Registry]:
    """A second fresh anonymous plain-HTTP registry per test (a promotion's destination)."""
    yield from _fixture("anonymous", False, tmp_path / "registry-stage")


@pytest.fixture
def registry_basic(tmp_path: Path) -> Iterator[Registry]:
    """A fresh plain-HTTP registry with htpasswd auth (:attr:`Registry.username` / ``password``)."""
    yield from _fixture("basic", False, tmp_path / "registry-basic")


@pytest.fixture
def registry_token(tmp_path: Path) -> Iterator[Registry]:
    """A fresh plain-HTTP registry with token auth and its issuer (:attr:`Registry.realm`, ``issued``)."""
    yield from _fixture("token", False, tmp_path / "registry-token")


@pytest.fixture
def registry_tls(tmp_path: Path) -> Iterator[Registry]:
    """A fresh HTTPS registry with htpasswd auth; trust :attr:`Registry.ca_bundle`."""
    yield from _fixture("basic", True, tmp_path / "registry-tls")


# --- internals -------------------------------------------------------------------------------------

_LIVE: dict[int, Registry] = {}


@atexit.register
def _stop_leftovers() -> None:
    """Stop registries a crashed session left running."""
    for registry in list(_LIVE.values()):
        stop_registry(registry)


def _fixture(kind: Kind, tls: bool, directory: Path) -> Iterator[Registry]:
    """Start, yield, stop; a missing binary fails the test with the install hint."""
    try:
        registry = start_registry(kind, tls=tls, directory=directory)
    except RegistryNotInstalled as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield registry
    finally:
        stop_registry(registry)


def _auth_config(kind: Kind, base: Path, username: str | None, password: str | None,
                 issuer: TokenIssuer | None) -> dict[str, Any]:
    """The ``auth`` section of the config (writes the htpasswd file for basic)."""
    if kind == "basic":
        assert username is not None and password is not None
        htpasswd = base / "htpasswd"
        htpasswd.write_text(f"{username}:{bcrypt_hash(password)}\n")
        return {"htpasswd": {"realm": BASIC_REALM, "path": str(htpasswd)}}
    if kind == "token":
        assert issuer is not None
        return {"token": {"realm": issuer.realm, "service": issuer.service, "issuer": issuer.issuer,
                          "rootcertbundle": str(issuer.cert_bundle)}}
    return {}


def _launch(kind: Kind, base: Path, auth: dict[str, Any], tls: TlsFiles | None,
            issuer: TokenIssuer | None, fixed_port: int | None = None) -> Registry:
    """Write the config and run the registry, retrying on a port taken meanwhile."""
    log_file = base / "registry.log"
    config_file = base / "config.yml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}  # they override the config
    for attempt in range(1, START_ATTEMPTS + 1):
        port = fixed_port or free_port()
        http_section: dict[str, Any] = {"addr": f"{HOST}:{port}", "secret": secrets.token_hex(16)}
        if tls is not None:
            http_section["tls"] = {"certificate": str(tls.server_cert), "key": str(tls.server_key)}
        config = {"version": "0.1", "log": {"level": "info", "accesslog": {"disabled": False}},
                  "storage": {"filesystem": {"rootdirectory": str(base / "data")}, "delete": {"enabled": True}},
                  "http": http_section, **({"auth": auth} if auth else {})}
        config_file.write_text(json.dumps(config, indent=2) + "\n")
        with log_file.open("ab") as log:
            process = subprocess.Popen([str(REGISTRY_BINARY), "serve", str(config_file)], stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=subprocess.STDOUT, cwd=base, env=env)
        scheme = "https" if tls is not None else "http"
        registry = Registry(kind=kind, host=f"{HOST}:{port}", url=f"{scheme}://{HOST}:{port}", root=base / "data",
                            log_file=log_file, config_file=config_file,
                            ca_bundle=tls.ca_cert if tls is not None else None, token_issuer=issuer, process=process)
        if _wait_until_up(registry, port):
            return registry
        terminate(process)
        text = tail(log_file)
        if attempt < START_ATTEMPTS and "address already in use" in text:
            continue
        raise RuntimeError(f"docker-registry did not come up on {registry.url} (exit code {process.returncode}); "
                           f"{log_file}:\n{text}")
    raise AssertionError("unreachable")


def _wait_until_up(registry: Registry, port: int) -> bool:
    """Poll ``GET /v2/`` until it answers 200 or 401 (False if the process died or time ran out)."""
    context = ssl.create_default_context(cafile=str(registry.ca_bundle)) if registry.ca_bundle else None
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert registry.process is not None
        if registry.process.poll() is not None:
            return False
        conn = (http.client.HTTPSConnection(HOST, port, timeout=2, context=context) if context
                else http.client.HTTPConnection(HOST, port, timeout=2))
        try:
            conn.request("GET", "/v2/")
            response = conn.getresponse()
            response.read()
            if response.status in (200, 401):
                return True
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        time.sleep(0.02)
    return False






def _basic_user(authorization: str | None, username: str, password: str) -> str | None:
    """The user name if ``authorization`` is Basic with the right credentials, else None."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, given = base64.b64decode(value, validate=True).decode().partition(":")
    except ValueError:
        return None
    ok = secrets.compare_digest(user, username) and secrets.compare_digest(given, password)
    return user if ok else None


def _signing_key_and_cert() -> tuple[Any, bytes]:
    """A P-256 key and a self-signed cert (DER) for it: the token signer the registry trusts."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mlci test token signer")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=7))
            .sign(key, hashes.SHA256()))
    return key, cert.public_bytes(serialization.Encoding.DER)


def _libtrust_key_id(public_key: Any) -> str:
    """libtrust's key ID (distribution 2.x ``kid``): base32 of SHA-256(DER SPKI)[:30] in groups of 4 joined by ':'."""
    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i:i + 4] for i in range(0, len(encoded), 4))


def _pem(label: str, der: bytes) -> str:
    """PEM armour for DER bytes."""
    body = base64.b64encode(der).decode()
    lines = "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----\n"


def _b64url(data: bytes) -> str:
    """Unpadded base64url, as JWS wants."""
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _digest(data: bytes) -> str:
    """The ``sha256:<hex>`` digest of ``data``."""
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _upload_blob(http: requests.Session, registry: Registry, repo: str, blob: bytes,
                 media_type: str) -> dict[str, Any]:
    """POST an upload session, PUT the bytes with ?digest=; returns the OCI descriptor."""
    digest = _digest(blob)
    started = http.post(f"{registry.url}/v2/{repo}/blobs/uploads/", timeout=30)
    _expect(started, 202)
    location = urljoin(registry.url + "/", started.headers["Location"])
    separator = "&" if urlsplit(location).query else "?"
    done = http.put(f"{location}{separator}digest={digest}", data=blob,
                    headers={"Content-Type": "application/octet-stream"}, timeout=30)
    _expect(done, 201)
    return {"mediaType": media_type, "digest": digest, "size": len(blob)}


def _expect(response: requests.Response, status: int) -> None:
    """Raise with the registry's error body unless ``response`` has ``status``."""
    if response.status_code != status:
        raise AssertionError(f"{response.request.method} {response.url}: HTTP {response.status_code} "
                             f"(wanted {status}): {response.text[:500]}")


__all__ = ["AccessLogEntry", "IssuedToken", "Registry", "RegistryNotInstalled", "TokenIssuer", "access_log",
           "auth_headers", "bcrypt_hash", "blob_upload_count", "push_random_image", "registry", "registry_basic",
           "registry_tls", "registry_token", "session", "start_registry", "stop_registry"]
