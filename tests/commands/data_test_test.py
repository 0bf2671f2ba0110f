"""`mlci data-test` as users run it: exit codes, reports, bad input, unreachable sources, S3."""
from __future__ import annotations

import gzip
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.datatest import data
from tests.testing import repos
from tests.testing.postgres import PostgresServer
from tests.testing.s3 import S3Server


def _repo(tmp_path: Path, suite: str, **files: str) -> Path:
    (tmp_path / ".git").mkdir()
    (tmp_path / "mlci.yaml").write_text("version: 1\ndata_tests:\n  datasets:\n" + suite)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_pass_writes_every_report_and_exits_0(tmp_path: Path) -> None:
    data.write(tmp_path / "d.csv", 300)
    repo = _repo(tmp_path, "    - name: d\n      path: d.csv\n      checks: [{row_count: {min: 1}}]\n"
                           "      columns:\n        grp: [not_null]\n")
    done = repos.run_mlci(repo, "data-test", "--junit", "out/j.xml", "--json-out", "out/r.json", "--md", "out/r.md")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "2 checks: 2 passed, 0 warned, 0 failed"
    suite = ET.parse(repo / "out" / "j.xml").getroot()
    assert suite.get("tests") == "2" and suite.get("failures") == "0"
    assert json.loads((repo / "out" / "r.json").read_text())["ok"] is True
    assert (repo / "out" / "r.md").read_text().startswith("### Data tests: ✅ passed")


def test_a_failed_check_exits_1_with_reports_written(tmp_path: Path) -> None:
    data.write(tmp_path / "d.csv", 300)
    repo = _repo(tmp_path, "    - name: d\n      path: d.csv\n      columns:\n"
                           "        age: [not_null, {between: {min: 18, max: 60}, severity: warn}]\n")
    done = repos.run_mlci(repo, "data-test", "--junit", "j.xml")
    assert done.returncode == 1
    assert "age: not_null" in done.stdout and "FAIL" in done.stdout and "WARN" in done.stdout
    failure = ET.parse(repo / "j.xml").getroot().find(".//failure")
    assert failure is not None and failure.get("message", "").startswith("observed nulls=8; expected no NULL")


def test_malformed_rows_are_a_failed_check(tmp_path: Path) -> None:
    text = "id,age\n1,30\n2,31\n3\n4,33,extra\n5,34\n"
    suite = "    - name: d\n      path: d.csv\n      checks: [{row_count: {min: 1}}]\n"
    repo = _repo(tmp_path, suite, **{"d.csv": text})
    done = repos.run_mlci(repo, "data-test", "--json")
    assert done.returncode == 1
    result = {r["check"]: r for r in json.loads(done.stdout)["results"]}
    assert result["well_formed"]["status"] == "fail"
    assert result["well_formed"]["observed"] == {"malformed_rows": 2, "first_line": 4}


def test_bytes_that_are_not_utf8_make_a_malformed_row_not_an_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_bytes("id,Données\n1,ok\n2,\xff\xfeZelda\n3,fine\n".encode("latin-1")
                                     .replace(b"Donn\xe9es", "Données".encode()))
    suite = ("    - name: d\n      path: d.csv\n      checks: [{row_count: {min: 1}}]\n"
             "      columns: {Données: [not_null]}\n")
    repo = _repo(tmp_path, suite)
    done = repos.run_mlci(repo, "data-test", "--json")
    assert done.returncode == 1, done.stderr
    result = {(r.get("column"), r["check"]): r for r in json.loads(done.stdout)["results"]}
    assert result[(None, "well_formed")]["observed"] == {"malformed_rows": 1, "first_line": 3}
    assert result[("Données", "not_null")]["status"] == "pass" and "Zelda" not in done.stdout + done.stderr


@pytest.mark.parametrize("name, content", [
    # UTF-8 whose bytes include 0x80-0x9F (€ is E2 82 AC, Cyrillic er is D1 80), which DuckDB's Latin-1 refuses:
    # the header line used to be read through it, so such a file was "cannot read" wherever the character sat in
    # the first buffer; with a BOM and CRLF line ends, as Excel writes them
    ("d.csv", "\ufeffid;Сумма, €;город\r\n1;10,5;Москва\r\n2;3;Пермь\r\n".encode()),
    ("d.csv", "id;Сумма, €;город\r1;10,5;Москва\r2;3;Пермь\r".encode()),  # CR only
    ("d.csv.gz", gzip.compress("id;Сумма, €;город\n1;10,5;Москва\n2;3;Пермь\n".encode(), mtime=0)),
])
def test_utf8_of_any_script_in_the_header_and_rows_is_read(tmp_path: Path, name: str, content: bytes) -> None:
    (tmp_path / name).write_bytes(content)
    suite = (f"    - name: d\n      path: {name}\n      checks: [{{row_count: {{min: 2, max: 2}}}}]\n"
             "      columns: {'Сумма, €': [not_null], город: [{allowed_values: {values: [Москва, Пермь]}}]}\n")
    done = repos.run_mlci(_repo(tmp_path, suite), "data-test", "--json")
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)["results"]
    assert [r["status"] for r in results] == ["pass"] * 3 and len(results) == 3


def test_a_windows_1252_byte_after_the_header_is_a_malformed_row(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_bytes(b"id,price\n1,5\n2,\x80 7\n3,9\n")  # cp1252's euro: not UTF-8, not Latin-1
    repo = _repo(tmp_path, "    - name: d\n      path: d.csv\n      checks: [{row_count: {min: 1}}]\n"
                           "      columns: {price: [not_null]}\n")
    done = repos.run_mlci(repo, "data-test", "--json")
    assert done.returncode == 1, done.stderr
    result = {r["check"]: r for r in json.loads(done.stdout)["results"]}
    assert result["well_formed"]["observed"] == {"malformed_rows": 1, "first_line": 3}


@pytest.mark.parametrize("content, expected", [
    (b"x" * (3 << 20), "its first line is over two MiB long: not a header"),
    (b"\x1f\x8b\x08\x00broken", "Compressed file ended before the end-of-stream marker was reached"),
])
def test_a_header_too_long_or_a_broken_gzip_is_exit_3_naming_the_file(tmp_path: Path, content: bytes,
                                                                      expected: str) -> None:
    name = "d.csv.gz" if content.startswith(b"\x1f") else "d.csv"
    (tmp_path / name).write_bytes(content)
    repo = _repo(tmp_path, f"    - name: d\n      path: {name}\n      checks: [{{row_count: {{min: 1}}}}]\n")
    done = repos.run_mlci(repo, "data-test")
    assert done.returncode == 3
    assert done.stderr.startswith(f"mlci: error: dataset 'd': cannot read {name}: ") and expected in done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_a_glob_that_matches_a_file_name_that_is_not_utf8_is_exit_3_naming_it(tmp_path: Path) -> None:
    (tmp_path / "g").mkdir()
    for name in (b"a.csv", b"b\xff.csv"):
        with open(os.path.join(os.fsencode(tmp_path / "g"), name), "wb") as handle:
            handle.write(b"id\n1\n")
    repo = _repo(tmp_path, "    - name: d\n      path: g/*.csv\n      checks: [{row_count: {min: 1}}]\n")
    done = repos.run_mlci(repo, "data-test")
    assert done.returncode == 3
    assert done.stderr == ("mlci: error: dataset 'd': g/b\\xff.csv: a file name that is not UTF-8 cannot be read; "
                           "rename it\n")


def test_jsonl_and_parquet_files_are_read(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text('{"a": 1}\n{"a": 2}\n{"a": null}\n')
    import duckdb
    duckdb.sql("COPY (SELECT range AS a FROM range(5)) TO '" + str(tmp_path / "p.parquet") + "' (FORMAT parquet)")
    repo = _repo(tmp_path, "    - name: j\n      path: d.jsonl\n      columns: {a: [not_null]}\n"
                           "    - name: p\n      path: '*.parquet'\n      checks: [{row_count: {min: 5, max: 5}}]\n")
    done = repos.run_mlci(repo, "data-test", "--json")
    results = json.loads(done.stdout)["results"]
    assert [(r["dataset"], r["status"], r["observed"]) for r in results] == [
        ("j", "fail", {"nulls": 1}), ("p", "pass", {"rows": 5})]


@pytest.mark.parametrize("name", ["d.csv", "d.parquet"])
def test_columns_whose_names_differ_only_by_case_are_read_the_second_as_name_1(tmp_path: Path, name: str) -> None:
    """DuckDB's names ignore case: a CSV headed `x,X` was exit 3 with its Binder Error on `struct_pack`."""
    if name == "d.csv":
        (tmp_path / name).write_text("x,X\n1,\n3,4\n")
    else:
        import duckdb
        duckdb.sql(f"COPY (SELECT * FROM (VALUES (1, NULL), (3, 4)) t(\"x\", \"X_\")) TO '{tmp_path / name}'")
        duckdb.sql(f"COPY (SELECT \"x\", \"X_\" AS \"X\" FROM '{tmp_path / name}') TO '{tmp_path / name}.tmp' "
                   "(FORMAT parquet)")
        os.replace(tmp_path / f"{name}.tmp", tmp_path / name)
    repo = _repo(tmp_path, f"    - name: d\n      path: {name}\n      columns:\n        x: [not_null]\n"
                           "        X_1: [not_null]\n        X: [not_null]\n")
    done = repos.run_mlci(repo, "data-test", "--json")
    assert done.returncode == 1, done.stderr
    results = {r["name"]: r for r in json.loads(done.stdout)["results"]}
    assert results["x: not_null"]["status"] == "pass"
    assert results["X_1: not_null"]["observed"] == {"nulls": 1}
    assert results["X: not_null"]["observed"] == {"missing_column": "X"}
    assert results["X: not_null"]["expected"] == (
        "the column exists (the data has 'x', 'X_1': names are matched exactly, and of two that differ only by "
        "case the second is read as NAME_1)")


def test_files_of_a_glob_with_another_header_are_exit_3_naming_the_file(tmp_path: Path) -> None:
    """The files of a glob were read by position under the first one's header: a file with its columns swapped
    gave swapped values (the same types: no error at all) or malformed rows. Each must have the same header."""
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "a.csv").write_text("\ufeffage,income\n30,1000\n")  # a BOM is not a difference
    (tmp_path / "g" / "b.csv").write_text("age,income\r\n31,2000\r\n")
    repo = _repo(tmp_path, "    - name: d\n      path: g/*.csv\n      columns:\n        age: [{between: {max: 150}}]\n")
    assert repos.run_mlci(repo, "data-test").returncode == 0
    (tmp_path / "g" / "c.csv").write_text("income,age\n3000,32\n")
    done = repos.run_mlci(repo, "data-test")
    assert done.returncode == 3, done.stderr
    assert done.stderr.strip().splitlines() == [
        "mlci: error: dataset 'd': g/c.csv has another header than g/a.csv (other columns, or the same in another "
        "order): the files of a dataset are read by position, so their columns would be mixed up; give each "
        "layout its own dataset"]


@pytest.mark.parametrize("content", ["", "\n", "\ufeff\r\nid\n1\n"])
def test_a_csv_without_a_header_line_is_exit_3_saying_so(tmp_path: Path, content: str) -> None:
    """An empty file was DuckDB's `Binder Error: read_csv requires at least a single column as input!`."""
    (tmp_path / "d.csv").write_text(content)
    done = repos.run_mlci(_repo(tmp_path, "    - name: d\n      path: d.csv\n      checks: [{row_count: {min: 0}}]\n"),
                          "data-test")
    assert done.returncode == 3 and done.stderr.startswith("mlci: error: dataset 'd': d.csv has no header line"), \
        done.stderr


def test_a_double_star_glob_reads_files_at_any_depth(tmp_path: Path) -> None:
    for part, rows in (("events/a.csv", 1), ("events/2024/b.csv", 2), ("events/2024/01/c.csv", 3)):
        (tmp_path / part).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / part).write_text("id\n" + "".join(f"{i}\n" for i in range(rows)))
    repo = _repo(tmp_path, "    - name: e\n      path: 'events/**/*.csv'\n      checks: [{row_count: {min: 1}}]\n")
    done = repos.run_mlci(repo, "data-test", "--json")
    assert done.returncode == 0, done.stderr  # as DuckDB and s3fs read `**`; Python's glob did one level only
    assert json.loads(done.stdout)["results"][0]["observed"] == {"rows": 6}


def test_custom_sql_that_does_not_parse_is_exit_2_with_its_line(tmp_path: Path) -> None:
    data.write(tmp_path / "d.csv", 10)
    repo = _repo(tmp_path, "    - name: d\n      path: d.csv\n      checks:\n"
                           "        - sql: {query: 'SELEC id FROM {table}', max_rows: 0}\n")
    done = repos.run_mlci(repo, "data-test")
    assert done.returncode == 2
    assert done.stderr.startswith("mlci.yaml:7: dataset 'd': sql: the query does not parse")
    assert "Traceback" not in done.stderr


def test_missing_file_is_exit_3(tmp_path: Path) -> None:
    repo = _repo(tmp_path, "    - name: d\n      path: nowhere/*.csv\n      checks: [{row_count: {min: 1}}]\n")
    done = repos.run_mlci(repo, "data-test")
    assert (done.returncode, done.stderr) == (3, "mlci: error: dataset 'd': no file at nowhere/*.csv\n")


def test_unreachable_postgres_is_exit_3_and_never_shows_the_password(tmp_path: Path) -> None:
    from tests.testing.procs import free_port
    dsn = f"host=127.0.0.1 port={free_port()} user=u password=pw-do-not-print dbname=x connect_timeout=2"
    repo = _repo(tmp_path, "    - name: d\n      dsn_env: WAREHOUSE_DSN\n      table: t\n"
                           "      checks: [{row_count: {min: 1}}]\n")
    done = repos.run_mlci(repo, "data-test", env={"WAREHOUSE_DSN": dsn})
    assert done.returncode == 3
    assert done.stderr.startswith("mlci: error: dataset 'd': cannot connect with WAREHOUSE_DSN:")
    assert "pw-do-not-print" not in done.stderr + done.stdout
    unset = repos.run_mlci(repo, "data-test")
    assert unset.returncode == 3 and "WAREHOUSE_DSN (dsn_env) is not set" in unset.stderr


def test_wrong_password_is_exit_3(tmp_path: Path, postgres: PostgresServer) -> None:
    repo = _repo(tmp_path, "    - name: d\n      dsn_env: WAREHOUSE_DSN\n      table: t\n"
                           "      checks: [{row_count: {min: 1}}]\n")
    dsn = postgres.dsn.replace(postgres.password, "wrong-secret-123")
    done = repos.run_mlci(repo, "data-test", env={"WAREHOUSE_DSN": dsn})
    assert done.returncode == 3 and "wrong-secret-123" not in done.stderr
    assert "password authentication failed" in done.stderr


def test_profile_then_drift_on_a_postgres_table(tmp_path: Path, postgres: PostgresServer) -> None:
    data.write(tmp_path / "ref.csv", 1000, seed=5)
    data.load(postgres, "scored", data.write(tmp_path / "cur.csv", 1000, seed=6, shift=0.5))
    repo = _repo(tmp_path, "    - name: scored\n      dsn_env: WAREHOUSE_DSN\n      table: scored\n"
                           "      reference: ref.profile.json\n"
                           "      columns:\n        income: [{drift: {method: psi}}]\n        age: [drift]\n")
    env = {"WAREHOUSE_DSN": postgres.dsn}
    made = repos.run_mlci(repo, "data-test", "profile", "ref.csv", "-o", "ref.profile.json", env=env)
    assert made.returncode == 0, made.stderr
    assert json.loads((repo / "ref.profile.json").read_text())["columns"]["region"]["kind"] == "categorical"
    done = repos.run_mlci(repo, "data-test", "--json", env=env)
    results = {r["name"]: r for r in json.loads(done.stdout)["results"]}
    assert results["income: drift"]["status"] == "fail" and results["income: drift"]["observed"]["psi"] > 0.25
    assert results["age: drift"]["status"] == "pass"
    assert done.returncode == 1


@pytest.mark.parametrize("spelled", ["True/False", "TRUE/FALSE", "true/false"])
@pytest.mark.parametrize("reference", ["ref.profile.json", "ref.csv"])
def test_a_boolean_column_drifts_by_nothing_against_its_own_profile(tmp_path: Path, spelled: str,
                                                                    reference: str) -> None:
    """A CSV's `True`/`False` (how pandas writes a bool) is a boolean to the profile's type detection, whose
    categories are then `true`/`false`, and was text to the drift check: every value fell in `other`
    (psi=17.8 against the same file). The drift column is read as the profile read it."""
    yes, no = spelled.split("/")
    rows = "".join(f"{i},{yes if i % 3 else no},{'north' if i % 2 else 'south'}\n" for i in range(300))
    (tmp_path / "ref.csv").write_text("id,flag,region\n" + rows)
    repo = _repo(tmp_path, f"    - name: d\n      path: ref.csv\n      reference: {reference}\n"
                           "      columns:\n        flag: [{drift: {method: psi}}, {drift: {method: js}}]\n"
                           "        region: [drift]\n")
    if reference.endswith(".json"):
        made = repos.run_mlci(repo, "data-test", "profile", "ref.csv", "-o", reference)
        assert made.returncode == 0, made.stderr
        assert json.loads((repo / reference).read_text())["columns"]["flag"]["categories"] == {
            "false": 0.33333333, "true": 0.66666667}
    done = repos.run_mlci(repo, "data-test", "--json")
    assert done.returncode == 0, done.stderr
    drifts = [r["observed"] for r in json.loads(done.stdout)["results"]]
    assert drifts == [{"psi": 0.0}, {"js": 0.0}, {"psi": 0.0}]


def test_files_in_s3_through_fsspec(tmp_path: Path, s3: S3Server) -> None:
    bucket = s3.create_bucket()
    s3.put_file(bucket, "data/part-1.csv", data.write(tmp_path / "a.csv", 100, seed=1))
    s3.put_file(bucket, "data/part-2.csv", data.write(tmp_path / "b.csv", 50, seed=2))
    repo = _repo(tmp_path / "repo" if (tmp_path / "repo").mkdir() is None else tmp_path,
                 f"    - name: d\n      path: s3://{bucket}/data/*.csv\n"
                 "      checks: [{row_count: {min: 150, max: 150}}]\n")
    (repo / "mlci.yaml").write_text((repo / "mlci.yaml").read_text() + f"  s3_endpoint_url: {s3.endpoint_url}\n")
    env = {k: v for k, v in s3.env().items() if not k.startswith("AWS_ENDPOINT")}
    done = repos.run_mlci(repo, "data-test", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["results"][0]["observed"] == {"rows": 150}
    missing = repos.run_mlci(repo, "data-test", env={**env, "MLCI_DATA_TESTS_S3_ENDPOINT_URL": s3.endpoint_url + "0"})
    assert missing.returncode == 3


def test_profile_is_byte_for_byte_reproducible(tmp_path: Path) -> None:
    data.write(tmp_path / "ref.csv", 3000, seed=9)
    repo = _repo(tmp_path, "    - name: d\n      path: ref.csv\n")
    for name in ("a.json", "b.json"):
        assert repos.run_mlci(repo, "data-test", "profile", "d", "-o", name).returncode == 0
    assert (repo / "a.json").read_bytes() == (repo / "b.json").read_bytes()


def _main(repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
          ) -> tuple[int, str, str]:
    """`mlci ARGS` in-process (the same argv parsing and error handler as the console script)."""
    from mlci import cli

    monkeypatch.chdir(repo)
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


TYPED_SUITE = """\
    - name: d
      path: d.csv
      checks:
        - row_count: {min: 1}
        - schema: {columns: {id: integer, created: date}}
        - unique: {columns: [id]}
        - freshness: {column: created, max_age_days: 100000}
        - sql: {name: mean income, query: 'SELECT AVG(income) FROM {table}', min: 0, max: 1000000000}
        - sql: {name: rich, query: 'SELECT id FROM {table} WHERE income > 20000', max_rows: 100000}
      columns:
        age: [not_null, {between: {min: 0, max: 200}}, {mean: {min: 0, max: 200}}]
        income: [{quantile: {q: 0.5, min: 0, max: 1000000000}}]
        region: [{allowed_values: {values: [north, south]}}]
        note: [not_null]
"""
# A value that is not a number, not a date, an impossible date, a missing field: wherever they are.
BAD_ROWS = ["abc,oops,n/a,notadate,north,x", "7,,12.5,2025-02-30,south,y", "8,40,1e5", "9,41,13.5,2025-01-09,east,z"]


def _typed_csv(path: Path, bad_at_top: bool) -> Path:
    good = [f"{i},{20 + i % 50},{1000.5 + i},2025-01-{1 + i % 28:02d},{'north' if i % 2 else 'south'},n{i}"
            for i in range(10, 30010)]  # more rows than DuckDB's type-detection sample (20480)
    rows = BAD_ROWS + good if bad_at_top else good + BAD_ROWS
    path.write_text("id,age,income,created,region,note\n" + "\n".join(rows) + "\n")
    return path


def test_csv_columns_are_read_with_the_types_the_spec_gives(tmp_path: Path) -> None:
    """The same bad rows at the top or at the bottom give the same results: a value that does not parse as
    its column's type makes a malformed row, never a column of strings (DuckDB's guess from a sample)."""
    outcomes = []
    for where, top in (("top", True), ("bottom", False)):
        repo = _repo(tmp_path / where if (tmp_path / where).mkdir() is None else tmp_path, TYPED_SUITE)
        _typed_csv(repo / "d.csv", bad_at_top=top)
        done = repos.run_mlci(repo, "data-test", "--json")
        results = json.loads(done.stdout)["results"]
        well_formed = next(r for r in results if r["check"] == "well_formed")
        assert well_formed["observed"]["malformed_rows"] == 3, well_formed  # row 9 is fine: region east is data
        well_formed["observed"].pop("first_line")  # the one thing that depends on where they are
        outcomes.append((done.returncode, results))
    assert outcomes[0] == outcomes[1]
    by_name = {r["name"]: r for r in outcomes[0][1]}
    assert by_name["schema"]["status"] == "pass"
    assert by_name["age: between"]["status"] == "pass" and by_name["age: mean"]["status"] == "pass"
    assert by_name["mean income"]["status"] == "pass" and by_name["rich"]["observed"] == {"rows": 11010}
    assert by_name["region: allowed_values"]["observed"] == {"not_allowed": 1}
    assert by_name["row_count"]["observed"] == {"rows": 30001}


def test_an_integer_column_keeps_whole_numbers_exactly_and_a_fraction_is_a_malformed_row(tmp_path: Path) -> None:
    """DuckDB's reader casts '1.5' to BIGINT as 2: read so, a data test would see data that is not there.
    A value of an `integer` column that is not a whole number makes its row malformed; 2^53 + 1 stays
    exact (no detour through a float)."""
    big = 2 ** 53 + 1
    suite = ("    - name: d\n      path: d.csv\n      checks:\n        - schema: {columns: {id: integer}}\n"
             f"        - sql: {{name: top, query: 'SELECT COUNT(*) FROM {{table}} WHERE id = {big}', min: 1, max: 1}}\n"
             "        - sql: {name: total, query: 'SELECT SUM(id) FROM {table} WHERE id < 10', min: 10, max: 10}\n"
             "        - row_count: {min: 5, max: 5}\n")
    repo = _repo(tmp_path, suite, **{"d.csv": f"id,tag\n1,a\n1.5,b\n2,c\n,d\n{big},e\n7,f\n1e0x,g\n"})
    done = repos.run_mlci(repo, "data-test", "--json")
    results = {r["name"]: r for r in json.loads(done.stdout)["results"]}
    assert results["well_formed"]["observed"]["malformed_rows"] == 2, results["well_formed"]  # 1.5 and 1e0x
    assert results["top"]["status"] == "pass", results["top"]
    assert results["total"]["status"] == "pass", results["total"]  # 1 + 2 + 7: no 1.5 rounded to 2
    assert results["row_count"]["observed"] == {"rows": 5} and results["schema"]["status"] == "pass"
    assert done.returncode == 1 and "Traceback" not in done.stderr


def test_columns_the_spec_does_not_type_are_text(tmp_path: Path) -> None:
    """`grp` is not typed by the spec: it is text, so numbers in allowed_values are compared as text and
    custom SQL sees text (a type is never guessed from a sample)."""
    data.write(tmp_path / "d.csv", 100)
    repo = _repo(tmp_path, "    - name: d\n      path: d.csv\n      checks:\n"
                           "        - schema: {columns: {grp: string}}\n"
                           "        - sql: {query: 'SELECT MAX(LENGTH(grp)) FROM {table}', max: 1}\n"
                           "      columns:\n        grp: [{allowed_values: {values: [0, 1, 2, 3, 4, 5]}}]\n")
    done = repos.run_mlci(repo, "data-test", "--json")
    results = [(r["check"], r["status"], r["observed"]) for r in json.loads(done.stdout)["results"]]
    assert results == [("schema", "pass", {"missing": [], "wrong_type": {}, "unexpected": []}),
                       ("allowed_values", "fail", {"not_allowed": 14}), ("sql", "pass", {"value": 1})]


PRIVATE = "    - name: d\n      path: d.csv\n{show}      checks:\n" \
          "        - freshness: {column: seen, max_age_days: 30}\n" \
          "        - sql: {name: first name, query: 'SELECT name FROM {table} LIMIT 1', min: 0}\n" \
          "      columns:\n        salary: [{between: {min: 0, max: 100000}}, {quantile: {q: 0.99, max: 1}}]\n" \
          "        bonus: [{mean: {max: 1}}, {stddev: {max: 1}}]\n"


def _private_csv(path: Path) -> None:
    rows = [f"Person{i},{50000 + i},2020-01-{1 + i % 28:02d}," + ("" if i % 4 else f"{i * 7}") for i in range(1, 40)]
    rows.append("Zebulon Quist,98765432.5,2031-07-19,")  # an outlier salary, a date in the future
    path.write_text("name,salary,seen,bonus\n" + "\n".join(rows) + "\n")


def test_reports_never_show_row_values_unless_the_dataset_opts_in(tmp_path: Path) -> None:
    _private_csv(tmp_path / "d.csv")
    repo = _repo(tmp_path, PRIVATE.replace("{show}", ""))
    done = repos.run_mlci(repo, "data-test", "--junit", "j.xml", "--json-out", "r.json", "--md", "r.md")
    assert done.returncode == 1
    shown = done.stdout + done.stderr + "".join((repo / n).read_text() for n in ("j.xml", "r.json", "r.md"))
    for value in ("98765432.5", "9.87654e+07", "2031-07-19", "2031", "Zebulon", "Person1", "50001", "50039"):
        assert value not in shown, value
    observed = {r["name"]: r["observed"] for r in json.loads((repo / "r.json").read_text())["results"]}
    assert observed["salary: between"] == {"out_of_range": 1, "out_of_range_ratio": 0.025}
    assert set(observed["freshness"]) == {"age_days"} and observed["freshness"]["age_days"] < 0
    assert observed["salary: quantile"] == {"quantile": None, "withheld": True, "values": 40}  # 0.4 values beyond
    assert observed["bonus: mean"] == {"mean": None, "withheld": True, "values": 9}
    assert observed["first name"] == {"value_type": "str"}
    (repo / "mlci.yaml").write_text("version: 1\ndata_tests:\n  datasets:\n"
                                    + PRIVATE.replace("{show}", "      show_values: true\n"))
    values = {r["name"]: r["observed"] for r in json.loads(repos.run_mlci(repo, "data-test", "--json").stdout)[
        "results"]}
    assert values["salary: between"]["max"] == 98765432.5 and values["freshness"]["newest"] == "2031-07-19"
    assert values["salary: quantile"]["quantile"] > 50000 and values["first name"] == {"value": "Person1"}


def test_json_out_keeps_full_precision_and_only_text_reports_round(tmp_path: Path) -> None:
    data.write(tmp_path / "ref.csv", 500, seed=5)
    data.write(tmp_path / "d.csv", 500, seed=6, shift=0.2)
    repo = _repo(tmp_path, "    - name: d\n      path: d.csv\n      reference: ref.csv\n"
                           "      columns:\n        income: [{drift: {method: psi, warn: 0.01, fail: 9}}]\n")
    done = repos.run_mlci(repo, "data-test", "--json-out", "r.json", "--md", "r.md", "--junit", "j.xml")
    assert done.returncode == 0, done.stderr
    psi = json.loads((repo / "r.json").read_text())["results"][0]["observed"]["psi"]
    assert psi != round(psi, 6)  # not cut to 6 decimals
    rounded = f"psi={psi:.6g}"
    assert rounded in done.stdout and rounded in (repo / "r.md").read_text() and rounded in (repo / "j.xml").read_text()


@pytest.mark.parametrize("column, kind", [("n", "integer"), ("s", "string")])
def test_freshness_on_a_column_that_is_not_a_date_is_a_failed_check(tmp_path: Path, column: str, kind: str) -> None:
    (tmp_path / "d.jsonl").write_text('{"n": 5, "s": "yesterday"}\n{"n": 6, "s": "today"}\n')
    repo = _repo(tmp_path, f"    - name: d\n      path: d.jsonl\n      checks: [{{freshness: {{column: {column}, "
                           "max_age_days: 3}}, {row_count: {min: 1}}]\n")
    done = repos.run_mlci(repo, "data-test", "--json")
    assert done.returncode == 1, done.stderr
    results = json.loads(done.stdout)["results"]
    assert [(r["status"], r["observed"], r["expected"]) for r in results] == [
        ("fail", {"type": kind}, "a date or timestamp column for freshness"), ("pass", {"rows": 2}, "rows >= 1")]


def test_a_file_named_like_a_glob_is_that_file_and_globs_still_match(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "data[1].csv").write_text("a\n1\n2\n")
    (tmp_path / "data1.csv").write_text("a\n1\n")  # what the glob `data[1].csv` would match instead
    (tmp_path / "part2.csv").write_text("a\n3\n4\n5\n")
    repo = _repo(tmp_path, "    - name: literal\n      path: data[1].csv\n      checks: [{row_count: {min: 0}}]\n"
                           "    - name: glob\n      path: 'part[0-9].csv'\n      checks: [{row_count: {min: 0}}]\n")
    code, out, err = _main(repo, monkeypatch, capsys, "data-test", "--json")
    assert code == 0, err
    assert [r["observed"] for r in json.loads(out)["results"]] == [{"rows": 2}, {"rows": 3}]


@pytest.mark.parametrize("flag", ["--junit", "--json-out", "--md", "-o"])
def test_an_output_path_that_is_a_directory_is_exit_2_naming_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], flag: str) -> None:
    data.write(tmp_path / "d.csv", 10)
    repo = _repo(tmp_path, "    - name: d\n      path: d.csv\n      checks: [{row_count: {min: 1}}]\n")
    (repo / "out").mkdir()
    args = ["data-test", "profile", "d", "-o", "out"] if flag == "-o" else ["data-test", flag, "out"]
    code, _, err = _main(repo, monkeypatch, capsys, *args)
    shown = "--output" if flag == "-o" else flag
    assert (code, err) == (2, f"mlci: error: {shown} out: is a directory; give a file name\n")


PROFILE = {"format": "mlci-profile/1", "rows": 10, "source": "x",
           "columns": {"age": {"kind": "numeric", "count": 10, "nulls": 0, "edges": [30.0, 40.0],
                               "fractions": [0.3, 0.3, 0.4]}}}


@pytest.mark.parametrize("change, reason", [
    ({"columns": []}, "columns: expected an object"),
    ({"columns": {"age": "numeric"}}, "columns.age: expected an object"),
    ({"rows": "ten"}, "rows: expected a count (an integer >= 0), got 'ten'"),
    ({"columns": {"age": {**PROFILE["columns"]["age"], "edges": [30.0, "NaN"]}}},  # type: ignore[index]
     "columns.age.edges: expected a list of numbers"),
    ({"columns": {"age": {**PROFILE["columns"]["age"], "edges": [40.0, 30.0]}}},  # type: ignore[index]
     "columns.age.edges: must be strictly increasing"),
    ({"columns": {"age": {**PROFILE["columns"]["age"], "fractions": [0.5, 0.5]}}},  # type: ignore[index]
     "columns.age.fractions: 2 edges need 3 fractions, got 2"),
    ({"columns": {"age": {**PROFILE["columns"]["age"], "fractions": [0.3, 0.3, 0.3]}}},  # type: ignore[index]
     "columns.age.fractions: fractions sum to 0.9, not 1"),
    ({"columns": {"age": {**PROFILE["columns"]["age"], "kind": "ordinal"}}},  # type: ignore[index]
     "columns.age.kind: expected numeric or categorical, got 'ordinal'"),
])
def test_a_reference_profile_of_the_wrong_shape_is_exit_2(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        change: dict[str, object], reason: str) -> None:
    data.write(tmp_path / "d.csv", 50)
    (tmp_path / "ref.json").write_text(json.dumps({**PROFILE, **change}))
    repo = _repo(tmp_path, "    - name: d\n      path: d.csv\n      reference: ref.json\n"
                           "      columns:\n        age: [drift]\n")
    code, _, err = _main(repo, monkeypatch, capsys, "data-test")
    assert (code, err) == (2, f"mlci.yaml:4: dataset 'd': reference ref.json: {reason}\n")


def test_a_nan_edge_in_a_reference_profile_is_exit_2(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    data.write(tmp_path / "d.csv", 50)
    (tmp_path / "ref.json").write_text(json.dumps(PROFILE).replace("40.0", "NaN"))
    repo = _repo(tmp_path, "    - name: d\n      path: d.csv\n      reference: ref.json\n"
                           "      columns:\n        age: [drift]\n")
    code, _, err = _main(repo, monkeypatch, capsys, "data-test")
    assert (code, err) == (2, "mlci.yaml:4: dataset 'd': reference ref.json: NaN is not a number a profile may hold\n")


def test_one_dataset_with_a_leakage_check_runs_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    data.write(tmp_path / "a.csv", 50, seed=1)
    data.write(tmp_path / "b.csv", 50, seed=2)
    repo = _repo(tmp_path, "    - name: a\n      path: a.csv\n      checks: [{leakage: {other: b, columns: [id], "
                           "max_ratio: 1}}]\n    - name: b\n      path: b.csv\n      checks: [{row_count: {min: 1}}]\n")
    code, out, err = _main(repo, monkeypatch, capsys, "data-test", "--dataset", "a", "--json")
    assert code == 0, err
    assert [(r["dataset"], r["check"]) for r in json.loads(out)["results"]] == [("a", "leakage")]


def test_ctrl_c_during_the_scan_exits_130_with_one_line(tmp_path: Path) -> None:
    """A real SIGINT while DuckDB scans: interrupted (130), never a failed check (1) or an environment error (3)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import duckdb
    big = tmp_path / "big.csv"
    duckdb.sql(f"COPY (SELECT range AS id, range % 97 AS age, hash(range) % 100000 AS income, md5(range::VARCHAR) "
               f"AS code FROM range(3000000)) TO '{big}' (HEADER)")  # ~2 s of scanning on one thread
    repo = _repo(tmp_path, "    - name: big\n      path: big.csv\n      columns:\n        id: [unique]\n"
                           "        code: [{regex: {pattern: '[0-9a-f]{8}(?:[0-9a-f]{4}){2,6}.*'}}, unique]\n"
                           "        age: [{quantile: {q: 0.3, min: 0}}, {quantile: {q: 0.7, min: 0}}]\n"
                           "        income: [{quantile: {q: 0.5, min: 0}}, {stddev: {min: 0}}]\n")
    (repo / "mlci.yaml").write_text((repo / "mlci.yaml").read_text() + "  threads: 1\n")
    proc = subprocess.Popen([sys.executable, "-m", "mlci", "data-test"], cwd=repo, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(  # wait until DuckDB reads the file, then a little more
            os.path.realpath(f"/proc/{proc.pid}/fd/{fd}") == str(big) for fd in _fds(proc.pid)):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    time.sleep(0.5)
    assert proc.poll() is None, "the scan ended before the signal: make the data bigger"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, err) == (130, "mlci: interrupted\n"), out


def _fds(pid: int) -> list[str]:
    import os
    try:
        return os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return []


def test_ctrl_c_during_a_postgres_query_cancels_it_and_exits_130(tmp_path: Path, postgres: PostgresServer) -> None:
    import signal
    import subprocess
    import sys
    import time

    postgres.execute("CREATE TABLE IF NOT EXISTS slow (a int)")
    repo = _repo(tmp_path, "    - name: d\n      dsn_env: WAREHOUSE_DSN\n      table: slow\n      checks:\n"
                           "        - sql: {query: 'SELECT 1 AS x FROM pg_sleep(60), {table}', max_rows: 0}\n")
    running = ("SELECT COUNT(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND state = 'active' "
               "AND pid <> pg_backend_pid()")
    proc = subprocess.Popen([sys.executable, "-m", "mlci", "data-test"], cwd=repo, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "WAREHOUSE_DSN": postgres.dsn})
    deadline = time.monotonic() + 30
    while postgres.execute(running) == [(0,)]:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, err) == (130, "mlci: interrupted\n"), out
    assert time.monotonic() - started < 10  # cancelled, not waited out
    assert postgres.execute(running) == [(0,)]  # cancelled on the server, not left running there


def test_a_postgres_dataset_without_psycopg_is_one_line_naming_the_extra(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import sys
    monkeypatch.setitem(sys.modules, "psycopg", None)  # what `import psycopg` finds when the extra is not installed
    monkeypatch.setenv("WAREHOUSE_DSN", "host=127.0.0.1 port=1 dbname=x")
    repo = _repo(tmp_path, "    - name: d\n      dsn_env: WAREHOUSE_DSN\n      table: t\n"
                           "      checks: [{row_count: {min: 1}}]\n")
    code, _, err = _main(repo, monkeypatch, capsys, "data-test")
    assert (code, err) == (3, "mlci: error: PostgreSQL datasets need psycopg: pip install 'mlci[postgres]'\n")


def test_a_repo_with_no_data_tests_skips_with_success_but_an_empty_suite_or_a_named_dataset_is_exit_2(
        tmp_path: Path) -> None:
    """The pipeline's data-test job passes in a repo that has no suite yet (as build and scan do); a suite file
    with no datasets, or `--dataset` with nothing configured, is still a config error."""
    (tmp_path / ".git").mkdir()
    (tmp_path / "mlci.yaml").write_text("version: 1\n")
    done = repos.run_mlci(tmp_path, "data-test", "--junit", "j.xml", "--md", "r.md")
    assert (done.returncode, done.stdout.strip()) == (0, "skipped: no data_tests in mlci.yaml"), done.stderr
    assert not (tmp_path / "j.xml").exists() and not (tmp_path / "r.md").exists()
    done = repos.run_mlci(tmp_path, "data-test", "--json")
    assert done.returncode == 0 and json.loads(done.stdout) == {"skipped": "no data_tests"}
    done = repos.run_mlci(tmp_path, "data-test", "--dataset", "d")
    assert done.returncode == 2 and "no datasets to test" in done.stderr
    (tmp_path / "suite.yaml").write_text("datasets: []\n")
    (tmp_path / "mlci.yaml").write_text("version: 1\ndata_tests:\n  file: suite.yaml\n")
    done = repos.run_mlci(tmp_path, "data-test")
    assert done.returncode == 2 and "data_tests: no datasets to test" in done.stderr, done.stderr
