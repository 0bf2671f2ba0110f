"""Which MR/PR a pipeline is about, from the CI variables and GitHub's event payload: outside one it is
None; a payload or variable that cannot be one is exit 3 naming it, never a crash."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlci.core.errors import EnvironmentProblem, ExitCode
from mlci.forge.select import merge_request


def _event(tmp_path: Path, content: str | bytes) -> dict[str, str]:
    path = tmp_path / "event.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return {"GITHUB_EVENT_PATH": str(path), "GITHUB_REF": "refs/heads/main"}


def test_pull_request_number_from_the_ref_or_the_payload(tmp_path: Path) -> None:
    assert merge_request("github", {"GITHUB_REF": "refs/pull/12/merge"}) == 12
    target = {"action": "synchronize", "number": 12, "pull_request": {"number": 12, "base": {"ref": "main"}}}
    assert merge_request("github", _event(tmp_path, json.dumps(target))) == 12  # pull_request_target
    assert merge_request("github", _event(tmp_path, json.dumps({"ref": "refs/heads/main"}))) is None  # push
    assert merge_request("github", {"GITHUB_REF": "refs/heads/main"}) is None
    assert merge_request("gitlab", {"CI_MERGE_REQUEST_IID": "7"}) == 7
    assert merge_request("gitlab", {"CI_PIPELINE_SOURCE": "push"}) is None


@pytest.mark.parametrize("content, expected", [
    ("{not json", r"not valid JSON \(Expecting property name"),
    (b"\xff\xfe\x00garbage", r"not valid JSON"),
    ("", r"not valid JSON"),
    ("[1, 2]", r"a JSON list, not an event object"),
    ("12", r"a JSON int, not an event object"),
    ('{"pull_request": {"number": "12"}}', r'pull_request.number is "12", not a positive integer'),
    ('{"pull_request": {"number": 12.5}}', r"pull_request.number is 12.5, not a positive integer"),
    ('{"pull_request": {"number": true}}', r"pull_request.number is true, not a positive integer"),
    ('{"pull_request": {"number": -3}}', r"pull_request.number is -3, not a positive integer"),
    ('{"pull_request": []}', r"pull_request.number is null, not a positive integer"),
    ("[" * 100_000 + "]" * 100_000, r"nested too deeply|not valid JSON"),
])
def test_a_bad_event_payload_is_exit_3_naming_the_file(tmp_path: Path, content: str, expected: str) -> None:
    env = _event(tmp_path, content)
    with pytest.raises(EnvironmentProblem, match=rf"GITHUB_EVENT_PATH {tmp_path / 'event.json'}: {expected}") as caught:
        merge_request("github", env)
    assert caught.value.exit_code == ExitCode.ENVIRONMENT and "\n" not in str(caught.value)


def test_unreadable_payload_and_bad_iid(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentProblem, match=r"GITHUB_EVENT_PATH .*missing.json: cannot read the event payload"):
        merge_request("github", {"GITHUB_EVENT_PATH": str(tmp_path / "missing.json")})
    with pytest.raises(EnvironmentProblem, match=r"GITHUB_EVENT_PATH .*: cannot read"):
        merge_request("github", {"GITHUB_EVENT_PATH": str(tmp_path)})  # a directory
    for iid in ("abc", "-1", "0", "7 8"):
        with pytest.raises(EnvironmentProblem, match=r"CI_MERGE_REQUEST_IID=.*: not a merge request number"):
            merge_request("gitlab", {"CI_MERGE_REQUEST_IID": iid})
