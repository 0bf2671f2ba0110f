"""`mlci data-test` as users run it: exit codes, reports, bad input, unreachable sources, S3."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

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
