"""Every check type on real DuckDB (files) and real PostgreSQL (tables): same data, same results."""
from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest

from mlci import settings as cfg
from mlci.datatest.run import Result, run_suite
from tests.datatest import data
from tests.testing.postgres import PostgresServer, write_csv

TODAY = datetime.date(2025, 11, 1)
CHECKS = """\
      checks:
        - row_count: {min: 1000, max: 5000}
        - row_count: {name: too few rows, min: 3000}
        - schema: {columns: {id: integer, email: string, income: float, created: date, flag: boolean}}
        - schema: {name: exact schema, exact: true, columns: {id: integer, age: integer}}
        - unique: {columns: [id]}
        - unique: {name: composite key, columns: [id, grp]}
        - freshness: {column: created, min_date: '2025-11-01'}
        - freshness: {name: stale, column: created, max_age_days: 30}
        - sql: {name: rich, query: 'SELECT id FROM {table} WHERE income > 90000', max_rows: 1000}
        - sql: {name: mean score, query: 'SELECT AVG(score) FROM {table}', min: 0.4, max: 0.6}
        - leakage: {other: other, columns: [id], max_ratio: 0.1}
        - leakage: {name: no overlap, other: other, columns: [id, grp], max_count: 0}
      columns:
        id: [not_null, unique]
        age:
          - not_null
          - missing_ratio: {max: 0.05}
          - between: {min: 18, max: 79}
          - mean: {min: 40, max: 60}
          - stddev: {min: 1, max: 30}
          - quantile: {q: 0.9, min: 70, max: 80}
          - drift: {method: psi}
          - drift: {method: ks, warn: 0.01, fail: 0.5}
        income:
          - between: {min: 0, severity: warn, max: 50000}
          - drift: {method: psi}
        score: [{drift: {method: ks}}, {drift: {method: js}}]
        region:
          - allowed_values: {values: [north, south, east]}
          - drift: {method: psi}
          - drift: {method: js}
        email:
          - regex: {pattern: '[a-z0-9.]+@[a-z.]+'}
          - allowed_values: {name: numbers in text, values: [1, 2.5, true]}
        flag:
          - allowed_values: {values: [true, false]}
        missing_col: [not_null]
"""


def _suite(tmp_path: Path, current: str, other: str, reference: Path) -> Any:
    text = (f"version: 1\ndata_tests:\n  datasets:\n    - name: current\n{current}      reference: {reference}\n"
            + CHECKS + f"    - name: other\n{other}")
    (tmp_path / "mlci.yaml").write_text(text)
    return cfg.load(None, tmp_path, environ={}).config.data_tests


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("data")
    paths = {"current": data.write(base / "current.csv", 2000, seed=1, shift=0.3),
             "other": data.write(base / "other.csv", 500, seed=2),
             "reference": data.write(base / "reference.csv", 3000, seed=3)}
    from mlci.datatest.profile import build_profile
    from mlci.datatest.sources import DuckSession
    from mlci.datatest.spec import Dataset, DataTests
    source = DuckSession(DataTests()).open(Dataset("r", path=str(paths["reference"])), base, detect=True)
    profile = build_profile(source, 10, "r")
    paths["profile"] = base / "reference.profile.json"
    paths["profile"].write_text(profile.to_json())
    return paths


def _duckdb_results(tmp_path: Path, files: dict[str, Path]) -> list[Result]:
    suite = _suite(tmp_path, f"      path: {files['current']}\n", f"      path: {files['other']}\n", files["profile"])
    return run_suite(suite, tmp_path, today=TODAY)


def _by_name(results: list[Result]) -> dict[str, Result]:
    return {f"{r.dataset}/{r.name}/{r.check}/{json.dumps(r.expected)}": r for r in results}


def test_duckdb_results_on_planted_defects(tmp_path: Path, files: dict[str, Path]) -> None:
    results = {f"{r.name}|{r.expected}": r for r in _duckdb_results(tmp_path, files)}
    status = {key.split("|")[0]: r.status for key, r in results.items()}
    observed = {key.split("|")[0]: r.observed for key, r in results.items()}
    assert status["row_count"] == "pass" and status["too few rows"] == "fail"
    assert status["schema"] == "pass"
    assert status["exact schema"] == "fail" and observed["exact schema"]["wrong_type"] == {}
    assert observed["exact schema"]["unexpected"] == ["created", "email", "flag", "grp", "income", "region", "score"]
    assert observed["unique"] == {"duplicates": 1} and status["composite key"] == "pass"
    assert status["freshness"] == "fail" and observed["freshness"] == {"age_days": 5}  # never the date itself
    assert status["stale"] == "pass" and observed["stale"]["age_days"] == 5
    assert status["id: not_null"] == "pass" and observed["id: unique"] == {"duplicates": 1}
    assert observed["age: not_null"] == {"nulls": 50} and status["age: missing_ratio"] == "pass"
    assert status["income: between"] == "warn"  # failed, but severity warn
    assert set(observed["income: between"]) == {"out_of_range", "out_of_range_ratio"}  # no min, no max
    assert status["region: allowed_values"] == "fail"  # 'west' only in the shifted data
    assert observed["email: regex"] == {"not_matching": 40}
    assert observed["numbers in text"] == {"not_allowed": 2000}  # compared as text: no type error
    assert status["flag: allowed_values"] == "pass"
    assert status["missing_col: not_null"] == "fail"
    assert observed["missing_col: not_null"] == {"missing_column": "missing_col"}
    assert status["no overlap"] == "fail" and status["leakage"] == "fail"
    drifts = {k: r for k, r in results.items() if r.check == "drift"}
    assert {r.status for r in drifts.values()} >= {"fail", "pass"}
    assert results[next(k for k in drifts if k.startswith("region") and "js" in k)].observed["js"] > 0.1


def test_postgres_gives_the_same_results_for_every_check(
    tmp_path: Path, files: dict[str, Path], postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    data.load(postgres, "current", files["current"])
    data.load(postgres, "other", files["other"])
    monkeypatch.setenv("TEST_PG_DSN", postgres.dsn)
    suite = _suite(tmp_path, "      dsn_env: TEST_PG_DSN\n      table: current\n",
                   "      dsn_env: TEST_PG_DSN\n      query: SELECT * FROM other\n", files["profile"])
    on_postgres = _by_name(run_suite(suite, tmp_path, today=TODAY))
    on_duckdb = _by_name(_duckdb_results(tmp_path, files))
    assert set(on_postgres) == set(on_duckdb)
    kinds = {r.check for r in on_duckdb.values()}
    assert kinds == {"row_count", "schema", "unique", "freshness", "sql", "leakage", "not_null", "missing_ratio",
                     "between", "mean", "stddev", "quantile", "drift", "allowed_values", "regex"}
    for key, duck in on_duckdb.items():
        pg = on_postgres[key]
        assert (pg.status, key) == (duck.status, key)
        assert _approx(pg.observed) == _approx(duck.observed), key


def _approx(value: Any) -> Any:
    if isinstance(value, float):
        return pytest.approx(value, rel=1e-9, abs=1e-9)
    if isinstance(value, dict):
        return {k: _approx(v) for k, v in value.items()}
    return value


def test_no_row_value_ever_reaches_a_report(tmp_path: Path, files: dict[str, Path]) -> None:
    from mlci.datatest import reports
    results = _duckdb_results(tmp_path, files)
    for render in (reports.console, reports.junit, reports.as_json, reports.markdown):
        assert data.SECRET_VALUE not in render(results)


def test_postgres_refuses_the_repetition_counts_the_loader_refuses(postgres: PostgresServer) -> None:
    """The loader's bound (spec rules: 255) is PostgreSQL's own, found on the real server."""
    import psycopg

    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        assert conn.execute("SELECT 'aa' ~ '^(?:a{1,255})$'").fetchone() == (True,)
        with pytest.raises(psycopg.errors.InvalidRegularExpression):
            conn.execute("SELECT 'aa' ~ '^(?:a{1,256})$'")


def _edge_data(base: Path, source: Path) -> dict[str, Path]:
    """The current data's columns and types with no row ('empty'), and with 5 rows whose every value but the
    id is NULL ('nulls'): Parquet for DuckDB (typed as the CSV is), CSV for PostgreSQL's typed tables."""
    import duckdb

    out: dict[str, Path] = {}
    with duckdb.connect() as conn:
        conn.execute(f"CREATE TABLE t AS SELECT * FROM read_csv('{source}') LIMIT 5")
        nulls = ", ".join(f"CAST(NULL AS {kind}) AS {name}" for name, kind, *_ in conn.execute("DESCRIBE t").fetchall()
                          if name != "id")
        for name, select in (("empty", "SELECT * FROM t LIMIT 0"), ("nulls", f"SELECT * REPLACE ({nulls}) FROM t")):
            out[name] = base / f"{name}.parquet"
            conn.execute(f"COPY ({select}) TO '{out[name]}' (FORMAT parquet)")
    out["empty.csv"] = write_csv(base / "empty.csv", list(data.COLUMNS), [])
    out["nulls.csv"] = write_csv(base / "nulls.csv", list(data.COLUMNS), [[i + 1] + [None] * 8 for i in range(5)])
    return out


def _counts(observed: Any) -> list[Any]:
    """The values observed, but for a statistic withheld (None by design: there are too few values)."""
    if isinstance(observed, dict):
        return [] if observed.get("withheld") else [v for value in observed.values() for v in _counts(value)]
    return [observed]


@pytest.mark.parametrize("edge", ["empty", "nulls"])
def test_no_rows_or_only_nulls_give_counts_and_the_same_verdicts_on_both_engines(
    edge: str, tmp_path: Path, files: dict[str, Path], postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DuckDB's count_if and PostgreSQL's SUM are NULL over no rows (count_if also over an all-NULL column): the
    checks that count used to fail with `None` (DuckDB's `between` on NULLs too, where PostgreSQL passed) and
    a drift check was an internal error (exit 70). A count is 0; a drift with no value to compare fails."""
    edges = _edge_data(tmp_path, files["current"])
    data.load(postgres, "current", edges[f"{edge}.csv"])
    data.load(postgres, "other", files["other"])
    monkeypatch.setenv("TEST_PG_DSN", postgres.dsn)
    duck = _by_name(run_suite(_suite(tmp_path, f"      path: {edges[edge]}\n", f"      path: {files['other']}\n",
                                     files["profile"]), tmp_path, today=TODAY))
    pg = _by_name(run_suite(_suite(tmp_path, "      dsn_env: TEST_PG_DSN\n      table: current\n",
                                   "      dsn_env: TEST_PG_DSN\n      table: other\n", files["profile"]),
                            tmp_path, today=TODAY))
    assert set(duck) == set(pg)
    for key, result in duck.items():
        assert (pg[key].status, key) == (result.status, key)
        assert _approx(pg[key].observed) == _approx(result.observed), key
        assert None not in _counts(result.observed), (key, result.observed)
    by_check = {(r.name, r.check): r for r in duck.values() if r.dataset == "current"}
    for check in ("age: between", "region: allowed_values", "email: regex"):  # every non-null value: there is none
        assert by_check[(check, check.split(": ")[1])].status == "pass", by_check[(check, check.split(": ")[1])]
    assert by_check[("age: not_null", "not_null")].observed == {"nulls": 0 if edge == "empty" else 5}
    drifts = [r for r in duck.values() if r.dataset == "current" and r.check == "drift"]
    assert drifts and all(r.status == "fail" and r.observed == {"values": 0} for r in drifts), drifts
    assert by_check[("freshness", "freshness")].observed == {"dates": 0}  # failed: no date is fresh


def test_a_failing_query_over_a_value_with_quotes_names_no_part_of_it(
    tmp_path: Path, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both engines quote the value a cast refused without escaping the quotes it holds (`'O'Brien'`): the
    error shown used to keep whatever followed the value's own quote, in every report."""
    from mlci.datatest import reports

    values = ["O'Brien ZQXSENT-1", 'say "ZQXSENT-2" now', "two'quotes' ZQXSENT-3"]
    csv_path = write_csv(tmp_path / "names.csv", ["id", "name"],
                         [[1, "x"], *([i + 2, v] for i, v in enumerate(values))])
    server_csv = write_csv(tmp_path / "one.csv", ["id", "name"], [[1, values[0]], [2, values[1]], [3, values[2]]])
    postgres.execute('DROP TABLE IF EXISTS "names"')
    postgres.load_csv("names", server_csv, {"id": "bigint", "name": "text"})
    monkeypatch.setenv("TEST_PG_DSN", postgres.dsn)
    query = "SELECT MAX(CAST(name AS INTEGER)) FROM {table} WHERE name <> 'x'"
    for where in (f"path: {csv_path}", "dsn_env: TEST_PG_DSN\n      table: names"):
        (tmp_path / "mlci.yaml").write_text(
            f"version: 1\ndata_tests:\n  datasets:\n    - name: names\n      {where}\n      checks:\n"
            f"        - sql: {{query: \"{query}\", min: 0}}\n")
        results = run_suite(cfg.load(None, tmp_path, environ={}).config.data_tests, tmp_path, today=TODAY)
        (result,) = results
        assert result.status == "fail" and "'…'" in result.observed["error"], result
        for render in (reports.console, reports.junit, reports.as_json, reports.markdown):
            assert "ZQXSENT" not in render(results) and "Brien" not in render(results)
        (tmp_path / "mlci.yaml").write_text(  # a name the query gets wrong: raised before a row is read
            f"version: 1\ndata_tests:\n  datasets:\n    - name: names\n      {where}\n      checks:\n"
            "        - sql: {query: \"SELECT MAX(nme) FROM {table}\", min: 0}\n")
        (typo,) = run_suite(cfg.load(None, tmp_path, environ={}).config.data_tests, tmp_path, today=TODAY)
        error = typo.observed["error"]  # the spec's name is no row value: shown, to say which one is wrong
        assert '"nme"' in error and ("not found in FROM clause" in error or error.endswith("does not exist")), error
