"""Every generated GitLab file against GitLab's CI schema (check-jsonschema 0.39's vendor.gitlab-ci, offline),
and every component's `spec: inputs` against GitLab's documented input rules (checked here, not by the
generator's own code: types, defaults that match their type, options and regex, every input used)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ci.generator import COMPONENTS, PLAIN, documents
from tests.testing.repos import ROOT

CHECK = str(Path(sys.executable).parent / "check-jsonschema")
CONTRACT_COMPONENTS = {"ml-pipeline", "config-check", "data-test", "train", "report", "build", "scan", "promote",
                       "bundle-export", "bundle-import"}
# docs.gitlab.com/ci/inputs: the keys of an input, its types, and which keys each type takes.
INPUT_KEYS = {"type", "default", "description", "options", "regex", "rules"}
INTERPOLATION = re.compile(r"\$\[\[\s*inputs\.([\w-]+)\s*(\|[^\]]*)?\]\]")


def _matches_type(value: Any, kind: str) -> bool:
    return {"string": isinstance(value, str), "boolean": isinstance(value, bool),
            "number": isinstance(value, int | float) and not isinstance(value, bool),
            "array": isinstance(value, list)}[kind]


def spec_problems(spec: Any, body_text: str) -> list[str]:
    """What GitLab would refuse (or a user could not use) in a component's spec document."""
    if not isinstance(spec, dict) or set(spec) != {"spec"} or set(spec["spec"]) != {"inputs"}:
        return ["the first document must be exactly `spec: {inputs: ...}`"]
    problems = []
    inputs = spec["spec"]["inputs"]
    for name, entry in inputs.items():
        kind = entry.get("type", "string")
        if set(entry) - INPUT_KEYS:
            problems.append(f"{name}: unknown keys {sorted(set(entry) - INPUT_KEYS)}")
        if kind not in ("string", "number", "boolean", "array"):
            problems.append(f"{name}: type {kind}")
            continue
        if "rules" in entry:
            problems.append(f"{name}: spec:inputs:rules (gitlab-ci-local 4.73.0 cannot render it)")
        if "regex" in entry and kind != "string":
            problems.append(f"{name}: regex on a {kind}")
        if "options" in entry and kind not in ("string", "number"):
            problems.append(f"{name}: options on a {kind}")
        if not entry.get("description"):
            problems.append(f"{name}: no description")
        if "default" not in entry:
            problems.append(f"{name}: no default (the component must work with no inputs, like the plain include)")
            continue
        default = entry["default"]
        if not _matches_type(default, kind):
            problems.append(f"{name}: default {default!r} is not a {kind}")
        if "options" in entry and default not in entry["options"]:
            problems.append(f"{name}: default {default!r} not in options")
        if "regex" in entry and kind == "string" and not re.search(entry["regex"], str(default)):
            problems.append(f"{name}: default {default!r} does not match {entry['regex']}")
    used = {m[1] for m in INTERPOLATION.finditer(body_text)}
    problems += [f"{name}: interpolated but not declared" for name in sorted(used - set(inputs))]
    problems += [f"{name}: declared but never used" for name in sorted(set(inputs) - used)]
    return problems


def test_the_components_are_the_contracts_and_within_gitlabs_limit() -> None:
    assert {p.stem for p in COMPONENTS} == CONTRACT_COMPONENTS
    assert len(COMPONENTS) <= 30


def with_defaults(body_text: str, inputs: dict[str, Any]) -> str:
    """A component's jobs as GitLab validates them: after interpolation, here of each input's default. An
    interpolation that is a keyword's whole (plain) value takes the value itself (an array input: JSON, which
    is YAML); one inside a quoted string takes the value's text."""
    def value(match: re.Match[str]) -> Any:
        return inputs[match[1]]["default"]

    whole = re.compile(r"(?<=: )" + INTERPOLATION.pattern + r"$", re.M)
    text = whole.sub(lambda m: json.dumps(value(m)), body_text)
    return INTERPOLATION.sub(lambda m: json.dumps(_text(value(m)))[1:-1], text)


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def test_interpolation_with_defaults_gives_what_gitlab_would() -> None:
    inputs = {"needs": {"default": [{"job": "b", "artifacts": True}]}, "on": {"default": False},
              "image": {"default": "r/ci:1"}}
    body = 'v:\n  X: "$[[ inputs.on ]]"\nj:\n  image: "$[[ inputs.image ]]@x"\n  needs: $[[ inputs.needs ]]\n'
    assert yaml.safe_load(with_defaults(body, inputs)) == {
        "v": {"X": "false"}, "j": {"image": "r/ci:1@x", "needs": [{"job": "b", "artifacts": True}]}}


def test_every_generated_file_matches_gitlabs_ci_schema(tmp_path: Path) -> None:
    bodies = []
    for path in COMPONENTS:  # the schema knows one document: the jobs after the spec's `---`
        text = path.read_text(encoding="utf-8")
        assert text.count("\n---\n") == 1, path.name
        body = tmp_path / path.name
        spec, _ = documents(path)
        body.write_text(with_defaults(text.split("\n---\n", 1)[1], spec["spec"]["inputs"]))
        bodies.append(str(body))
    files = [*map(str, PLAIN), *bodies, str(ROOT / "example-model-repo" / ".gitlab-ci.yml")]
    done = subprocess.run([CHECK, "--builtin-schema", "vendor.gitlab-ci", "--data-transform", "gitlab-ci", *files],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", COMPONENTS, ids=lambda p: p.stem)
def test_every_component_spec_follows_gitlabs_input_rules(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    spec, _ = documents(path)
    assert spec_problems(spec, text.split("\n---\n", 1)[1]) == []


@pytest.mark.parametrize("spec, body, expected", [
    ({"spec": {"inputs": {"n": {"type": "number", "default": "3", "description": "d"}}}}, "$[[ inputs.n ]]",
     ["n: default '3' is not a number"]),
    ({"spec": {"inputs": {"b": {"type": "boolean", "default": True, "regex": "x", "description": "d"}}}},
     "$[[ inputs.b ]]", ["b: regex on a boolean"]),
    ({"spec": {"inputs": {"s": {"default": "c", "options": ["a", "b"], "description": "d"}}}}, "$[[ inputs.s ]]",
     ["s: default 'c' not in options"]),
    ({"spec": {"inputs": {"s": {"default": "A", "regex": "^[a-z]+$", "description": "d"}}}}, "$[[ inputs.s ]]",
     ["s: default 'A' does not match ^[a-z]+$"]),
    ({"spec": {"inputs": {"s": {"default": "a", "description": "d"}}}}, "$[[ inputs.t ]]",
     ["t: interpolated but not declared", "s: declared but never used"]),
    ({"spec": {"inputs": {}}, "stages": []}, "", ["the first document must be exactly `spec: {inputs: ...}`"]),
])
def test_the_input_rules_check_catches_what_gitlab_refuses(spec: Any, body: str, expected: list[str]) -> None:
    assert spec_problems(spec, body) == expected


def test_the_plain_files_have_no_spec_and_no_interpolation() -> None:
    """A plain include has no inputs: `$[[ ]]` there would reach the job as literal text."""
    for path in PLAIN:
        assert len(documents(path)) == 1 and "$[[" not in path.read_text(), path.name
        assert "spec" not in yaml.safe_load(path.read_text()), path.name
