"""JSON nested beyond reason is malformed JSON (a ValueError every reader handles), never a RecursionError."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlci.core import jsonsafe
from mlci.core.errors import EnvironmentProblem


@pytest.mark.parametrize("depth", [jsonsafe.MAX_DEPTH + 1, 3000, 200_000])
def test_nesting_past_the_limit_is_a_value_error(depth: int) -> None:
    for text in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth):
        with pytest.raises(ValueError, match="nested more than"):
            jsonsafe.loads(text)


@given(st.recursive(st.none() | st.integers() | st.text(max_size=3),
                    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children,
                                                                                        max_size=3), max_leaves=30))
def test_what_json_reads_within_the_limit_is_read_the_same(value: object) -> None:
    text = json.dumps(value)
    assert jsonsafe.loads(text) == json.loads(text)


def test_exactly_the_limit_is_read() -> None:
    depth = jsonsafe.MAX_DEPTH
    assert jsonsafe.loads("[" * depth + "]" * depth) is not None


def test_a_deep_index_json_or_manifest_is_one_error_not_an_internal_one(tmp_path: Path) -> None:
    """A signed bundle whose index.json was `[[[...]]]` passed verify, then import, verify and promote were
    exit 70 (RecursionError); so was a manifest nested 3000 deep that docker-registry stores."""
    from mlci.oci.layout import Layout
    from mlci.oci.manifest import OCI_MANIFEST, Manifest, ManifestError

    (tmp_path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (tmp_path / "index.json").write_text("[" * 5000 + "]" * 5000)
    with pytest.raises(EnvironmentProblem, match="not valid JSON"):
        Layout(tmp_path).entries()
    with pytest.raises(ManifestError, match="not valid JSON"):
        Manifest.of(b'{"schemaVersion": 2, "x": ' + b"[" * 3000 + b"]" * 3000 + b"}", OCI_MANIFEST).body()
