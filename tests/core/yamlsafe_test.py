from __future__ import annotations

import time

import pytest

from mlci.core import yamlsafe

LAUGHS = "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9) if i else 'x, x, x, x, x, x, x, x, x'}]\n"
                 for i in range(9))


def test_plain_yaml_loads_with_anchors_aliases_and_merge_keys() -> None:
    assert yamlsafe.load("a: &x {k: 1}\nb: *x\nc: {<<: *x, j: 2}\n") == {"a": {"k": 1}, "b": {"k": 1},
                                                                        "c": {"k": 1, "j": 2}}
    assert yamlsafe.load("") is None


@pytest.mark.parametrize("text, line, message", [
    (LAUGHS, 6, "more than 100000 values once its aliases are expanded; use fewer nested aliases (`*name`)"),
    ("a: &a [*a]\n", 1, "recursive alias: an anchor (`&name`) is used inside itself"),
    ("a: &a {b: *a}\n", 1, "recursive alias: an anchor (`&name`) is used inside itself"),
    ("a:\n  b: " + "[" * 10_000 + "]" * 10_000 + "\n", 2, "nested deeper than 64 levels"),
    ("a: 1\nb: \x07\n", 2, "not allowed in YAML: the control character '\\x07'"),
    ("a: !!timestamp x\n", 1, "cannot read a value: it does not fit its explicit tag (`!!timestamp`, `!!int`, ...); "
                               "remove the tag, or quote the value to have text"),
    ("a: " + "9" * 5000 + "\n", 1, "cannot read a value: an integer of more than 4300 digits"),
    ("a: !foo x\n", 1, "cannot read a value: could not determine a constructor for the tag '!foo'"),
    ("a: [\n", 2, "YAML syntax error: expected the node content, but found '<stream end>'"),
])
def test_bombs_and_bad_input_are_one_problem_fast(text: str, line: int, message: str) -> None:
    started = time.process_time()  # CPU time: what the work costs, not how busy the machine is
    with pytest.raises(yamlsafe.YamlProblem) as caught:
        yamlsafe.load(text)
    assert (caught.value.line, caught.value.message) == (line, message)
    assert time.process_time() - started < 1.0


def test_shared_subtrees_within_the_bound_are_fine() -> None:
    text = "base: &b [1, 2, 3]\n" + "".join(f"k{i}: *b\n" for i in range(1000))
    assert len(yamlsafe.load(text)) == 1001



def test_a_huge_flat_file_is_refused_as_soon_as_it_passes_the_bound() -> None:
    """7.8 MB of a flat list (3.9 million values, no alias) took two minutes of CPU, then was refused for its
    "aliases": an MR controls mlci.yaml, and `mlci report` reads it. It stops at the bound."""
    started = time.process_time()
    with pytest.raises(yamlsafe.YamlProblem, match="more than 100000 values; mlci reads no file"):
        yamlsafe.load("v:\n" + "  - 1\n" * 3_900_000)
    assert time.process_time() - started < 15
