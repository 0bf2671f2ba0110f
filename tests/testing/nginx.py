"""A real HTTP file server for tests: Debian's nginx (1.22, built with ``http_dav_module``) on 127.0.0.1,
standing in for the content side of a Nexus raw hosted repository (``/repository/<repo>/<path>``).

:func:`start_nginx` writes a config into a directory of its own and runs
``nginx -c CONF -p DIR -g 'daemon off;'`` on a free port (never the system nginx on :80: ``scripts/lib.sh``
stops and disables that one after installing the package). What it serves:

* ``PUT /repository/<repo>/<path>``: ``dav_methods PUT; create_full_put_path on;`` stores the body under
  :attr:`Nginx.root` (201 for a new file, 204 for an overwrite), bodies of any size (``client_max_body_size 0``).
* ``GET``/``HEAD`` of the same path read it back (nginx's ETag is mtime-size, not Nexus's quoted SHA-1).
* ``redeploy=False`` gives Nexus's "Disable redeploy": a PUT of an existing file answers
  ``400 <repo>/<path> cannot be updated`` (Nexus 3's message) and leaves the file alone. The rule runs in
  nginx's rewrite phase, before ``auth_basic``; it only fires for a request carrying valid credentials, so an
  unauthenticated PUT is answered 401, as Nexus does, never a 400 that would tell it the file exists.
* ``auth=True``: Basic auth from an htpasswd file (bcrypt, via :func:`tests.testing.registry.bcrypt_hash`), realm
  ``Sonatype Nexus Repository Manager``; :attr:`Nginx.username`/``password`` may write, and
  :attr:`Nginx.reader`/``reader_password`` may only read (a PUT answers 403, like a Nexus user without the
  ``add``/``edit`` privileges of the repository).
* ``tls=True``: HTTPS with a server cert for 127.0.0.1 from a fresh test CA (:attr:`Nginx.ca_bundle`).
* ``rest_upstream="HOST:PORT"``: ``/service/rest/`` is proxied there (the REST API stand-in,
  :mod:`tests.testing.nexus`), so that content and API share one origin, as on a real Nexus; nginx's own auth
  is off on that location (the stand-in answers 401 itself, the way Nexus does).

The access log (:func:`access_log`) records method, path, status and request length of every request.
"""
from __future__ import annotations

import atexit
import base64
import http.client
import os
import secrets
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.testing.forge import TlsFiles, make_tls_files
from tests.testing.procs import free_port, tail, terminate
from tests.testing.registry import bcrypt_hash

HOST = "127.0.0.1"
NGINX = Path("/usr/sbin/nginx")
INSTALL_HINT = "apt-get install nginx (Debian 12: 1.22.1); scripts/lib.sh bootstrap installs it"
REALM = "Sonatype Nexus Repository Manager"
START_ATTEMPTS = 3
START_TIMEOUT = 10.0


class NginxNotInstalled(RuntimeError):
    """/usr/sbin/nginx is missing."""


@dataclass(frozen=True)
class Access:
    """One line of the access log."""

    method: str
    path: str
    status: int
    request_length: int  # bytes of the request: line, headers and body


@dataclass
class Nginx:
    """A running nginx; clients need :attr:`url` (the Nexus base URL), credentials and :attr:`ca_bundle`."""

    url: str
    host: str
    repository: str
    directory: Path
    root: Path  # nginx's document root: files live under root/repository/<repo>/
    username: str | None = None
    password: str | None = None
    reader: str | None = None
    reader_password: str | None = None
    ca_bundle: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def repository_url(self) -> str:
        """``<url>/repository/<repo>``: what `promote.environments.NAME.nexus_raw` names."""
        return f"{self.url}/repository/{self.repository}"

    def stored(self, path: str) -> Path:
        """The file nginx keeps for ``path`` (relative to the repository)."""
        return self.root / "repository" / self.repository / path

    @property
    def log_file(self) -> Path:
        return self.directory / "access.log"


def start_nginx(directory: Path, *, repository: str = "mlci-raw", redeploy: bool = True, auth: bool = False,
                tls: bool = False, rest_upstream: str | None = None, port: int | None = None) -> Nginx:
    """Start nginx for ``repository`` on 127.0.0.1:<free port> (or ``port``), its config, logs and files under
    ``directory``."""
    if not NGINX.is_file():
        raise NginxNotInstalled(f"{NGINX} is missing: {INSTALL_HINT}")
    directory.mkdir(parents=True, exist_ok=True)
    for sub in ("data", "tmp"):
        (directory / sub).mkdir(exist_ok=True)
    (directory / "data" / "repository" / repository).mkdir(parents=True, exist_ok=True)
    tls_files = make_tls_files(directory / "tls") if tls else None
    users: dict[str, str] = {}
    if auth:
        users = {f"ci-{secrets.token_hex(3)}": secrets.token_urlsafe(12),
                 f"reader-{secrets.token_hex(3)}": secrets.token_urlsafe(12)}
        (directory / "htpasswd").write_text("".join(f"{u}:{bcrypt_hash(p)}\n" for u, p in users.items()))
    names = list(users)
    scheme = "https" if tls_files else "http"
    fixed = port
    for attempt in range(1, START_ATTEMPTS + 1):
        port = fixed or free_port()
        config = _config(directory, port, repository, redeploy, users, tls_files, rest_upstream)
        (directory / "nginx.conf").write_text(config)
        with (directory / "nginx.out").open("ab") as out:
            process = subprocess.Popen([str(NGINX), "-c", str(directory / "nginx.conf"), "-p", str(directory),
                                        "-g", "daemon off;"], stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=subprocess.STDOUT, cwd=directory)
        server = Nginx(url=f"{scheme}://{HOST}:{port}", host=f"{HOST}:{port}", repository=repository,
                       directory=directory, root=directory / "data",
                       username=names[0] if names else None, password=users[names[0]] if names else None,
                       reader=names[1] if names else None, reader_password=users[names[1]] if names else None,
                       ca_bundle=tls_files.ca_cert if tls_files else None, process=process)
        if _wait_until_up(server, port):
            _LIVE[id(server)] = server
            return server
        terminate(process)
        text = tail(directory / "error.log") + tail(directory / "nginx.out")
        if attempt < START_ATTEMPTS and "Address already in use" in text:
            continue
        raise RuntimeError(f"nginx did not come up on {server.url} (exit code {process.returncode}):\n{text}")
    raise AssertionError("unreachable")


def stop_nginx(server: Nginx) -> None:
    """Stop nginx (SIGTERM: fast shutdown, then SIGKILL). Idempotent."""
    _LIVE.pop(id(server), None)
    if server.process is not None:
        terminate(server.process)


def access_log(server: Nginx) -> list[Access]:
    """Every request so far, oldest first."""
    entries = []
    for line in server.log_file.read_text(errors="replace").splitlines():
        method, path, status, length = line.split(" ")
        entries.append(Access(method, path, int(status), int(length)))
    return entries


# --- internals -------------------------------------------------------------------------------------

_LIVE: dict[int, Nginx] = {}


@atexit.register
def _stop_leftovers() -> None:
    """Stop servers a crashed session left running."""
    for server in list(_LIVE.values()):
        stop_nginx(server)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _config(directory: Path, port: int, repository: str, redeploy: bool, users: dict[str, str],
            tls: TlsFiles | None, rest_upstream: str | None) -> str:
    """nginx.conf: one server, the repository location (PUT/GET/HEAD), optionally the REST proxy."""
    names = list(users)
    # Valid credentials, known in nginx's rewrite phase (which runs before auth_basic checks them): the redeploy
    # and read-only rules fire only for these, so that a request without them is answered 401 by auth_basic.
    authed = "\n".join(f'    "{_basic(u, p)}" 1;' for u, p in users.items()) if users else ""
    writer = (f'    "PUT:{_basic(names[1], users[names[1]])}" 1;' if users else "")
    listen = f"listen {HOST}:{port}" + (" ssl" if tls else "") + ";"
    ssl_lines = f"ssl_certificate {tls.server_cert};\n    ssl_certificate_key {tls.server_key};" if tls else ""
    user = "user root root;" if os.geteuid() == 0 else ""
    rest = f"""
    location /service/rest/ {{
      auth_basic off;
      proxy_pass http://{rest_upstream};
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_request_buffering off;
      proxy_buffering off;
      proxy_http_version 1.1;
    }}""" if rest_upstream else ""
    auth_lines = f'auth_basic "{REALM}";\n      auth_basic_user_file {directory / "htpasswd"};' if users else ""
    redeploy_lines = "" if redeploy else f"""
      set $redeploy "$is_put$authed";
      if (-f $request_filename) {{ set $redeploy "${{redeploy}}x"; }}
      if ($redeploy = "11x") {{ return 400 "{repository}/$repo_path cannot be updated\\n"; }}"""
    return f"""{user}
worker_processes 1;
error_log {directory / "error.log"} info;
pid {directory / "nginx.pid"};
events {{ worker_connections 256; }}
http {{
  log_format mlci '$request_method $uri $status $request_length';
  access_log {directory / "access.log"} mlci;
  client_body_temp_path {directory / "tmp" / "body"};
  proxy_temp_path {directory / "tmp" / "proxy"};
  fastcgi_temp_path {directory / "tmp" / "fastcgi"};
  uwsgi_temp_path {directory / "tmp" / "uwsgi"};
  scgi_temp_path {directory / "tmp" / "scgi"};
  client_max_body_size 0;
  map_hash_bucket_size 256;
  default_type application/octet-stream;
  sendfile on;
  map $request_method $is_put {{ PUT 1; default 0; }}
  map $http_authorization $authed {{
    default {0 if users else 1};
{authed}
  }}
  map "$request_method:$http_authorization" $read_only {{
    default 0;
{writer}
  }}
  server {{
    {listen}
    {ssl_lines}
    server_name localhost;
    root {directory / "data"};
    location ~ ^/repository/{repository}/(?<repo_path>.+)$ {{
      {auth_lines}
      dav_methods PUT;
      create_full_put_path on;
      dav_access user:rw group:r all:r;
      if ($read_only) {{ return 403; }}{redeploy_lines}
    }}{rest}
  }}
}}
"""


def _wait_until_up(server: Nginx, port: int) -> bool:
    """Poll ``HEAD /`` until nginx answers (False if it died or time ran out)."""
    context = ssl.create_default_context(cafile=str(server.ca_bundle)) if server.ca_bundle else None
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert server.process is not None
        if server.process.poll() is not None:
            return False
        conn = (http.client.HTTPSConnection(HOST, port, timeout=2, context=context) if context
                else http.client.HTTPConnection(HOST, port, timeout=2))
        try:
            conn.request("HEAD", "/")
            conn.getresponse().read()
            return True
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        time.sleep(0.02)
    return False
