"""What `mlci build` leaves: layouts and archives where every printed tag exists, labels that tell the
truth after a reuse, a metrics label over the metrics files dvc.yaml declares, and files whose mode
is the umask's."""
from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from mlci.oci.copy import open_endpoint
from mlci.oci.reference import parse
from tests.image.support import build, model_repo


@pytest.fixture(autouse=True)
def _epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.mark.parametrize("transport", ["oci", "oci-archive"])
def test_every_printed_tag_exists_and_reuse_works_every_time(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              transport: str) -> None:
    """Before the fix each new tag evicted the other: the printed reference named a tag that did not
    exist, and reuse worked every other build."""
    out = tmp_path / ("out.tar" if transport == "oci-archive" else "out")
    repo = model_repo(tmp_path / "repo", {"name": f"{transport}:{out}", "code": ["src"]})
    printed = []
    for tag in ("v1", "v2", "v3"):
        run = build(repo, capsys, "--tag", tag, "--dotenv", str(tmp_path / "build.env"))
        assert run.code == 0, run.err
        assert ("reused" in run.err) == (tag != "v1")
        printed.append(run.out)
        dotenv = dict(line.split("=", 1) for line in (tmp_path / "build.env").read_text().splitlines())
        assert f"{dotenv['MLCI_IMAGE']}@{dotenv['MLCI_IMAGE_DIGEST']}" == run.out
    for line in printed:  # every reference ever printed still resolves, to the same image
        name, digest = line.split("@")
        endpoint, named = open_endpoint(parse(name))
        assert endpoint.get_manifest(named).digest == digest


def test_after_a_reuse_the_labels_are_the_reused_images(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    repo = model_repo(tmp_path / "repo", {"name": f"oci:{tmp_path / 'out'}", "code": ["src"]})
    first_sha = _git(repo, "rev-parse", "HEAD")
    first = build(repo, capsys, "--tag", "v1", "--json")
    assert first.code == 0, first.err
    (repo / "README.md").write_text("not an input of the image\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "docs", "--date", "2030-01-01T00:00:00Z")
    second = build(repo, capsys, "--tag", "v2", "--json")
    assert second.code == 0, second.err
    result = json.loads(second.out)
    assert result["reused"] is True and result["digest"] == json.loads(first.out)["digest"]
    assert result["labels"] == json.loads(first.out)["labels"]  # what the image says, not this commit
    assert result["labels"]["org.opencontainers.image.revision"] == first_sha
    assert result["labels"]["org.opencontainers.image.version"] == "v1"
    assert f"built from revision {first_sha}" in second.err


DVC_YAML = """
metrics:
  - summary.json
stages:
  evaluate:
    cmd: python evaluate.py
    wdir: eval
    metrics:
      - scores.json:
          cache: false
      - ${item}.json
    plots:
      - roc.json
"""


def test_the_metrics_label_covers_the_metrics_files_dvc_yaml_declares(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    repo = model_repo(tmp_path / "repo", {"name": f"oci:{tmp_path / 'out'}", "code": ["src"]},
                      {"dvc.yaml": DVC_YAML, "summary.json": '{"auc": 0.8}', "eval/scores.json": '{"f1": 0.7}',
                       "metrics.json": '{"not": "declared"}', "eval/roc.json": "[]"})
    run = build(repo, capsys, "--tag", "v1", "--json")
    assert run.code == 0, run.err
    labels = json.loads(run.out)["labels"]
    listing = "".join(f"{hashlib.sha256((repo / p).read_bytes()).hexdigest()}  {p}\n"
                      for p in ("eval/scores.json", "summary.json"))
    assert labels["io.mlci.metrics.digest"] == "sha256:" + hashlib.sha256(listing.encode()).hexdigest()
    assert labels["io.mlci.metrics.files"] == "eval/scores.json,summary.json"
    assert "${item}.json is templated" in run.err
    (repo / "metrics.json").write_text('{"still": "not declared"}')
    assert json.loads(build(repo, capsys, "--tag", "v2", "--json").out)["labels"] == {
        **labels, "org.opencontainers.image.version": "v1"}  # reused: an undeclared file is no input
    (repo / "eval" / "scores.json").write_text('{"f1": 0.9}')
    changed = json.loads(build(repo, capsys, "--tag", "v3", "--json").out)
    assert changed["reused"] is False and changed["labels"]["io.mlci.metrics.digest"] != labels[
        "io.mlci.metrics.digest"]


@pytest.mark.parametrize("dvc_yaml, message", [
    ("metrics: [../../etc/passwd]\n", "dvc.yaml: metrics path ../../etc/passwd: must be inside the repo"),
    ("stages: {s: {cmd: x, wdir: /etc, metrics: [shadow]}}\n", "must be inside the repo"),
    ("[" * 5000 + "]" * 5000 + "\n", "dvc.yaml:1: nested deeper than"),
    ("metrics: [a: {b: [\n", "dvc.yaml:2: "),
])
def test_a_hostile_dvc_yaml_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], dvc_yaml: str,
                                      message: str) -> None:
    repo = model_repo(tmp_path / "repo", {"name": f"oci:{tmp_path / 'out'}", "code": ["src"]},
                      {"dvc.yaml": dvc_yaml})
    run = build(repo, capsys, "--tag", "v1")
    assert run.code == 2 and message in run.err and "Traceback" not in run.err


def test_an_alias_bomb_in_dvc_yaml_is_exit_2_and_fast(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same bound as every other YAML file mlci reads (core/yamlsafe.py): dvc repro refuses it too."""
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8))
    repo = model_repo(tmp_path / "repo", {"name": f"oci:{tmp_path / 'out'}", "code": ["src"]},
                      {"dvc.yaml": bomb + "metrics: [m.json]\n", "m.json": "{}"})
    started = time.monotonic()
    run = build(repo, capsys, "--tag", "v1", "--json")  # 10**9 items if expanded
    assert run.code == 2 and "dvc.yaml:" in run.err and "Traceback" not in run.err, run.err
    assert time.monotonic() - started < 5


def test_a_metrics_link_out_of_the_repo_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = model_repo(tmp_path / "repo", {"name": f"oci:{tmp_path / 'out'}", "code": ["src"]},
                      {"dvc.yaml": "metrics: [m.json]\n"}, links={"m.json": "/etc/shadow"})
    run = build(repo, capsys, "--tag", "v1")
    assert run.code == 2 and "m.json -> /etc/shadow: the link resolves outside the repo" in run.err


def _build_all_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str], mask: int) -> dict[str, int]:
    """Build into a layout and an archive with a dotenv and digest file each; every mode under out/."""
    old = os.umask(mask)
    try:
        for kind, name in (("layout", "oci:{}/layout"), ("archive", "oci-archive:{}/image.tar")):
            repo = model_repo(tmp_path / kind, {"name": name.format(tmp_path / "out"), "code": ["src"]})
            run = build(repo, capsys, "--tag", "v1", "--dotenv", str(tmp_path / "out" / f"{kind}.env"),
                        "--digest-file", str(tmp_path / "out" / f"{kind}.digest"))
            assert run.code == 0, run.err
    finally:
        os.umask(old)
    return {p.relative_to(tmp_path / "out").as_posix(): stat.S_IMODE(p.stat().st_mode)
            for p in (tmp_path / "out").rglob("*")}


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_layout_blobs_and_archives_have_the_umasks_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        mask: int) -> None:
    """The writers of oci/ (blobs, the archive) and directories; before the fix blobs were 0600."""
    modes = _build_all_outputs(tmp_path, capsys, mask)
    ours = {p: m for p, m in modes.items() if p.startswith("layout/blobs/") or p == "image.tar"}
    files = {p: m for p, m in ours.items() if not (tmp_path / "out" / p).is_dir()}
    assert len(files) >= 4 and set(files.values()) == {0o666 & ~mask}, files
    assert {m for p, m in modes.items() if (tmp_path / "out" / p).is_dir()} == {0o777 & ~mask}


def test_every_file_build_leaves_has_the_umasks_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    modes = _build_all_outputs(tmp_path, capsys, 0o022)
    files = {p: m for p, m in modes.items() if not (tmp_path / "out" / p).is_dir()}
    assert {"layout/index.json", "layout/oci-layout", "layout.env", "archive.digest"} <= set(files)
    assert set(files.values()) == {0o644}, files
