"""A scan's output survives its JSON form (stored with the scan record), and anything else is refused."""
from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from mlci.scan.findings import SEVERITIES, DbInfo, Finding, ScanOutput, Unscanned, output_from_json, output_to_json

text = st.text(max_size=30)
optional = st.none() | text
times = st.datetimes(timezones=st.just(datetime.UTC))
findings = st.builds(Finding, kind=st.sampled_from(["vulnerability", "secret", "misconfiguration", "model"]),
                     id=text, severity=st.sampled_from(SEVERITIES), title=text, target=text, package=optional,
                     version=optional, fixed_version=optional, path=optional, line=st.none() | st.integers(1, 10**6),
                     detail=text, references=st.lists(text, max_size=3).map(tuple), informational=st.booleans())
outputs = st.builds(ScanOutput, target=text, digest=optional, os=optional,
                    findings=st.lists(findings, max_size=4).map(tuple),
                    unscanned=st.lists(st.builds(Unscanned, text, text), max_size=2).map(tuple),
                    trivy_version=optional,
                    db=st.none() | st.builds(DbInfo, version=st.integers(1, 3), updated_at=times,
                                             next_update=st.none() | times),
                    scanners=st.lists(st.sampled_from(["vuln", "secret", "model"]), max_size=3).map(tuple))


@seed(10)
@settings(max_examples=150, deadline=None)
@given(outputs)
def test_an_output_round_trips_through_json(output: ScanOutput) -> None:
    assert output_from_json(json.loads(json.dumps(output_to_json(output)))) == output


@pytest.mark.parametrize("data", [
    None, [], "x", {}, {"target": 1}, {"target": "t", "findings": [{"kind": "rce"}]},
    {"target": "t", "findings": [{"kind": "model", "id": "x", "severity": "BAD", "title": "", "target": ""}]},
    {"target": "t", "findings": [{"kind": "model", "id": "x", "severity": "LOW", "title": "", "target": "",
                                  "exec": "x"}]},
    {"target": "t", "findings": [{"kind": "model", "id": "x", "severity": "LOW", "title": "", "target": "",
                                  "package": ["a"]}]},
    {"target": "t", "db": {"version": 2, "updated_at": "2026-01-01T00:00:00"}},  # no zone
    {"target": "t", "db": {"version": "two", "updated_at": "2026-01-01T00:00:00Z"}},
])
def test_anything_else_is_refused_with_a_value_error(data: Any) -> None:
    with pytest.raises(ValueError, match="not a stored scan output"):
        output_from_json(data)
