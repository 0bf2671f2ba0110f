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


def test_structural_and_semantic_problems_come_in_one_pass(tmp_path: Path) -> None:
    problems = _problems(tmp_path, (
        "    - name: d\n"
        "      path: d.csv\n"
        "      colums: {}\n"                                         # structural: unknown key
        "      checks:\n"
        "        - row_count: {min: 5, max: 1}\n"                    # semantic, in the same dataset
        "        - leakage: {other: nowhere, columns: [id], max_count: ten}\n"  # both kinds in one check
        "    - name: d\n"                                            # a second dataset of that name
        "      path: e.csv\n"
        "      columns:\n"
        "        a: [{between: {min: .inf, max: ten}}, {regex: {pattern: 'a*+'}}]\n"
    ))
    assert problems == [
        "mlci.yaml:6: data_tests.datasets[0].colums: unknown key (did you mean 'columns'?)",
        "mlci.yaml:9: data_tests.datasets[0].checks[1].leakage.max_count: expected an integer, got str 'ten'",
        "mlci.yaml:13: data_tests.datasets[1].columns.a[0].between.max: expected a number, got str 'ten'",
        "mlci.yaml:4: dataset 'd': the name is used by 2 datasets",
        "mlci.yaml:8: dataset 'd': row_count: min is greater than max",
        "mlci.yaml:9: dataset 'd': leakage: other dataset 'nowhere' is not defined",
        "mlci.yaml:10: dataset 'd': the name is used by 2 datasets",
        "mlci.yaml:13: dataset 'd': a: between: min: must be a finite number (NaN and infinity are not; "
        "leave a bound out instead)",
        "mlci.yaml:13: dataset 'd': a: regex: RE2 refuses the pattern: bad repetition operator: *+",
    ]


def _one_check(tmp_path: Path, entry: str, level: str = "column") -> list[str]:
    where = "      columns:\n        a: [" + entry + "]\n" if level == "column" else "      checks: [" + entry + "]\n"
    return _problems(tmp_path, "    - name: d\n      path: d.csv\n" + where)


@pytest.mark.parametrize("pattern, reason", [
    ("a*+", "RE2 refuses the pattern: bad repetition operator: *+"),  # possessive
    ("(?>ab)c", "RE2 refuses the pattern: invalid perl operator: (?>"),  # atomic group
    ("x{1001}", "repetition counts above 255 are refused by PostgreSQL"),  # RE2's bound is 1000, PG's 255
    ("x{2,256}", "repetition counts above 255 are refused by PostgreSQL"),
    ("(ab", "RE2 refuses the pattern: missing ): (ab"),
    ("a{2,1}", "RE2 refuses the pattern: invalid repetition size: {2,1}"),
])
def test_patterns_re2_refuses_are_exit_2_at_load_time(tmp_path: Path, pattern: str, reason: str) -> None:
    assert _one_check(tmp_path, "{regex: {pattern: '" + pattern + "'}}") == [
        f"mlci.yaml:7: dataset 'd': a: regex: {reason}"]


def test_patterns_both_engines_accept_load(tmp_path: Path) -> None:
    (tmp_path / "mlci.yaml").write_text("version: 1\ndata_tests:\n  datasets:\n    - name: d\n      path: d.csv\n"
                                        "      columns:\n        a: [{regex: {pattern: '[a-z]{1,255}(?:-\\d+)?'}}]\n")
    assert cfg.load(None, tmp_path, environ={}).config.data_tests.datasets[0].columns["a"][0].kind == "regex"


FINITE = "must be a finite number (NaN and infinity are not; leave a bound out instead)"


@pytest.mark.parametrize("entry, level, expected", [
    ("{between: {min: .inf}}", "column", f"a: between: min: {FINITE}"),
    ("{between: {min: 0, max: .nan}}", "column", f"a: between: max: {FINITE}"),
    ("{mean: {max: -.inf}}", "column", f"a: mean: max: {FINITE}"),
    ("{quantile: {q: .nan, min: 1}}", "column", f"a: quantile: q: {FINITE}"),
    ("{allowed_values: {values: [1, .nan]}}", "column", f"a: allowed_values: values: {FINITE}"),
    ("{missing_ratio: {max: .nan}}", "column", f"a: missing_ratio: max: {FINITE}"),
    ("{allowed_values: {values: [100000000000000000000]}}", "column",
     "a: allowed_values: values: the number is outside the 64-bit integer range"),
    ("{freshness: {column: t, max_age_days: .inf}}", "dataset", f"freshness: max_age_days: {FINITE}"),
    ("{sql: {query: 'SELECT 1 FROM {table}', min: .nan}}", "dataset", f"sql: min: {FINITE}"),
])
def test_nan_and_infinity_never_reach_sql(tmp_path: Path, entry: str, level: str, expected: str) -> None:
    assert _one_check(tmp_path, entry, level) == [f"mlci.yaml:{7 if level == 'column' else 6}: dataset 'd': {expected}"]


def test_drift_thresholds_must_be_finite_and_ordered(tmp_path: Path) -> None:
    suite = ("    - name: d\n      path: d.csv\n      reference: r.json\n      columns:\n"
             "        a: [{drift: {warn: .inf}}, {drift: {warn: 0.3}}, {drift: {method: ks, warn: -1}}]\n")
    assert _problems(tmp_path, suite) == [
        f"mlci.yaml:8: dataset 'd': a: drift: warn: {FINITE}",
        "mlci.yaml:8: dataset 'd': a: drift: warn (0.3) is above fail (0.25); with a default, set both",
        "mlci.yaml:8: dataset 'd': a: drift: warn must not be negative",
    ]


@pytest.mark.parametrize("entry, level, expected", [
    ("{unique: {columns: []}}", "dataset", "unique: columns: name at least one column"),
    ("{leakage: {other: d, columns: [], max_count: 0}}", "dataset", "leakage: columns: name at least one column"),
    ("{allowed_values: {values: []}}", "column", "a: allowed_values: values: give at least one value"),
    ("{freshness: {column: t, max_age_days: -1}}", "dataset", "freshness: max_age_days must not be negative"),
    ("{sql: {query: 'SELECT 1 FROM {table}', max_rows: -1}}", "dataset", "sql: max_rows must not be negative"),
    ("{sql: {query: 'SELECT 1 FROM {table}', min: 2, max: 1}}", "dataset", "sql: min is greater than max"),
    ("{regex: {pattern: \"a\\0\"}}", "column", "a: regex: pattern: a NUL character cannot reach a database"),
])
def test_arguments_that_would_break_the_query(tmp_path: Path, entry: str, level: str, expected: str) -> None:
    assert _one_check(tmp_path, entry, level) == [f"mlci.yaml:{7 if level == 'column' else 6}: dataset 'd': {expected}"]


def test_leakage_across_places_is_exit_2_at_load_time(tmp_path: Path) -> None:
    suite = ("    - name: d\n      path: d.csv\n      checks: [{leakage: {other: t, columns: [id], max_count: 0}}]\n"
             "    - name: t\n      dsn_env: DB\n      table: t\n")
    assert _problems(tmp_path, suite) == [
        "mlci.yaml:6: dataset 'd': leakage: 't' must live in the same place (both files, or both PostgreSQL "
        "with the same dsn_env)"]


def test_types_a_spec_contradicts_are_exit_2(tmp_path: Path) -> None:
    suite = ("    - name: d\n      path: d.csv\n      checks:\n"
             "        - schema: {columns: {a: string, b: integer, t: integer}}\n"
             "        - schema: {columns: {b: float}}\n"
             "        - freshness: {column: t, max_age_days: 3}\n"
             "      columns:\n        a: [{between: {min: 0}}]\n        c: [{mean: {min: 0}}]\n")
    assert _problems(tmp_path, suite) == [
        "mlci.yaml:8: dataset 'd': schema: column 'b' is typed float here and integer at mlci.yaml:7",
        "mlci.yaml:9: dataset 'd': freshness: needs a date or timestamp column, but the schema at mlci.yaml:7 "
        "types 't' integer",
        "mlci.yaml:11: dataset 'd': a: between: needs a numeric column, but the schema at mlci.yaml:7 types 'a' string",
    ]


@pytest.mark.parametrize("setting, expected", [
    ("memory_limit: lots", "memory_limit: expected a size of at least 16MB such as 600MB, 2GB or 4GiB, got 'lots'"),
    ("memory_limit: 5 bytes", "memory_limit: expected a size of at least 16MB such as 600MB, 2GB or 4GiB, "
                              "got '5 bytes'"),
    ("threads: -1", "threads: must be between 1 and 1024 (leave it out to use every core), got -1"),
    ("threads: 0", "threads: must be between 1 and 1024 (leave it out to use every core), got 0"),
    ("bins: 100000", "bins: must be between 2 and 100, got 100000"),
    ("bins: 1", "bins: must be between 2 and 100, got 1"),
])
def test_settings_duckdb_would_refuse_are_exit_2(tmp_path: Path, setting: str, expected: str) -> None:
    (tmp_path / "mlci.yaml").write_text(f"version: 1\ndata_tests:\n  {setting}\n  datasets: []\n")
    with pytest.raises(ConfigError) as caught:
        cfg.load(None, tmp_path, environ={})
    assert caught.value.problems == [f"mlci.yaml:3: data_tests.{expected}"]


def test_settings_from_the_environment_get_the_same_rules(tmp_path: Path) -> None:
    (tmp_path / "mlci.yaml").write_text("version: 1\n")
    with pytest.raises(ConfigError) as caught:
        cfg.load(None, tmp_path, environ={"MLCI_DATA_TESTS_THREADS": "-1", "MLCI_DATA_TESTS_MEMORY_LIMIT": "lots",
                                          "MLCI_DATA_TESTS_BINS": "100000"})
    assert caught.value.problems == [
        "MLCI_DATA_TESTS_BINS: data_tests.bins: must be between 2 and 100, got 100000",
        "MLCI_DATA_TESTS_MEMORY_LIMIT: data_tests.memory_limit: expected a size of at least 16MB such as 600MB, "
        "2GB or 4GiB, got 'lots'",
        "MLCI_DATA_TESTS_THREADS: data_tests.threads: must be between 1 and 1024 (leave it out to use every core), "
        "got -1",
    ]
