"""The real-service fixtures work: PostgreSQL over TCP with a password, moto S3, DuckDB reading S3 via fsspec."""
from __future__ import annotations

import subprocess
from pathlib import Path

import duckdb
import psycopg
import pytest

# Until tests/conftest.py imports these fixtures, this module brings them in itself.
from tests.testing.postgres import PostgresServer, write_csv
from tests.testing.s3 import S3Server

COLUMNS = {"id": "integer", "name": "text", "amount": "double precision"}
ROWS = [(1, "alpha", 1.5), (2, "beta, with comma", None), (3, None, -2.25), (4, "delta", 10.0)]
CHECK = "SELECT count(*), count(name), sum(amount), min(id), max(id) FROM {table}"


def test_postgres_serves_password_auth_on_loopback_tcp(postgres: PostgresServer) -> None:
    assert postgres.host == "127.0.0.1" and postgres.port > 0
    for conninfo in (postgres.dsn, postgres.url):
        with psycopg.connect(conninfo) as conn:
            row = conn.execute("SELECT current_user, current_database(), inet_server_addr()::text").fetchone()
        assert row == (postgres.user, postgres.dbname, "127.0.0.1/32")
    # scram over TCP: a wrong password is refused, the role's password is stored as a SCRAM verifier
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(postgres.dsn.replace(postgres.password, "wrong-password"))
    assert postgres.superuser_psql(
        f"SELECT rolpassword LIKE 'SCRAM-SHA-256$%', rolsuper FROM pg_authid WHERE rolname = '{postgres.user}'"
    ).strip() == "t|f"
    # the psql CLI with PGPASSWORD, as a subprocess would use it
    assert postgres.psql("SELECT 6 * 7").strip() == "42"
    assert str(postgres.directory) in postgres.superuser_psql("SHOW unix_socket_directories")


def test_postgres_copy_and_duckdb_agree_on_the_same_csv(postgres: PostgresServer, tmp_path: Path) -> None:
    csv_file = write_csv(tmp_path / "orders.csv", list(COLUMNS), ROWS)
    assert postgres.load_csv("orders_csv", csv_file, COLUMNS) == len(ROWS)
    assert postgres.load_rows("public.orders_rows", COLUMNS, ROWS) == len(ROWS)
    from_csv = postgres.execute(CHECK.format(table="orders_csv"))
    assert from_csv == postgres.execute(CHECK.format(table="orders_rows")) == [(4, 3, 9.25, 1, 4)]
    assert postgres.execute("SELECT name FROM orders_csv WHERE id = %s", [2]) == [("beta, with comma",)]

    con = duckdb.connect()
    con.execute(f"CREATE TABLE orders_csv AS SELECT * FROM read_csv('{csv_file}', header = true, "
                "columns = {'id': 'INTEGER', 'name': 'VARCHAR', 'amount': 'DOUBLE'})")
    assert con.sql(CHECK.format(table="orders_csv")).fetchall() == from_csv


def test_s3_put_get_and_s3fs(s3: S3Server, tmp_path: Path) -> None:
    assert s3.endpoint_url.startswith("http://127.0.0.1:")
    bucket = s3.create_bucket()
    assert s3.put_bytes(bucket, "raw/hello.txt", b"hello") == f"s3://{bucket}/raw/hello.txt"
    local = tmp_path / "data.bin"
    local.write_bytes(bytes(range(256)) * 64)
    s3.put_file(bucket, "raw/data.bin", local)
    assert s3.get_bytes(bucket, "raw/hello.txt") == b"hello"
    assert s3.keys(bucket, "raw/") == ["raw/data.bin", "raw/hello.txt"]

    fs = s3.filesystem()
    assert fs.cat(f"{bucket}/raw/data.bin") == local.read_bytes()
    assert sorted(fs.glob(f"s3://{bucket}/raw/*.txt")) == [f"{bucket}/raw/hello.txt"]
    # the same through the environment alone (AWS_ENDPOINT_URL + dummy keys), as a CLI subprocess gets it
    script = f"import s3fs; print(s3fs.S3FileSystem().cat('{bucket}/raw/hello.txt').decode())"
    import os
    import sys
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, **s3.env()},
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "hello"


def test_duckdb_reads_parquet_and_csv_from_s3(s3: S3Server, tmp_path: Path) -> None:
    bucket = s3.create_bucket()
    local = duckdb.connect()
    local.execute("CREATE TABLE orders (id INTEGER, name VARCHAR, amount DOUBLE)")
    local.executemany("INSERT INTO orders VALUES (?, ?, ?)", ROWS)
    local.execute(f"COPY (SELECT * FROM orders WHERE id <= 2) TO '{tmp_path / 'a.parquet'}' (FORMAT parquet)")
    local.execute(f"COPY (SELECT * FROM orders WHERE id > 2) TO '{tmp_path / 'b.parquet'}' (FORMAT parquet)")
    local.execute(f"COPY orders TO '{tmp_path / 'orders.csv'}' (HEADER)")
    for name in ("a.parquet", "b.parquet"):
        s3.put_file(bucket, f"orders/{name}", tmp_path / name)
    s3.put_file(bucket, "csv/orders.csv", tmp_path / "orders.csv")

    con = s3.duckdb()
    expected = [(4, 3, 9.25, 1, 4)]
    assert con.sql(CHECK.format(table=f"read_parquet('s3://{bucket}/orders/a.parquet')")).fetchall() == [
        (2, 2, 1.5, 1, 2)]
    assert con.sql(CHECK.format(table=f"read_parquet('s3://{bucket}/orders/*.parquet')")).fetchall() == expected
    assert con.sql(CHECK.format(table=f"read_csv('s3://{bucket}/csv/orders.csv')")).fetchall() == expected
    loaded = con.sql("SELECT extension_name FROM duckdb_extensions() WHERE loaded").fetchall()
    assert ("httpfs",) not in loaded  # the fsspec route, not DuckDB's own S3 client


def test_same_rows_in_postgres_and_in_s3_give_the_same_answer(
    postgres: PostgresServer, s3: S3Server, tmp_path: Path
) -> None:
    csv_file = write_csv(tmp_path / "same.csv", list(COLUMNS), ROWS)
    postgres.load_csv("same_rows", csv_file, COLUMNS)
    bucket = s3.create_bucket()
    s3.put_file(bucket, "same/part-0.csv", csv_file)
    con = s3.duckdb()
    in_s3 = con.sql(CHECK.format(table=f"read_csv('s3://{bucket}/same/*.csv', header = true)")).fetchall()
    assert in_s3 == postgres.execute(CHECK.format(table="same_rows"))
