"""Where the data lives: files through DuckDB (local or s3:// via fsspec), tables through PostgreSQL.

A source exposes a SQL relation, its columns with logical types, and single-row queries; the checks
never see how the data is reached. Database error texts can quote row values, so they are cut to a
first line with quoted fragments (and, for queries over data, numbers) removed before anyone sees them.
Every query runs in a worker thread: a signal reaches the main thread as the exception its handler raises
(KeyboardInterrupt on Ctrl-C), and the query is cancelled; the database never turns it into a query error.
"""
from __future__ import annotations

import csv
import glob
import gzip
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar, cast

from mlci.core import log
from mlci.core.bounded import Unreadable, open_regular
from mlci.core.errors import EnvironmentProblem
from mlci.datatest.spec import Dataset, DataTests
from mlci.datatest.sql import DUCKDB, POSTGRES, Dialect, ident, literal

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
# How a CSV column typed by the spec is read.
DUCKDB_TYPES = {"integer": "BIGINT", "float": "DOUBLE", "string": "VARCHAR", "boolean": "BOOLEAN", "date": "DATE",
                "timestamp": "TIMESTAMP"}
DELIMITERS = (",", ";", "\t", "|")
# The header line: at most 2 MiB, DuckDB's own default max_line_size; a line ends at LF, CR or CRLF, as DuckDB's do.
MAX_HEADER = 2 << 20
_LINE_END = re.compile(rb"\r\n|\r|\n")
_DETECTED = ("BIGINT", "DOUBLE", "DATE", "TIMESTAMP")  # in this order: the first that fits every value wins
_QUOTE = re.compile("['\"]")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])")
T = TypeVar("T")


def logical_type(db_type: str) -> str:
    """A database type name as one of the spec's logical types (or the raw name lower-cased)."""
    name = db_type.strip().lower()
    for pattern, logical in _LOGICAL:
        if pattern.match(name):
            return logical
    return name


def clean_error(exc: BaseException, *, from_data: bool = True) -> str:
    """A database error's first line, without quoted fragments (which may be row values); in errors of
    queries over data (`from_data`) also without numbers ("value 123456 is out of range"). An error raised
    while reading the data (a cast that refused a value) loses everything between its first quote and its
    last (without_quoted). One of a query's names, raised before any row is read, quotes the spec's names
    (a table, a column: no row value) and is kept as it is, to say which name is wrong; one of a connection
    loses each quoted fragment (a host, a user: parts of the DSN)."""
    text = str(exc).strip()
    named = from_data and _before_data(exc)
    if not named:
        text = without_quoted(text) if from_data else _QUOTED.sub("'…'", text)
    first = (text.splitlines() or [exc.__class__.__name__])[0]
    return log.redact(_NUMBER.sub("…", first) if from_data and not named else first)


def _before_data(exc: BaseException) -> bool:
    """An error of a query's names or syntax, raised before it reads a row: DuckDB's binder, parser and
    catalog errors, PostgreSQL's SQLSTATE class 42 (syntax error or access rule violation)."""
    return (type(exc).__name__ in ("BinderException", "ParserException", "CatalogException")
            or str(getattr(exc, "sqlstate", "") or "").startswith("42"))


def without_quoted(text: str) -> str:
    """`text` with each quoted fragment as '…'. A fragment runs from a quote to the last quote of the same kind
    in the whole text, or to its end: neither engine escapes a quote inside the value it quotes
    (`'O'Brien'`), and a value may hold a newline, so its closing quote may be on a later line."""
    kept: list[str] = []
    while (found := _QUOTE.search(text)) is not None:
        end = text.rfind(found[0])
        kept.append(text[:found.start()] + "'…'")
        text = text[end + 1:] if end > found.start() else ""
    return "".join(kept) + text


class QueryError(Exception):
    """A query failed in the database or its driver; `str()` is the cleaned first line, `original` the error."""

    def __init__(self, original: Exception) -> None:
        super().__init__(clean_error(original))
        self.original = original


def interruptible(work: Callable[[], T], cancel: Callable[[], object]) -> T:
    """Run `work` (a query) in a worker thread and wait for it. A signal's exception (KeyboardInterrupt on
    Ctrl-C) is raised here, in the main thread, as Python raised it: the query is cancelled and the
    exception propagates. Run in the main thread, DuckDB would catch it and raise "Query interrupted".
    What the query itself raises comes back as QueryError, so callers never catch more than that."""
    outcome: dict[str, Any] = {}
    done = threading.Event()  # not Thread.join: a join interrupted by a signal marks the thread stopped (3.11)

    def target() -> None:
        try:
            outcome["value"] = work()
        except Exception as exc:  # noqa: BLE001 - handed to the waiting thread, which raises it as QueryError
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, name="mlci-query", daemon=True).start()
    try:
        done.wait()
    finally:
        if not done.is_set():  # the wait was interrupted by a signal's exception: stop the query, let it rise
            _cancel_and_wait(cancel, done)
    if "error" in outcome:
        raise QueryError(outcome["error"]) from outcome["error"]
    return cast(T, outcome["value"])


def _cancel_and_wait(cancel: Callable[[], object], done: threading.Event) -> None:
    try:
        cancel()
    except Exception:  # noqa: BLE001 - the signal's exception is what rises; without a cancel, do not wait
        return
    done.wait()


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
    inexact: str | None = None  # counts the rows whose integer column holds no whole number
    dialect: Dialect = DUCKDB
    place: str = "duckdb"

    def columns(self) -> dict[str, str]:
        rows = self.rows(f"DESCRIBE SELECT * FROM {self.relation}")
        return {str(r[0]): logical_type(str(r[1])) for r in rows}

    def one(self, sql: str) -> tuple[Any, ...]:
        rows = self.rows(sql)  # fetchall finishes the scan: rejects get stored
        return rows[0] if rows else ()

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self.session.rows(sql)

    def malformed(self) -> tuple[int, int | None]:
        inexact = int(self.one(self.inexact)[0]) if self.inexact is not None else 0  # no line: not DuckDB's reject
        if self.rejects is None or not self.one(
                f"SELECT COUNT(*) FROM duckdb_tables() WHERE table_name = '{self.rejects}'")[0]:
            return inexact, None  # DuckDB creates the rejects table only once a row was rejected
        count, first = self.one(f"SELECT COUNT(DISTINCT (file_id, line)), MIN(line) FROM {self.rejects}") or (0, None)
        return int(count) + inexact, first


class DuckSession:
    """One in-process DuckDB for every file dataset of a run (so leakage checks can join them)."""

    def __init__(self, settings: DataTests) -> None:
        import duckdb

        config: dict[str, Any] = {"memory_limit": settings.memory_limit, "preserve_insertion_order": False}
        if settings.threads:
            config["threads"] = settings.threads
        try:
            self.con = duckdb.connect(":memory:", config=config)
        except duckdb.Error as exc:
            raise EnvironmentProblem(f"DuckDB does not start with memory_limit {settings.memory_limit} and threads "
                                     f"{settings.threads or 'all'}: {clean_error(exc, from_data=False)}") from None
        self.settings = settings
        self._s3 = False
        self._count = 0

    @classmethod
    def for_profile(cls, settings: DataTests) -> DuckSession:
        """One thread: DuckDB's t-digest quantiles are then the same on every run (a reviewable file)."""
        import dataclasses

        return cls(dataclasses.replace(settings, threads=1))

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """Every row of a query, interruptible (see `interruptible`)."""
        return interruptible(lambda: [tuple(r) for r in self.con.execute(sql).fetchall()], self.con.interrupt)

    def open(self, ds: Dataset, base: Path, types: Mapping[str, str] | None = None, detect: bool = False) -> Source:
        """A view over the dataset's files; exit 3 when they cannot be found or read.

        CSV columns named in `types` (logical types) are read as such: a value that does not parse makes
        its row malformed, wherever it is in the file. The other columns are text, or with `detect` (a
        profile) typed from the whole file, never from a sample."""
        assert ds.path is not None
        paths = self._paths(ds, base)
        fmt = ds.format or _FORMATS.get(Path(paths[0].split("?")[0]).suffix.lower())
        if fmt is None:
            raise EnvironmentProblem(f"dataset {ds.name!r}: cannot tell the format of {ds.path}; set `format`")
        self._count += 1
        files = "[" + ", ".join(literal(_no_glob(p)) for p in paths) + "]"
        rejects = f"mlci_rejects_{self._count}" if fmt == "csv" else None
        view = ident(f"mlci_ds_{self._count}")
        inexact: str | None = None
        try:
            if fmt == "csv":
                base_reader, typed, integers = self._csv(files, paths, ds, base, types or {}, detect)
                reader = f"{base_reader}, store_rejects=true, rejects_table='{rejects}', rejects_scan='{rejects}_scan')"
                # Every query parses every typed column (else a query that does not read a column, COUNT(*)
                # say, keeps the rows whose value there does not parse): a filter the optimizer cannot drop.
                # Integer columns are read as text and kept only where the value is a whole number (DuckDB's
                # reader would round 1.5 to 2); the rows where one is not are malformed (counted apart).
                exact = " AND ".join(f"({ident(c)} IS NULL OR {_fits(ident(c), 'BIGINT')})" for c in integers)
                filters = [f"hash({', '.join(ident(c) for c in typed)}) IS NOT NULL"] if typed else []
                conditions = [*filters, exact] if exact else filters
                where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
                if integers:
                    casts = ", ".join(f"TRY_CAST({ident(c)} AS BIGINT) AS {ident(c)}" for c in integers)
                    reader, where = f"(SELECT * REPLACE ({casts}) FROM {reader}{where})", ""
                    # the rows DuckDB rejects (a typed column that does not parse) are its own count: not these
                    inexact = (f"SELECT COUNT(*) FROM {base_reader}, ignore_errors=true) "
                               f"WHERE {' AND '.join([*filters, f'NOT ({exact})'])}")
            else:
                reader, where = {
                    "parquet": f"read_parquet({files}, union_by_name=true)",
                    "jsonl": f"read_json({files}, format='newline_delimited', union_by_name=true)",
                }[fmt], ""
            self.rows(f"CREATE TEMP VIEW {view} AS SELECT * FROM {reader}{where}")
        except QueryError as exc:  # any reader failure: the data cannot be read
            raise EnvironmentProblem(f"dataset {ds.name!r}: cannot read {ds.path}: {exc}") from None
        return _DuckSource(self, view, rejects, inexact)

    def _csv(self, files: str, paths: list[str], ds: Dataset, base: Path, types: Mapping[str, str],
             detect: bool) -> tuple[str, list[str], list[str]]:
        """`read_csv(...` with the dialect and every column's type fixed: nothing is guessed from a sample
        (a few bad rows at the top would change the guess). The delimiter is the dataset's, else the most
        frequent of `, ; TAB |` in the header line (the reader without its closing parenthesis). Also returns the
        columns DuckDB's reader types (their values must parse) and the integer columns, read as text. Every
        file of a glob must have the first one's header: DuckDB reads their columns by position."""
        line = self._header_line(paths[0])
        if not line.strip():
            first = paths[0] if "://" in paths[0] else os.path.relpath(paths[0], base)
            raise EnvironmentProblem(f"dataset {ds.name!r}: {log.one_line(first)} has no header line (an empty file, "
                                     "or one that starts with an empty line): a CSV file's first line names its "
                                     "columns")
        delimiter = ds.delimiter or max(DELIMITERS, key=line.count)
        header = next(csv.reader([line], delimiter=delimiter, quotechar='"'), [])
        for other in paths[1:]:
            if next(csv.reader([self._header_line(other)], delimiter=delimiter, quotechar='"'), []) != header:
                shown = [log.one_line(os.path.relpath(f, base) if "://" not in f else f) for f in (other, paths[0])]
                raise EnvironmentProblem(
                    f"dataset {ds.name!r}: {shown[0]} has another header than {shown[1]} "
                    "(other columns, or the same in another order): the files of a dataset are read by position, "
                    "so their columns would be mixed up; give each layout its own dataset")
        names = _unique(header)
        head = (f"read_csv({files}, auto_detect=false, header=true, delim={literal(delimiter)}, quote='\"', "
                f"escape='\"'")
        typed = {n: DUCKDB_TYPES[types[n]] for n in names if n in types and DUCKDB_TYPES[types[n]] != "BIGINT"}
        integers = [n for n in names if n in types and DUCKDB_TYPES[types[n]] == "BIGINT"]
        text = {n: "VARCHAR" for n in names}
        guessed = self._detect(f"{head}, ignore_errors=true{_columns(text)})",
                               [n for n in names if n not in typed and n not in integers]) if detect else {}
        return f"{head}{_columns({**text, **guessed, **typed})}", list(typed), integers

    def _header_line(self, first: str) -> str:
        """The first line of the first file, decoded as UTF-8 here (a bad byte replaced, a BOM dropped): a byte that
        is not UTF-8, in the header or anywhere in DuckDB's first buffer, makes a malformed row, never an
        unreadable file. A local file (gzip by its `.gz`, as DuckDB decides) is read here; an object in S3 or a
        zstd file through DuckDB, as UTF-8, else as Latin-1 (DuckDB's Latin-1 refuses the bytes 0x80-0x9F)."""
        if first.startswith("s3://") or first.endswith(".zst"):
            return self._header_line_by_duckdb(first)
        try:
            with open_regular(Path(first), first) as raw:
                stream = cast(IO[bytes], gzip.GzipFile(fileobj=raw) if first.endswith(".gz") else raw)
                blocks: list[bytes] = []
                while sum(map(len, blocks)) <= MAX_HEADER and (block := stream.read(1 << 16)):
                    blocks.append(block)
                    if _LINE_END.search(block):  # a CRLF split across two blocks ends at its CR just the same
                        break
        except (OSError, EOFError, Unreadable) as exc:  # gzip.BadGzipFile, a truncated stream, a FIFO swapped in
            raise QueryError(exc) from None
        line = _LINE_END.split(b"".join(blocks), maxsplit=1)[0]
        if len(line) > MAX_HEADER:
            raise QueryError(ValueError("its first line is over two MiB long: not a header"))
        return line.decode("utf-8", "replace").lstrip("\ufeff")

    def _header_line_by_duckdb(self, first: str) -> str:
        def read(encoding: str) -> str:
            found = self.rows(f"SELECT * FROM read_csv({literal(_no_glob(first))}, auto_detect=false, header=false, "
                              f"delim={literal(chr(31))}, quote='', escape='', columns={{'line': 'VARCHAR'}}, "
                              f"encoding='{encoding}') LIMIT 1")
            return str(found[0][0] or "") if found else ""

        try:
            line = read("utf-8")
        except QueryError:  # not UTF-8 in DuckDB's first buffer: every byte a character, decoded here
            line = read("latin-1").encode("latin-1").decode("utf-8", "replace")
        return line.lstrip("\ufeff")

    def _detect(self, reader: str, names: list[str]) -> dict[str, str]:
        """The narrowest type every value of each column parses as (one scan of the whole file)."""
        if not names:
            return {}
        tests = [(n, t, f"bool_and({ident(n)} IS NULL OR {_fits(ident(n), t)})") for n in names for t in _DETECTED]
        tests += [(n, "BOOLEAN", f"bool_and({ident(n)} IS NULL OR lower({ident(n)}) IN ('true', 'false'))")
                  for n in names]
        present = [f"COUNT({ident(n)}) > 0" for n in names]
        (row,) = self.rows(f"SELECT {', '.join([*present, *(e for _, _, e in tests)])} FROM {reader}")
        fits = {n: [t for (name, t, _), ok in zip(tests, row[len(names):], strict=True) if name == n and ok]
                for n in names}
        return {n: fits[n][0] for n, any_value in zip(names, row[:len(names)], strict=True) if any_value and fits[n]}

    def _paths(self, ds: Dataset, base: Path) -> list[str]:
        assert ds.path is not None
        if ds.path.startswith("s3://"):
            return self._s3_paths(ds)
        pattern = ds.path if os.path.isabs(ds.path) else str(base / ds.path)
        if os.path.isfile(pattern) or not glob.has_magic(pattern):  # a file named `data[1].csv` is that file
            found = [pattern]
        else:
            found = sorted(glob.glob(pattern, recursive=True))  # `**` spans directories, as in DuckDB
        if not found or not all(os.path.isfile(p) for p in found):
            raise EnvironmentProblem(f"dataset {ds.name!r}: no file at {ds.path}")
        for path in found:
            try:
                path.encode("utf-8")
            except UnicodeEncodeError:  # a byte os.fsdecode kept as a surrogate: DuckDB takes UTF-8 names only
                shown = os.fsencode(os.path.relpath(path, base)).decode("utf-8", "backslashreplace")
                raise EnvironmentProblem(f"dataset {ds.name!r}: {shown}: a file name that is not UTF-8 cannot be "
                                         "read; rename it") from None
        return found

    def _s3_paths(self, ds: Dataset) -> list[str]:
        fs = self._s3_filesystem()
        assert ds.path is not None
        try:
            literal_key = fs.isfile(ds.path)  # an object named `part[1].csv` is that object
            found = sorted(fs.glob(ds.path)) if glob.has_magic(ds.path) and not literal_key else \
                ([ds.path] if literal_key else [])
        except Exception as exc:  # noqa: BLE001 - botocore raises many kinds: all mean unreachable
            raise EnvironmentProblem(f"dataset {ds.name!r}: cannot reach {ds.path}: "
                                     f"{clean_error(exc, from_data=False)}") from None
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


def _fits(col: str, db_type: str) -> str:
    """Whether a text value parses as db_type; an integer only when nothing is lost (DuckDB casts '1.5' to BIGINT
    as 2, and reads it so: a column of decimals would be detected, and then read, as rounded integers)."""
    fits = f"TRY_CAST({col} AS {db_type}) IS NOT NULL"
    if db_type == "BIGINT":
        fits += f" AND TRY_CAST({col} AS BIGINT) = TRY_CAST({col} AS DOUBLE)"
    return fits


def _no_glob(path: str) -> str:
    """A file path DuckDB reads as that file: its glob characters in brackets (`data[[]1].csv`)."""
    return re.sub(r"[\[*?]", lambda m: f"[{m[0]}]", path)


def _columns(types: Mapping[str, str]) -> str:
    return ", columns={" + ", ".join(f"{literal(name)}: {literal(t)}" for name, t in types.items()) + "}"


def _unique(names: list[str]) -> list[str]:
    """Header names made unique and non-empty, as DuckDB names them (`a`, `a_1`; `column2`): its identifiers
    ignore case, so `x` and `X` are the same name too (`x`, `X_1`)."""
    out: list[str] = []
    taken: set[str] = set()
    for i, name in enumerate(names):
        base = name or f"column{i}"
        candidate, n = base, 0
        while candidate.casefold() in taken:
            n += 1
            candidate = f"{base}_{n}"
        out.append(candidate)
        taken.add(candidate.casefold())
    return out


@dataclass
class _PgSource:
    conn: Any
    relation: str
    place: str
    dialect: Dialect = POSTGRES

    def columns(self) -> dict[str, str]:
        def describe() -> dict[str, str]:
            with self.conn.cursor() as cur:
                cur.execute(f"SELECT * FROM {self.relation} LIMIT 0")
                return {str(c.name): logical_type(c.type_display) for c in cur.description or []}
        return interruptible(describe, self._cancel)

    def one(self, sql: str) -> tuple[Any, ...]:
        rows = self.rows(sql)
        return rows[0] if rows else ()

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        def query() -> list[tuple[Any, ...]]:
            with self.conn.cursor() as cur:
                cur.execute(sql)
                return [tuple(r) for r in cur.fetchall()]
        return interruptible(query, self._cancel)

    def _cancel(self) -> None:
        getattr(self.conn, "cancel_safe", self.conn.cancel)()  # cancel_safe: psycopg >= 3.2

    def malformed(self) -> tuple[int, int | None]:
        return 0, None


@contextmanager
def postgres(ds: Dataset) -> Iterator[Source]:
    """A connection for a PostgreSQL/Greenplum dataset; exit 3 when it cannot be reached."""
    assert ds.dsn_env is not None
    dsn = os.environ.get(ds.dsn_env)
    if not dsn:
        raise EnvironmentProblem(f"dataset {ds.name!r}: environment variable {ds.dsn_env} (dsn_env) is not set")
    try:
        import psycopg
    except ImportError:
        raise EnvironmentProblem("PostgreSQL datasets need psycopg: pip install 'mlci[postgres]'") from None

    try:
        conn = psycopg.connect(dsn, connect_timeout=10, autocommit=True)
    except (psycopg.Error, ValueError) as exc:
        raise EnvironmentProblem(f"dataset {ds.name!r}: cannot connect with {ds.dsn_env}: "
                                 f"{clean_error(exc, from_data=False)}") from None
    try:
        if ds.table is not None:
            relation = ".".join(ident(part) for part in ds.table.split("."))
        else:
            relation = f"({ds.query}) AS {ident(ds.name)}"
        yield _PgSource(conn, relation, f"postgres:{ds.dsn_env}")
    finally:
        conn.close()
