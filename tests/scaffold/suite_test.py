"""The suite `mlci init --from-data` derives from a profile: it passes on the data it came from, and nothing in
what gets committed is a row value (no exact min or max, no value of a column that is not a small category set)."""
from __future__ import annotations

import collections
import csv
import json
import math
import string
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from mlci import settings as cfg
from mlci.datatest import drift
from mlci.datatest.compile import MIN_VALUES
from mlci.datatest.run import run_suite
from mlci.scaffold import render, suite
from mlci.scaffold.suite import _Column


def _scaffold(repo: Path, data_path: str) -> tuple[suite.Generated, str]:
    """The suite and profile as `mlci init` writes them (mlci.yaml, data-tests.yaml, the profile JSON)."""
    generated = suite.generate(repo, data_path, "reference/d.profile.json", bins=10)
    text = render.render("data-tests.yaml.j2", version="0", data_path=data_path, name=generated.name,
                         reference=generated.reference, rows=generated.rows, schema=generated.schema,
                         exact=generated.exact, columns=generated.columns, max_categories=drift.MAX_CATEGORIES)
    (repo / "mlci.yaml").write_text("version: 1\ndata_tests: {file: data-tests.yaml}\n")
    (repo / "data-tests.yaml").write_text(text)
    (repo / "reference").mkdir(exist_ok=True)
    (repo / generated.reference).write_text(generated.profile.to_json())
    return generated, text


def _statuses(repo: Path) -> dict[str, str]:
    """Every check's status, the suite loaded and run as `mlci config check` and `mlci data-test` do."""
    loaded = cfg.load(str(repo / "mlci.yaml"), repo)
    return {f"{r.column}: {r.check}": r.status for r in run_suite(loaded.config.data_tests, repo)}


def _data_numbers(suite_doc: Any, profile: Any) -> list[float]:
    """Every number in the committed files that stands for values of the data (not a count or a ratio): the
    suite's range bounds and allowed values, the profile's edges and category labels read as numbers."""
    (dataset,) = suite_doc["datasets"]
    found: list[float] = []
    for checks in dataset["columns"].values():
        for check in checks:
            args = next(iter(check.values())) if isinstance(check, dict) else {}
            found += [float(args[k]) for k in ("min", "max") if k in args]
            found += [float(v) for v in args.get("values", []) if isinstance(v, (int, float))]
    for col in profile["columns"].values():
        found += col["edges"] + [float(c) for c in col["categories"] if _is_number(c)]
    return found


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# Columns: integers, decimals (possibly with NULLs), a small category set, and free text (high cardinality).
_ints = st.lists(st.integers(-10**12, 10**12), min_size=2, max_size=60)
_floats = st.lists(st.one_of(st.none(), st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False)),
                   min_size=2, max_size=60)
_words = st.text(string.ascii_letters + string.digits + " ,;'\"-é", min_size=1, max_size=12)


@settings(max_examples=15, deadline=None, derandomize=True, phases=(Phase.explicit, Phase.generate),
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ints=_ints, floats=_floats, categories=st.lists(_words, min_size=1, max_size=4, unique=True),
       data=st.data())
def test_the_generated_suite_passes_on_its_data_and_commits_no_extreme(
        tmp_path_factory: pytest.TempPathFactory, ints: list[int], floats: list[float | None],
        categories: list[str], data: st.DataObject) -> None:
    repo = tmp_path_factory.mktemp("repo")
    n = min(len(ints), len(floats))
    labels = [f"k:{data.draw(st.sampled_from(categories))}" for _ in range(n)]  # text, never a number or date
    free = [f"secret-{i}-{data.draw(_words)}" for i in range(n)]  # every value distinct: never a category
    with (repo / "d.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["count", "amount", "kind", "note"])
        writer.writerows([a, "" if b is None else repr(b), c, d]
                         for a, b, c, d in zip(ints, floats, labels, free, strict=False))
    generated, text = _scaffold(repo, "d.csv")
    statuses = _statuses(repo)
    assert statuses and set(statuses.values()) == {"pass"}, statuses
    committed = yaml.safe_load(text)
    profile = json.loads((repo / generated.reference).read_text())
    written = _data_numbers(committed, profile)
    present = [b for b in floats[:n] if b is not None]
    for column, values in (("count", ints[:n]), ("amount", present)):
        if values:
            assert min(values) not in written and max(values) not in written, column
    seen = collections.Counter(labels)
    common = sorted(label for label, times in seen.items() if times >= MIN_VALUES)  # rarer ones are near a row's
    kind = {next(iter(c)): c[next(iter(c))] for c in committed["datasets"][0]["columns"]["kind"] if isinstance(c, dict)}
    named = profile["columns"].get("kind", {}).get("categories", {})
    assert sorted(named) == (common if len(seen) <= drift.MAX_CATEGORIES else [])
    if common and len(common) == len(seen) <= drift.MAX_CATEGORIES:
        assert sorted(kind["allowed_values"]["values"]) == common
    else:
        assert "allowed_values" not in kind
    everything = text + (repo / generated.reference).read_text()
    assert not any(value in everything for value in free)


def test_types_ranges_nulls_and_categories(tmp_path: Path) -> None:
    rows = [[i, i * 1.5 if i % 10 else None, ["red", "green"][i % 2], f"2025-01-{1 + i % 28:02d}", i % 3 == 0]
            for i in range(200)]
    with (tmp_path / "d.csv").open("w", newline="") as out:
        csv.writer(out).writerows([["id", "x", "colour", "day", "flag"], *rows])
    generated, _ = _scaffold(tmp_path, "d.csv")
    assert generated.schema == {"id": "integer", "x": "float", "colour": "string", "day": "date", "flag": "boolean"}
    assert generated.exact
    checks = {c: dict(entries) for c, entries in generated.columns.items()}
    assert checks["id"]["not_null"] is None
    low, high = checks["id"]["between"]["min"], checks["id"]["between"]["max"]
    assert isinstance(low, int) and isinstance(high, int) and low < 0 and high > 199
    assert checks["x"]["missing_ratio"] == {"max": 0.15}  # 10% NULL seen, plus half of it
    assert checks["colour"]["allowed_values"] == {"values": ["green", "red"]}
    assert checks["flag"]["allowed_values"] == {"values": [False, True]}
    assert set(checks["day"]) == {"not_null"}  # no range of dates: those are row values
    assert set(_statuses(tmp_path).values()) == {"pass"}


def test_a_value_seen_fewer_than_ten_times_is_never_committed(tmp_path: Path) -> None:
    """The module's rule was "some value repeats": one person's name beside 100 `common` went into the value set
    and the profile. A value seen fewer than MIN_VALUES times counts as "other", and the column has no value set."""
    rows = [[i, "common" if i < 100 else "ZQX Rare Person" if i == 100 else "ZQX Few", "a" if i % 2 else "b"]
            for i in range(100 + MIN_VALUES)]
    with (tmp_path / "d.csv").open("w", newline="") as out:
        csv.writer(out).writerows([["id", "name", "side"], *rows])
    generated, text = _scaffold(tmp_path, "d.csv")
    everything = text + (tmp_path / generated.reference).read_text()
    assert "ZQX" not in everything
    name = generated.profile.columns["name"]
    assert name.categories == {"common": round(100 / len(rows), 8)} and name.other == round(1 - 100 / len(rows), 8)
    checks = {c: dict(entries) for c, entries in generated.columns.items()}
    assert "allowed_values" not in checks["name"] and checks["side"]["allowed_values"] == {"values": ["a", "b"]}
    assert set(_statuses(tmp_path).values()) == {"pass"}  # the drift on `name` too: "other" is the rare values' share


def test_a_parquet_file_is_profiled_with_its_own_types(tmp_path: Path) -> None:
    duckdb.sql(f"COPY (SELECT i AS n, i / 7.0 AS r, CAST(i % 3 AS VARCHAR) AS g FROM range(100) t(i)) "
               f"TO '{tmp_path / 'd.parquet'}' (FORMAT parquet)")
    generated, _ = _scaffold(tmp_path, "d.parquet")
    assert generated.schema == {"n": "integer", "r": "float", "g": "string"}
    assert set(_statuses(tmp_path).values()) == {"pass"}


def test_a_column_of_unique_text_gets_no_value_set_and_stays_out_of_the_profile(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("name,n\n" + "".join(f"person{i},{i % 2}\n" for i in range(30)))
    generated, text = _scaffold(tmp_path, "d.csv")
    assert dict(generated.columns["name"]) == {"not_null": None}
    assert "name" not in generated.profile.columns and "person" not in text + generated.profile.to_json()


@pytest.mark.parametrize("column, integer", [
    (_Column(0, lowest=0, highest=100, q_low=1.0, q_high=99.0), True),
    (_Column(0, lowest=0.1, highest=0.9, q_low=0.1, q_high=0.9), False),  # 0.1 - 0.08 rounds to 0.0 < 0.1
    (_Column(0, lowest=5, highest=5, q_low=5.0, q_high=5.0), True),  # a constant
    (_Column(0, lowest=-3.0e-9, highest=2.5e-9, q_low=-2.9e-9, q_high=2.4e-9), False),
    (_Column(0, lowest=1e15, highest=1e15 + 2, q_low=1e15, q_high=1e15 + 2), True),
    (_Column(0, lowest=1e15 + 0.125, highest=1e15 + 0.25, q_low=1e15 + 0.125, q_high=1e15 + 0.25), False),
])
def test_bounds_lie_strictly_beyond_the_extremes_as_the_yaml_file_holds_them(column: _Column, integer: bool) -> None:
    bounds = suite.widened(column, integer)
    assert bounds is not None
    low, high = bounds
    assert low < column.lowest and high > column.highest  # type: ignore[operator]
    assert not integer or (isinstance(low, int) and isinstance(high, int))
    assert yaml.safe_load(render.yaml_value({"min": low, "max": high})) == {"min": low, "max": high}


@pytest.mark.parametrize("column", [
    _Column(3), _Column(0, lowest=0.0, highest=math.inf, q_low=0.0, q_high=1.0),
    _Column(0, lowest=0.0, highest=math.nan, q_low=0.0, q_high=math.nan),
    _Column(0, lowest=0, highest=2 ** 60, q_low=0.0, q_high=2.0 ** 60),
])
def test_no_range_without_finite_exactly_representable_values(column: _Column) -> None:
    assert suite.widened(column, integer=True) is None


def test_profile_edges_at_an_extreme_are_merged_away() -> None:
    col = drift.ColumnProfile("numeric", 10, 0, edges=(0.0, 1.0, 2.0, 9.0), fractions=(0.3, 0.2, 0.2, 0.3, 0.0))
    private = suite.private_profile(drift.Profile(10, {"x": col}), {"x": _Column(0, lowest=0, highest=9)})
    assert private.columns["x"].edges == (1.0, 2.0)
    assert private.columns["x"].fractions == (0.5, 0.2, 0.3)


def test_values_render_as_one_line_of_yaml_that_reads_back() -> None:
    for value in ["yes", "1.0", "a: b", "#x", "line\nbreak", "\x1b[31m", "- x", "<<", "", "~", "é", '"q"', "'s'",
                  {"values": ["on", "null", "a\u2028b"]}, 1.0e-07, -0.0, 10**15]:
        text = render.yaml_value(value)
        assert "\n" not in text and yaml.safe_load(text) == value, (value, text)
