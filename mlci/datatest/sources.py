"""Where the data lives: files through DuckDB (local or s3:// via fsspec), tables through PostgreSQL.

A source exposes a SQL relation, its columns with logical types, and single-row queries; the checks
never see how the data is reached. Database error texts can quote row values, so they are cut to a
first line with quoted fragments removed before anyone sees them.
"""
from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mlci.core import log
from mlci.core.errors import EnvironmentProblem
from mlci.datatest.spec import Dataset, DataTests
from mlci.datatest.sql import DUCKDB, POSTGRES, Dialect, ident

_FORMATS = {".csv": "csv", ".gz": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet",
            ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
_LOGICAL = (
    (re.compile(r"^(big|small|tiny|huge|u?big|u?small|u?tiny|u)?int(eger)?\d*$|^(int[248]|serial|bigserial)$"),
     "integer"),
    (re.compile(r"^(double|float\d*|real|decimal|numeric|double precision)"), "float"),
    (re.compile(r"^(varchar|text|string|char|character|bpchar|uuid|character varying)"), "string"),
    (re.compile(r"^bool"), "boolean"),
    (re.compile(r"^date$"), "date"),
    (re.compile(r"^timestamp"), "timestamp"),
)


def logical_type(db_type: str) -> str:
    """A database type name as one of the spec's logical types (or the raw name lower-cased)."""
    name = db_type.strip().lower()
    for pattern, logical in _LOGICAL:
        if pattern.match(name):
            return logical
    return name


def clean_error(exc: BaseException) -> str:
    """A database error's first line, without quoted fragments (which may be row values)."""
    first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
    return log.redact(re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", first))


class Source(Protocol):
    """A dataset as a SQL relation."""

    dialect: Dialect
    relation: str
    place: str  # sources with the same place can be joined in one query

    def columns(self) -> dict[str, str]:
        """Column name -> logical type, in table order."""

    def one(self, sql: str) -> tuple[Any, ...]:
        """The single row a query returns."""

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """Every row a (small, aggregated) query returns."""

    def malformed(self) -> tuple[int, int | None]:
        """Rows that could not be parsed so far, and the first such line (files only)."""


@dataclass
class _DuckSource:
    session: DuckSession
    relation: str
    rejects: str | None
    dialect: Dialect = DUCKDB
    place: str = "duckdb"

    def columns(self) -> dict[str, str]:
        rows = self.session.con.execute(f"DESCRIBE SELECT * FROM {self.relation}").fetchall()
        return {str(r[0]): logical_type(str(r[1])) for r in rows}

    def one(self, sql: str) -> tuple[Any, ...]:
        rows = self.session.con.execute(sql).fetchall()  # fetchall finishes the scan: rejects get stored
        return tuple(rows[0]) if rows else ()

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.session.con.execute(sql).fetchall()]

    def malformed(self) -> tuple[int, int | None]:
        if self.rejects is None or not self.one(
                f"SELECT COUNT(*) FROM duckdb_tables() WHERE table_name = '{self.rejects}'")[0]:
            return 0, None  # DuckDB creates the rejects table only once a row was rejected
        count, first = self.session.con.execute(
            f"SELECT COUNT(DISTINCT (file_id, line)), MIN(line) FROM {self.rejects}").fetchone() or (0, None)
        return int(count), first


class DuckSession:
    """One in-process DuckDB for every file dataset of a run (so leakage checks can join them)."""

    def __init__(self, settings: DataTests) -> None:
        import duckdb

        config: dict[str, Any] = {"memory_limit": settings.memory_limit, "preserve_insertion_order": False}
        if settings.threads:
            config["threads"] = settings.threads
        self.con = duckdb.connect(":memory:", config=config)
        self.settings = settings
        self._s3 = False
        self._count = 0

    @classmethod
    def for_profile(cls, settings: DataTests) -> DuckSession:
        """One thread: DuckDB's t-digest quantiles are then the same on every run (a reviewable file)."""
        import dataclasses

        return cls(dataclasses.replace(settings, threads=1))

    def open(self, ds: Dataset, base: Path) -> Source:
        """A view over the dataset's files; exit 3 when they cannot be found or read."""
        assert ds.path is not None
        paths = self._paths(ds, base)
        fmt = ds.format or _FORMATS.get(Path(paths[0].split("?")[0]).suffix.lower())
        if fmt is None:
            raise EnvironmentProblem(f"dataset {ds.name!r}: cannot tell the format of {ds.path}; set `format`")
        self._count += 1
        rejects = f"mlci_rejects_{self._count}" if fmt == "csv" else None
        files = "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"
        reader = {
            "csv": f"read_csv({files}, header=true, store_rejects=true, "
                   f"rejects_table='{rejects}', rejects_scan='{rejects}_scan')",
            "parquet": f"read_parquet({files}, union_by_name=true)",
            "jsonl": f"read_json({files}, format='newline_delimited', union_by_name=true)",
        }[fmt]
        view = ident(f"mlci_ds_{self._count}")
        try:
            self.con.execute(f"CREATE TEMP VIEW {view} AS SELECT * FROM {reader}")
        except Exception as exc:  # noqa: BLE001 - any reader failure: the data cannot be read
            raise EnvironmentProblem(f"dataset {ds.name!r}: cannot read {ds.path}: {clean_error(exc)}") from None
        return _DuckSource(self, view, rejects)

    def _paths(self, ds: Dataset, base: Path) -> list[str]:
        assert ds.path is not None
        if ds.path.startswith("s3://"):
            return self._s3_paths(ds)
        pattern = ds.path if os.path.isabs(ds.path) else str(base / ds.path)
        found = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not found or not all(os.path.isfile(p) for p in found):
            raise EnvironmentProblem(f"dataset {ds.name!r}: no file at {ds.path}")
        return found

    def _s3_paths(self, ds: Dataset) -> list[str]:
        fs = self._s3_filesystem()
        assert ds.path is not None
        try:
            found = sorted(fs.glob(ds.path)) if glob.has_magic(ds.path) else ([ds.path] if fs.exists(ds.path) else [])
        except Exception as exc:  # noqa: BLE001 - botocore raises many kinds: all mean unreachable
            raise EnvironmentProblem(f"dataset {ds.name!r}: cannot reach {ds.path}: {clean_error(exc)}") from None
        if not found:
            raise EnvironmentProblem(f"dataset {ds.name!r}: no object at {ds.path}")
        return [p if p.startswith("s3://") else f"s3://{p}" for p in found]

    def _s3_filesystem(self) -> Any:
        try:
            import s3fs
        except ImportError:
            raise EnvironmentProblem("s3:// datasets need s3fs: pip install 'mlci[s3]'") from None
        kwargs: dict[str, Any] = {"config_kwargs": {"connect_timeout": 10, "retries": {"max_attempts": 2}}}
        if self.settings.s3_endpoint_url:
            kwargs["endpoint_url"] = self.settings.s3_endpoint_url
        fs = s3fs.S3FileSystem(**kwargs)
        if not self._s3:
            self.con.register_filesystem(fs)
            self._s3 = True
        return fs


@dataclass
class _PgSource:
    conn: Any
    relation: str
    place: str
    dialect: Dialect = POSTGRES

    def columns(self) -> dict[str, str]:
        with self.conn.cursor() as cur:
            cur.execute(f"SELECT * FROM {self.relation} LIMIT 0")
            return {str(c.name): logical_type(c.type_display) for c in cur.description or []}

    def one(self, sql: str) -> tuple[Any, ...]:
        with self.conn.cursor() as cur:
            cur.execute(sql)
            return tuple(cur.fetchone() or ())

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(sql)
            return [tuple(r) for r in cur.fetchall()]

    def malformed(self) -> tuple[int, int | None]:
        return 0, None


@contextmanager
def postgres(ds: Dataset) -> Iterator[Source]:
    """A connection for a PostgreSQL/Greenplum dataset; exit 3 when it cannot be reached."""
    assert ds.dsn_env is not None
    dsn = os.environ.get(ds.dsn_env)
    if not dsn:
        raise EnvironmentProblem(f"dataset {ds.name!r}: environment variable {ds.dsn_env} (dsn_env) is not set")
    log.add_secret(dsn)
    for password in re.findall(r"password\s*=\s*'?([^'\s]+)", dsn):
        log.add_secret(password)
    import psycopg

    try:
        conn = psycopg.connect(dsn, connect_timeout=10, autocommit=True)
    except (psycopg.Error, ValueError) as exc:
        raise EnvironmentProblem(f"dataset {ds.name!r}: cannot connect with {ds.dsn_env}: {clean_error(exc)}") \
            from None
    try:
        if ds.table is not None:
            relation = ".".join(ident(part) for part in ds.table.split("."))
        else:
            relation = f"({ds.query}) AS {ident(ds.name)}"
        yield _PgSource(conn, relation, f"postgres:{ds.dsn_env}")
    finally:
        conn.close()
