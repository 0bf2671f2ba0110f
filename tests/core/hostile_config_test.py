"""Property-based: mutated mlci.yaml and data-test suite files never crash `mlci config check` (which runs the
suite loader too). Every outcome is exit 0, or exit 2 with `file:line: ...` lines; never a traceback or 70."""
from __future__ import annotations

import contextlib
import copy
import io
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlci import cli
from tests.testing.repos import EXAMPLE

CONFIG = yaml.safe_load((EXAMPLE / "mlci.yaml").read_text())
_DATASETS = yaml.safe_load((EXAMPLE / "data-tests.yaml").read_text())["datasets"]
# The example's suite, cut to a sample of each kind of entry (pure-Python YAML costs ~0.4 ms a line).
SUITE = {"datasets": [
    {**_DATASETS[0], "checks": _DATASETS[0]["checks"][::2],
     "columns": {k: v for k, v in _DATASETS[0]["columns"].items() if k in ("age", "region", "default")}},
    {**_DATASETS[2], "columns": {k: v for k, v in _DATASETS[2]["columns"].items() if k in ("age", "employment_type")}},
]}
INLINE = {**{k: v for k, v in CONFIG.items() if k != "data_tests"}, "data_tests": {"datasets": SUITE["datasets"]}}
PROBLEM = re.compile(r"^(mlci\.yaml|suite\.yaml):\d+: \S")
PROPERTY = settings(derandomize=True, max_examples=100, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**30), st.floats(allow_nan=True),
    st.text(max_size=20), st.sampled_from(["", "~", "yes", "0x1f", "1e400", ".inf", "2%", "-1", "lots", "\x00"]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=8), inner, max_size=3), max_leaves=8)
keys = st.one_of(st.text(max_size=12), st.sampled_from(["where", "version", "<<", "name", "checks", "1"]))


def _containers(tree: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths to every dict and list in a tree."""
    found = [path] if isinstance(tree, (dict, list)) else []
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for key, child in items:
        found.extend(_containers(child, (*path, key)))
    return found


def _at(tree: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        tree = tree[key]
    return tree


@st.composite
def mutated_tree(draw: st.DrawFn, base: Any) -> Any:
    """The tree with 1-4 mutations: wrong types, unknown keys at any level, deletions, deep nesting, and
    shared subtrees (which the YAML dumper writes as anchors and aliases)."""
    tree = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(_containers(tree)))
        node = _at(tree, path)
        slots = list(node) if isinstance(node, dict) else list(range(len(node)))
        action = draw(st.sampled_from(["replace", "add", "delete", "nest", "share"]))
        if action == "add" or not slots:
            if isinstance(node, dict):
                node[draw(keys)] = draw(values)
            else:
                node.append(draw(values))
            continue
        slot = draw(st.sampled_from(slots))
        if action == "replace":
            node[slot] = draw(values)
        elif action == "delete":
            del node[slot]
        elif action == "nest":
            depth = draw(st.sampled_from([2, 10, 63, 64, 200]))
            for _ in range(depth):
                node[slot] = [node[slot]]
        else:
            other = _at(tree, draw(st.sampled_from(_containers(tree))))
            inside = {id(_at(node[slot], p)) for p in _containers(node[slot])}
            if isinstance(other, dict) and id(other) not in inside:  # no cycle
                other[draw(keys)] = node[slot]  # the same object twice: dumped as &id001 / *id001
    return tree


@st.composite
def mutated_text(draw: st.DrawFn, base: Any) -> str:
    """YAML text of a mutated tree, sometimes damaged as text: unknown tags, control and NUL bytes,
    a null document, a truncation, billion-laughs aliases."""
    text = yaml.safe_dump(draw(mutated_tree(base)), sort_keys=False, allow_unicode=True, width=10**6)
    action = draw(st.sampled_from(["none", "tag", "control", "null", "truncate", "laughs"]))
    at = draw(st.integers(0, len(text)))
    if action == "tag":
        tag = draw(st.sampled_from(["!foo", "!!python/object/apply:os.system", "!!binary", "!!timestamp", "!!int"]))
        spots = [m.end() for m in re.finditer(r": ", text)] or [0]
        at = spots[at % len(spots)]
        text = f"{text[:at]}{tag} {text[at:]}"
    elif action == "control":
        text = text[:at] + draw(st.sampled_from(["\x00", "\x07", "\x1b", "\x7f", "\ufffe", "\x85", "\t"])) + text[at:]
    elif action == "null":
        text = draw(st.sampled_from(["", "~\n", "null\n", "---\n", "--- ~\n...\n", "# only a comment\n"]))
    elif action == "truncate":
        text = text[:at]
    elif action == "laughs":
        laughs = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
        laughs += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
        text = text + "\n".join(laughs) + "\ntrain: {targets: *a8}\n"
    return text


def _config_check(files: dict[str, str]) -> tuple[int, str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / ".git").mkdir()
        for name, text in files.items():
            (Path(tmp) / name).write_text(text, encoding="utf-8", errors="surrogatepass")
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), contextlib.chdir(tmp):
            code = cli.main(["config", "check"])
    return code, out.getvalue(), err.getvalue()


def _assert_contract(code: int, out: str, err: str) -> None:
    assert code in (0, 2), (code, err)
    if code == 0:
        assert out == "mlci.yaml: ok\n" and err == ""
    else:
        lines = err.splitlines()
        assert lines and all(PROBLEM.match(line) for line in lines), err


@PROPERTY
@given(mutated_text(INLINE))
def test_mutated_config_with_an_inline_suite_is_exit_0_or_2_with_file_line(text: str) -> None:
    _assert_contract(*_config_check({"mlci.yaml": text}))


@PROPERTY
@given(mutated_text(SUITE))
def test_mutated_suite_file_is_exit_0_or_2_with_file_line(text: str) -> None:
    config = yaml.safe_dump({**CONFIG, "data_tests": {"file": "suite.yaml"}}, sort_keys=False)
    _assert_contract(*_config_check({"mlci.yaml": config, "suite.yaml": text}))
