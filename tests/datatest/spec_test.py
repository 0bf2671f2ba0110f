"""Bad suites are exit 2 with one file:line per problem (through the real config loader)."""
from __future__ import annotations

from pathlib import Path

import pytest

from mlci import settings as cfg
from mlci.core.errors import ConfigError


def _problems(tmp_path: Path, suite: str) -> list[str]:
    (tmp_path / "mlci.yaml").write_text("version: 1\ndata_tests:\n  datasets:\n" + suite)
    with pytest.raises(ConfigError) as caught:
        cfg.load(None, tmp_path, environ={})
    return caught.value.problems


def test_a_valid_suite_parses_with_locations(tmp_path: Path) -> None:
    (tmp_path / "mlci.yaml").write_text(
        "version: 1\ndata_tests:\n  datasets:\n"
        "    - name: d\n      path: d.csv\n"
        "      checks:\n        - row_count: {min: 1}\n"
        "      columns:\n        a: [not_null, {between: {min: 0, max: 1}, severity: warn}]\n"
    )
    ds = cfg.load(None, tmp_path, environ={}).config.data_tests.datasets[0]
    assert ds.checks[0].kind == "row_count" and ds.checks[0].args.min == 1 and ds.checks[0].where == "mlci.yaml:7"
    between = ds.columns["a"][1]
    assert (between.kind, between.severity, between.args.max) == ("between", "warn", 1.0)


def test_unknown_check_wrong_type_and_column_named_twice(tmp_path: Path) -> None:
    problems = _problems(tmp_path, (
        "    - name: d\n"
        "      path: d.csv\n"
        "      checks:\n"
        "        - row_cnt: {min: 1}\n"
        "      columns:\n"
        "        a:\n"
        "          - between: {min: ten}\n"
        "        a: [not_null]\n"
    ))
    assert problems == [
        "mlci.yaml:7: data_tests.datasets[0].checks[0]: unknown dataset check 'row_cnt' (did you mean 'row_count'?)",
        "mlci.yaml:10: data_tests.datasets[0].columns.a[0].between.min: expected a number, got str 'ten'",
        "mlci.yaml:11: data_tests.datasets[0].columns.a: named twice",
    ]


@pytest.mark.parametrize("suite, expected", [
    ("    - name: d\n      path: d.csv\n      dsn_env: DB\n      table: t\n",
     "mlci.yaml:4: dataset 'd': give either `path` (files) or `dsn_env` with `table` or `query` (PostgreSQL)"),
    ("    - name: d\n      dsn_env: 'postgresql://u:pw@h/db'\n      table: t\n",
     "mlci.yaml:4: dataset 'd': dsn_env must name an environment variable holding the DSN, not the DSN"),
    ("    - name: d\n      path: d.csv\n      columns:\n        a: [{drift: {method: psi}}]\n",
     "mlci.yaml:7: dataset 'd': a: drift: needs the dataset's `reference` (a profile JSON or a dataset path)"),
    ("    - name: d\n      path: d.csv\n      checks:\n        - leakage: {other: x, columns: [id], max_count: 0}\n",
     "mlci.yaml:7: dataset 'd': leakage: other dataset 'x' is not defined"),
    ("    - name: d\n      path: d.csv\n      checks:\n        - sql: {query: 'SELECT 1', max_rows: 0}\n",
     "mlci.yaml:7: dataset 'd': sql: the query must read the dataset as {table}"),
    ("    - name: d\n      path: d.csv\n      columns:\n        a: [{regex: {pattern: '(?=x)y'}}]\n",
     "mlci.yaml:7: dataset 'd': a: regex: lookaround is not supported by RE2"),
    ("    - name: d\n      path: d.csv\n      columns:\n        a: [{between: {min: 5, max: 1}}]\n",
     "mlci.yaml:7: dataset 'd': a: between: min is greater than max"),
    ("    - name: d\n      path: d.csv\n      columns:\n        a: [between]\n",
     "mlci.yaml:7: dataset 'd': a: between: give min, max or both"),
    ("    - name: d\n      path: d.csv\n      columns:\n        a: [regex]\n",
     "mlci.yaml:7: data_tests.datasets[0].columns.a[0].regex: needs arguments"),
    ("    - name: d\n      path: d.csv\n      checks:\n        - freshness: {column: t, min_date: 'yesterday'}\n",
     "mlci.yaml:7: dataset 'd': freshness: min_date must be an ISO date (YYYY-MM-DD), got 'yesterday'"),
])
def test_semantic_problems(tmp_path: Path, suite: str, expected: str) -> None:
    assert _problems(tmp_path, suite) == [expected]


def test_the_dsn_itself_is_never_echoed(tmp_path: Path) -> None:
    problems = _problems(tmp_path, "    - name: d\n      dsn_env: 'postgresql://u:hunter2@h/db'\n      table: t\n")
    assert "hunter2" not in "\n".join(problems)


def test_suite_in_its_own_file_reports_that_file(tmp_path: Path) -> None:
    (tmp_path / "mlci.yaml").write_text("version: 1\ndata_tests:\n  file: checks.yaml\n")
    (tmp_path / "checks.yaml").write_text("datasets:\n  - name: d\n    path: d.csv\n    colums: {}\n")
    with pytest.raises(ConfigError) as caught:
        cfg.load(None, tmp_path, environ={})
    assert caught.value.problems == [
        "checks.yaml:4: datasets[0].colums: unknown key (did you mean 'columns'?)"]
