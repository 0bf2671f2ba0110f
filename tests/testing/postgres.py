"""A real, throwaway PostgreSQL server for tests (no mocks, no Docker).

:func:`start_postgres` runs ``initdb`` + ``pg_ctl start`` from Debian's
``postgresql`` package (``/usr/lib/postgresql/<major>/bin``, 15 on Debian 12)
into a fresh directory and returns a :class:`PostgresServer`; :func:`stop_postgres`
stops it (``pg_ctl stop -m fast``) and removes the directory. The ``postgres``
fixture does both once per session (per pytest-xdist worker: each worker gets
its own server on its own port).

The server:

* listens on TCP ``127.0.0.1:<free port>`` only, with its Unix socket in its own
  directory (never ``/var/run/postgresql``);
* requires a password over TCP (``scram-sha-256``) for the test role
  :data:`USER` (a non-superuser that owns database :data:`DBNAME`, so it can
  create tables there); the ``postgres`` superuser is reachable only through
  the Unix socket (``trust``), which :meth:`PostgresServer.superuser_psql` uses;
* runs with ``fsync=off`` etc.: fast, not durable.

Facts this module relies on:

* ``initdb`` refuses to run as root, so as root every server binary runs as the
  ``postgres`` OS user (``runuser -u postgres --``) and the server directory is
  chowned to it; as another user they run as that user;
* pytest's ``/tmp/pytest-of-root`` is mode 0700, so a directory under
  ``tmp_path`` is not reachable by ``postgres``: the server directory is made
  with :func:`tempfile.mkdtemp` directly under ``/tmp`` (or ``base``), and each
  binary runs with that directory as cwd (``initdb``/``pg_ctl`` fail in a cwd
  they cannot read);
* the Unix socket path must stay under ~107 bytes, another reason for a short
  directory path.

``dsn`` is the libpq key=value form (``host=127.0.0.1 port=... user=...
password=... dbname=...``); ``url`` is the ``postgresql://`` URI form. Both are
accepted by psycopg 3 and ``psql``.
"""

from __future__ import annotations

import atexit
import csv
import glob
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest

from tests.testing.procs import free_port, tail

if TYPE_CHECKING:
    import psycopg
    import psycopg.sql

PG_MAJOR = "15"
DEBIAN_PACKAGES = ("postgresql",)  # brings postgresql-15 (server) + postgresql-client-15 (psql)
HOST = "127.0.0.1"
USER = "mlci"
DBNAME = "mlci"
SUPERUSER = "postgres"
OS_USER = "postgres"
START_ATTEMPTS = 3
START_TIMEOUT = 30  # seconds, pg_ctl -t
SERVER_SETTINGS = {
    "listen_addresses": HOST,
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "50",
    "shared_buffers": "32MB",
    "log_min_messages": "warning",
    "timezone": "UTC",
}
INSTALL_HINT = "run scripts/test once (it installs the Debian package 'postgresql'), or: apt-get install postgresql"


class PostgresNotInstalled(RuntimeError):
    """The PostgreSQL server binaries are missing."""


@dataclass(frozen=True)
class PostgresServer:
    """A running server; connect over TCP as :attr:`user` with :attr:`password`."""

    host: str
    port: int
    user: str
    password: str
    dbname: str
    directory: Path  # owns data/, the Unix socket and postgres.log
    bindir: Path

    @property
    def dsn(self) -> str:
        """libpq key=value connection string (TCP, password auth)."""
        parts = {"host": self.host, "port": str(self.port), "user": self.user,
                 "password": self.password, "dbname": self.dbname}
        return " ".join(f"{key}={_conninfo_quote(value)}" for key, value in parts.items())

    @property
    def url(self) -> str:
        """``postgresql://user:password@127.0.0.1:port/dbname``."""
        return (f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
                f"@{self.host}:{self.port}/{quote(self.dbname, safe='')}")

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def log_file(self) -> Path:
        return self.directory / "postgres.log"

    def env(self) -> dict[str, str]:
        """libpq environment variables (PGHOST, PGPORT, ...) for a subprocess."""
        return {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user,
                "PGPASSWORD": self.password, "PGDATABASE": self.dbname}

    def connect(self, **kwargs: Any) -> psycopg.Connection[tuple[Any, ...]]:
        """A psycopg 3 connection (autocommit unless told otherwise); close it, or use ``with``."""
        import psycopg

        kwargs.setdefault("autocommit", True)
        return psycopg.connect(self.dsn, **kwargs)

    def execute(self, query: str | psycopg.sql.SQL | psycopg.sql.Composed,
                params: Sequence[Any] | Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one statement over TCP as :attr:`user` (``%s`` placeholders); returns its rows ([] if none)."""
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(query.encode() if isinstance(query, str) else query, params)
            return cur.fetchall() if cur.description is not None else []

    def psql(self, script: str) -> str:
        """Run SQL through the ``psql`` CLI over TCP with PGPASSWORD; returns unaligned, tuples-only output."""
        return _run(
            [str(self.bindir / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-A", "-t", "-q", "-d", self.dbname],
            env={**_clean_env(), **self.env()}, input=script, what="psql",
        ).stdout

    def superuser_psql(self, script: str, dbname: str | None = None) -> str:
        """Run SQL as the ``postgres`` superuser through the Unix socket (trust auth), in :attr:`dbname`."""
        return _run(
            [str(self.bindir / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-A", "-t", "-q",
             "-h", str(self.directory), "-p", str(self.port), "-U", SUPERUSER, "-d", dbname or self.dbname],
            env=_clean_env(), input=script, what="psql (superuser)",
        ).stdout

    def create_table(self, table: str, columns: Mapping[str, str]) -> None:
        """``CREATE TABLE table (name type, ...)``; ``table`` may be ``schema.table``."""
        from psycopg import sql

        self.execute(sql.SQL("CREATE TABLE {} ({})").format(
            _identifier(table),
            sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind))
                               for name, kind in columns.items()),
        ))

    def copy_rows(self, table: str, rows: Iterable[Sequence[Any]], columns: Sequence[str] | None = None) -> int:
        """``COPY table FROM STDIN`` the rows (Python values; None is NULL); returns the row count."""
        from psycopg import sql

        statement = sql.SQL("COPY {} {} FROM STDIN").format(
            _identifier(table),
            sql.SQL("({})").format(sql.SQL(", ").join(map(sql.Identifier, columns))) if columns else sql.SQL(""),
        )
        count = 0
        with self.connect() as conn, conn.cursor() as cur, cur.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
                count += 1
        return count

    def copy_csv(self, table: str, path: Path, *, header: bool = True, null: str = "") -> int:
        """``COPY table FROM STDIN (FORMAT csv)`` from a local CSV file (client side); returns the row count.

        Columns are matched by position, as COPY does; an empty unquoted field is NULL (``null``).
        """
        from psycopg import sql

        statement = sql.SQL("COPY {} FROM STDIN (FORMAT csv, HEADER {}, NULL {})").format(
            _identifier(table), sql.SQL("true" if header else "false"), sql.Literal(null))
        with self.connect() as conn, conn.cursor() as cur:
            with cur.copy(statement) as copy, path.open("rb") as source:
                while chunk := source.read(1 << 16):
                    copy.write(chunk)
            return cur.rowcount

    def load_rows(self, table: str, columns: Mapping[str, str], rows: Iterable[Sequence[Any]]) -> int:
        """Create ``table`` with ``columns`` ({name: SQL type}) and COPY ``rows`` into it."""
        self.create_table(table, columns)
        return self.copy_rows(table, rows, list(columns))

    def load_csv(self, table: str, path: Path, columns: Mapping[str, str], *, header: bool = True) -> int:
        """Create ``table`` with ``columns`` ({name: SQL type}, in file order) and COPY the CSV into it."""
        self.create_table(table, columns)
        return self.copy_csv(table, path, header=header)


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """Write rows as a CSV with a header (None becomes an empty field, i.e. NULL for COPY and DuckDB).

    The same file can go to :meth:`PostgresServer.copy_csv` and to DuckDB's ``read_csv``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(columns)
        writer.writerows(["" if value is None else value for value in row] for row in rows)
    return path


def find_bindir() -> Path:
    """``/usr/lib/postgresql/15/bin``, else the newest installed major; raises PostgresNotInstalled."""
    preferred = Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin")
    installed = (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin"))
    candidates = [preferred, *sorted(installed, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
                                     reverse=True)]
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres", "psql")):
            return bindir
    raise PostgresNotInstalled(f"PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: {INSTALL_HINT}")


def start_postgres(base: Path | None = None) -> PostgresServer:
    """initdb + start a server on 127.0.0.1:<free port> in a new directory under ``base`` (default /tmp).

    ``base`` must be traversable by the ``postgres`` OS user (not pytest's tmp_path when running as root).
    """
    bindir = find_bindir()
    as_root = os.geteuid() == 0
    if as_root:
        try:
            import pwd

            pwd.getpwnam(OS_USER)
        except KeyError:
            raise PostgresNotInstalled(f"no '{OS_USER}' OS user: {INSTALL_HINT}") from None
        if shutil.which("runuser") is None:
            raise PostgresNotInstalled("runuser (util-linux) is missing: apt-get install util-linux")
    directory = Path(tempfile.mkdtemp(prefix="mlci-pg-", dir=base or "/tmp"))
    try:
        if as_root:
            shutil.chown(directory, OS_USER, OS_USER)
            probe = subprocess.run(["runuser", "-u", OS_USER, "--", "test", "-w", str(directory)], cwd="/",
                                   capture_output=True)
            if probe.returncode != 0:
                raise RuntimeError(f"{directory} is not writable by the '{OS_USER}' OS user: pick a base "
                                   f"directory every user can traverse (like /tmp), not pytest's tmp_path")
        server = PostgresServer(host=HOST, port=0, user=USER, password=secrets.token_hex(16),
                                dbname=DBNAME, directory=directory, bindir=bindir)
        _initdb(server, as_root)
        server = _start_on_free_port(server, as_root)
        _LIVE[server.directory] = server
        try:
            server.superuser_psql(
                f"CREATE ROLE {USER} LOGIN PASSWORD '{server.password}';\n"
                f"CREATE DATABASE {DBNAME} OWNER {USER};\n", dbname="postgres")
        except BaseException:
            stop_postgres(server)
            raise
        return server
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


def stop_postgres(server: PostgresServer) -> None:
    """Stop the server (fast shutdown, then SIGQUIT/SIGKILL if it hangs) and remove its directory. Idempotent."""
    _LIVE.pop(server.directory, None)
    pid_file = server.data_dir / "postmaster.pid"
    if pid_file.exists():
        done = subprocess.run(_as_postgres([str(server.bindir / "pg_ctl"), "stop", "-D", str(server.data_dir),
                                            "-m", "fast", "-w", "-t", "15"], os.geteuid() == 0),
                              cwd=server.directory, capture_output=True, text=True, env=_clean_env())
        if done.returncode != 0:
            _kill_postmaster(pid_file)
    shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the whole session (one per xdist worker). Tests share it:
    give tables unique names (or drop them) rather than assuming an empty database."""
    try:
        server = start_postgres()
    except PostgresNotInstalled as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield server
    finally:
        stop_postgres(server)


# --- internals -------------------------------------------------------------------------------------

_LIVE: dict[Path, PostgresServer] = {}


@atexit.register
def _stop_leftovers() -> None:
    """Safety net for servers whose fixture never finalized (e.g. an interrupted session)."""
    for server in list(_LIVE.values()):
        stop_postgres(server)


def _initdb(server: PostgresServer, as_root: bool) -> None:
    _run(_as_postgres([str(server.bindir / "initdb"), "-D", str(server.data_dir), "-U", SUPERUSER,
                       "--auth-local=trust", "--auth-host=scram-sha-256", "--no-locale", "-E", "UTF8",
                       "--no-sync", "--no-instructions"], as_root),
         cwd=server.directory, env=_clean_env(), what="initdb")
    settings = {**SERVER_SETTINGS, "unix_socket_directories": str(server.directory)}
    with (server.data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write("\n# mlci tests\n")
        for key, value in settings.items():
            conf.write(f"{key} = '{value.replace(chr(39), chr(39) * 2)}'\n")


def _start_on_free_port(server: PostgresServer, as_root: bool) -> PostgresServer:
    """pg_ctl start on a free port; retries with another port if it was taken in between (xdist)."""
    for attempt in range(1, START_ATTEMPTS + 1):
        candidate = PostgresServer(**{**server.__dict__, "port": free_port()})
        done = subprocess.run(
            _as_postgres([str(server.bindir / "pg_ctl"), "start", "-D", str(server.data_dir),
                          "-l", str(server.log_file), "-w", "-t", str(START_TIMEOUT),
                          "-o", f"-p {candidate.port}"], as_root),
            cwd=server.directory, capture_output=True, text=True, env=_clean_env(),
            stdin=subprocess.DEVNULL)
        if done.returncode == 0:
            return candidate
        log = tail(server.log_file)
        if attempt < START_ATTEMPTS and ("could not bind" in log or "already in use" in log):
            continue
        raise RuntimeError(f"pg_ctl start failed ({done.returncode}):\n{done.stdout}{done.stderr}\n"
                           f"--- {server.log_file}:\n{log}")
    raise AssertionError("unreachable")



def _as_postgres(argv: list[str], as_root: bool) -> list[str]:
    return ["runuser", "-u", OS_USER, "--", *argv] if as_root else argv


def _clean_env() -> dict[str, str]:
    """The environment without libpq's PG* variables (which would override our arguments)."""
    return {key: value for key, value in os.environ.items() if not key.startswith("PG")}


def _run(argv: list[str], *, what: str, env: Mapping[str, str], cwd: Path | str = "/",
         input: str | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=cwd, env=dict(env), input=input, capture_output=True, text=True,
                          stdin=None if input is not None else subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {' '.join(argv)}\n{done.stdout}{done.stderr}")
    return done


def _kill_postmaster(pid_file: Path) -> None:
    try:
        pid = int(pid_file.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return
    for sig, wait in ((signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)




def _conninfo_quote(value: str) -> str:
    if value and not any(ch in value for ch in " '\\"):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _identifier(name: str) -> Any:
    from psycopg import sql

    return sql.Identifier(*name.split("."))
