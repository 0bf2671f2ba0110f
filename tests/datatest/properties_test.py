"""Property: whatever check arguments the suite loader accepts, the compiled checks run on real DuckDB and
every report renders; the loader's only other answer is exit 2 (the core's property tests cover the YAML
itself: tags, nesting, aliases, unknown keys; these cover what the values mean to the checks)."""
from __future__ import annotations

import dataclasses
import datetime
import json
import xml.etree.ElementTree as ET
from typing import Any

import hypothesis
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlci import settings as cfg
from mlci.core.errors import ConfigError
from mlci.datatest import reports, spec
from mlci.datatest.run import run_suite
from mlci.datatest.sources import clean_error, without_quoted

CSV = "a,b,s,d,t\n1,1.5,north,2025-01-02,x\n2,,south,2025-03-04,y\n,2.5,it's,,z\n3,-1e300,\"q,\"\"x\"\"\",2024-12-31,\n"
COLUMNS = ("a", "b", "s", "d", "t", "missing", 'we"ird')
NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**70, 2**70),
                    st.sampled_from([0, 1, -1, 0.5, 1e-300, 1e300, 2**63, 2**63 - 1]))
TEXTS = st.one_of(st.text(max_size=12), st.sampled_from(["x", "it's", "a'b\"c", "\0", "{table}", "2025-01-01",
                                                         "[a-z]+", "a*+", "(?>a)", "x{1001}", "\\d{2,3}"]))
SCALARS = st.one_of(NUMBERS, TEXTS, st.booleans(), st.none())


FINITE = st.one_of(st.integers(-1000, 1000), st.floats(-1e6, 1e6), st.sampled_from([0, 0.5, 1e300, -1e-300]))
RATIOS = st.one_of(st.floats(0, 1), st.sampled_from([0, 1, 0.25, -0.5, 1.5]))
QUERIES = st.sampled_from(["SELECT COUNT(*) FROM {table}", "SELECT a FROM {table} WHERE a > 1", "SELECT s FROM {table}",
                           "SELECT AVG(b) FROM {table}", "SELEC {table}", "SELECT 1/0 FROM {table}", "SELECT 1",
                           "SELECT d FROM {table} LIMIT 1", "SELECT * FROM {table}"])
BY_NAME: dict[str, st.SearchStrategy[Any]] = {
    "min": FINITE, "max": FINITE, "q": RATIOS, "warn": RATIOS, "fail": RATIOS, "max_ratio": RATIOS,
    "max_rows": st.integers(-1, 5), "max_count": st.integers(-1, 5), "max_age_days": st.floats(0, 1e4),
    "column": st.sampled_from(COLUMNS), "columns": st.lists(st.sampled_from(COLUMNS), max_size=3),
    "values": st.lists(SCALARS, max_size=4), "pattern": TEXTS, "query": QUERIES, "other": st.just("d"),
    "method": st.sampled_from(["psi", "ks", "js"]),
    "min_date": st.sampled_from(["2025-01-01", "2024-12-31", "1999-01-01", "yesterday"]),
    "exact": st.booleans(),
}


def _value(name: str, hint: Any) -> st.SearchStrategy[Any]:
    """Values of the argument's own type (the loader's type checks are the core's properties), sometimes
    hostile ones of that type: NaN, infinities, 2**70, quotes, NUL, patterns RE2 refuses."""
    text = str(hint)
    if "dict" in text:
        return st.dictionaries(st.sampled_from(COLUMNS), st.sampled_from(
            ["integer", "float", "string", "boolean", "date", "timestamp"]), max_size=3)
    if "float" in text:
        return st.one_of(*[BY_NAME[name]] * 4, st.floats(allow_nan=True, allow_infinity=True))
    if "int" in text:
        own = BY_NAME[name] if name.startswith("max_") else st.integers(0, 5000)
        return st.one_of(*[own] * 4, st.integers(-2**70, 2**70))
    if name == "other":
        return BY_NAME[name]
    if text.startswith("str"):
        return st.one_of(*[BY_NAME[name]] * 4, TEXTS)
    return BY_NAME[name]


RANGES = [("min",), ("max",), ("min", "max")]
SHAPES = {"leakage": [("max_count",), ("max_ratio",)], "sql": [("max_rows",), *RANGES],
          "freshness": [("min_date",), ("max_age_days",)], "row_count": RANGES, "between": RANGES, "mean": RANGES,
          "stddev": RANGES, "quantile": RANGES, "schema": [(), ("exact",)], "drift": [(), ("method", "warn", "fail")]}


@st.composite
def _check(draw: st.DrawFn, registry: dict[str, type]) -> Any:
    kind = draw(st.sampled_from(sorted(registry)))
    fields = dataclasses.fields(registry[kind])
    required = [f.name for f in fields if f.default is dataclasses.MISSING]
    optional = [f.name for f in fields if f.default is not dataclasses.MISSING]
    shapes = st.sampled_from(SHAPES.get(kind, [tuple(optional)]))
    anything = st.lists(st.sampled_from(optional), unique=True) if optional else st.just([])
    chosen = required + list(draw(st.one_of(*[shapes] * 6, anything)))
    args = {f.name: draw(_value(f.name, f.type)) for f in fields if f.name in chosen}
    return {kind: args} if args else kind


SUITES = st.fixed_dictionaries({
    "checks": st.lists(_check(spec.DATASET_CHECKS), max_size=2),
    "columns": st.dictionaries(st.sampled_from(COLUMNS), st.lists(_check(spec.COLUMN_CHECKS), min_size=1, max_size=2),
                               max_size=2),
    "show_values": st.booleans(),
})


@settings(derandomize=True, max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dataset=SUITES)
def test_what_the_loader_accepts_runs_and_renders(tmp_path_factory: pytest.TempPathFactory,
                                                  dataset: dict[str, Any]) -> None:
    base = tmp_path_factory.mktemp("suite")
    (base / "d.csv").write_text(CSV)
    drifts = any("drift" in str(c) for cs in dataset["columns"].values() for c in cs)
    ds = {"name": "d", "path": "d.csv", **({"reference": "d.csv"} if drifts else {}), **dataset}
    (base / "mlci.yaml").write_text(yaml.safe_dump({"version": 1, "data_tests": {"datasets": [ds]}}))
    try:
        suite = cfg.load(None, base, environ={}).config.data_tests
    except ConfigError as exc:
        assert exc.problems and all(p.startswith(("mlci.yaml:", "MLCI_")) for p in exc.problems), exc.problems
        hypothesis.event("refused")
        return
    hypothesis.event("ran")
    results = run_suite(suite, base, today=datetime.date(2025, 6, 1))
    assert len(results) >= len(suite.datasets[0].checks) + sum(map(len, suite.datasets[0].columns.values()))
    json.loads(reports.as_json(results))
    ET.fromstring(reports.junit(results).encode())
    assert reports.console(results) and reports.markdown(results)



_UNQUOTED = st.text(st.characters(blacklist_characters="'\"\x85", blacklist_categories=("Cs", "Cc", "Zl", "Zp")),
                    max_size=30)  # no quote, nothing str.splitlines() splits at
_VALUES = st.text(st.characters(blacklist_categories=("Cs",)))


@given(prefix=_UNQUOTED, value=_VALUES, suffix=_UNQUOTED, rest=st.text(max_size=20).map(lambda t: "\n" + t),
       quote=st.sampled_from("'\""))
def test_a_quoted_row_value_leaves_no_trace_whatever_it_holds(prefix: str, value: str, suffix: str, rest: str,
                                                             quote: str) -> None:
    """Neither engine escapes a quote inside the value it quotes (`Could not convert string 'O'Brien' to INT32`),
    and a value may hold a newline: the error's first line keeps what is around the value, never a part of it."""
    message = f"{prefix}{quote}{value}{quote}{suffix}{rest.translate({ord(quote): None})}"
    assert clean_error(Exception(message), from_data=False).startswith(f"{prefix.lstrip()}'…'")
    assert without_quoted(message).splitlines()[0] == f"{prefix}'…'{suffix}"


@given(prefix=_UNQUOTED, value=_VALUES)
def test_an_unclosed_quote_hides_the_rest(prefix: str, value: str) -> None:
    assert without_quoted(f"{prefix}'{value.replace(chr(39), '')}") == f"{prefix}'…'"
