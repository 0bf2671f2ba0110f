"""The model's DVC objects across the air gap, against real git, real DVC, local-directory remotes and S3 on moto:
collected and hashed on the connected side, pushed into the inside remote of a second clone ("inside"), proven by a
fresh clone that pulls from that remote alone."""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pytest
import yaml

from mlci.bundle.dvcobjects import ObjectFile, Pushed, collect, dir_entries, missing, object_path, push
from mlci.bundle.errors import BundleInvalid
from mlci.bundle.manifest import DvcData, dvc_path
from mlci.core.errors import ConfigError, EnvironmentProblem
from mlci.image.settings import ImageSettings
from mlci.promote.settings import Environment
from tests.testing import repos
from tests.testing.s3 import S3Server

WEIGHTS = 1_500_000  # more than one 1 MiB chunk: md5 and sha256 in two threads
TRAIN = f"""\
import json, os, pathlib, random, yaml
seed = yaml.safe_load(open('params.yaml'))['seed']
os.makedirs('model/tokenizer/sub', exist_ok=True)
os.makedirs('eval', exist_ok=True)
pathlib.Path('model/weights.bin').write_bytes(random.Random(seed).randbytes({WEIGHTS}))
pathlib.Path('model/tokenizer/vocab.txt').write_text(f'vocab {{seed}}\\n')
pathlib.Path('model/tokenizer/sub/merges.txt').write_text('a b\\n')
json.dump({{'auc': 0.5 + seed / 100}}, open('eval/metrics.json', 'w'))
json.dump({{'seed': seed}}, open('eval/summary.json', 'w'))
"""
PIPELINE = """\
stages:
  train:
    cmd: python train.py
    deps: [train.py]
    params: [seed]
    outs: [model/weights.bin, model/tokenizer]
    metrics:
      - eval/metrics.json
      - eval/summary.json:
          cache: false
"""
IMAGE = ImageSettings(artifacts=("model/weights.bin", "model/tokenizer"))
MODEL = ("model/weights.bin", "model/tokenizer", "eval/metrics.json")  # and not summary.json (cache: false)
PROD = Environment(tags=r"v\d+")
WITH_DATASET = Environment(tags=r"v\d+", dvc_outputs=("data/ds",))


@dataclass(frozen=True)
class Built:
    """`base/repo`: a git + DVC repo with two trained revisions; rev1's objects pushed to its default remote `src`
    (base/src-remote, named relative to .dvc/), rev2's only in its cache."""

    base: Path
    rev1: str
    rev2: str
    objects: dict[str, dict[str, list[str]]]  # revision -> output -> its object ids (a directory: .dir first)
    relpaths: dict[str, str]  # rev1's `model/tokenizer/...` file -> its object id


def _recorded(repo: Path, rev: str) -> dict[str, list[str]]:
    """What the revision's dvc.lock and .dvc file name, with the files of each directory's manifest (read from the
    cache), as a test reads them: YAML and JSON, no mlci."""
    lock = yaml.safe_load(repos.git(repo, "show", f"{rev}:dvc.lock"))["stages"]["train"]["outs"]
    found = {o["path"]: o["md5"] for o in lock if o["path"] != "eval/summary.json"}
    found["data/ds"] = yaml.safe_load(repos.git(repo, "show", f"{rev}:data/ds.dvc"))["outs"][0]["md5"]
    objects = {}
    for output, md5 in found.items():
        objects[output] = [md5]
        if md5.endswith(".dir"):
            manifest = json.loads(object_path(repo / ".dvc" / "cache", md5).read_text())
            objects[output] += [entry["md5"] for entry in manifest]
    return objects


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    base = tmp_path_factory.mktemp("dvcobjects")
    repo = base / "repo"
    repo.mkdir()
    repos.git(repo, "init", "-q", "-b", "main")
    repos.dvc(repo, "init", "-q")
    for name, text in {"train.py": TRAIN, "dvc.yaml": PIPELINE, "params.yaml": "seed: 1\n",
                       **{f"data/ds/part-{i}.csv": f"id,x\n{i},{i * i}\n" for i in range(2)}}.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    (repo / ".dvc" / "config").write_text("[core]\n    remote = src\n['remote \"src\"']\n    url = ../../src-remote\n")
    repos.dvc(repo, "add", "-q", "data/ds")
    repos.dvc(repo, "repro", "-q")
    rev1 = repos.commit_all(repo, "seed 1")
    repos.dvc(repo, "push", "-q")
    (repo / "params.yaml").write_text("seed: 2\n")
    repos.dvc(repo, "repro", "-q")
    rev2 = repos.commit_all(repo, "seed 2")
    objects = {rev1: _recorded(repo, rev1), rev2: _recorded(repo, rev2)}
    tokenizer = json.loads(object_path(repo / ".dvc" / "cache", objects[rev1]["model/tokenizer"][0]).read_text())
    return Built(base, rev1, rev2, objects, {f"model/tokenizer/{e['relpath']}": e["md5"] for e in tokenizer})


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """mlci's temporary directories go here; each test ends with it empty (no checkout left behind)."""
    where = tmp_path / "tmp"
    where.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(where))
    yield where
    assert list(where.iterdir()) == []


def _outside(built: Built, tmp_path: Path, *, cache: bool = True) -> Path:
    """A private copy of the connected side's repo and its source remote; without its DVC cache (a fresh runner)
    when `cache` is False."""
    shutil.copytree(built.base, tmp_path / "w", symlinks=True,
                    ignore=lambda d, names: ["cache"] * (not cache and d.endswith(".dvc")))
    return tmp_path / "w" / "repo"


def _inside(built: Built, tmp_path: Path, name: str = "inside", prod: str | None = None) -> Path:
    """A second clone of the model repository (the inside mirror), its DVC remote `prod` in .dvc/config.local
    (a directory beside it unless `prod` gives the remote's settings); empty DVC cache."""
    clone = tmp_path / name
    subprocess.run(["git", "clone", "-q", str(built.base / "repo"), str(clone)], check=True)
    settings = prod or f"url = {tmp_path / 'prod-remote'}"
    (clone / ".dvc" / "config.local").write_text(f"['remote \"prod\"']\n    {settings}\n")
    return clone


def _model(built: Built, rev: str, *outputs: str) -> list[str]:
    return sorted({oid for output in outputs or MODEL for oid in built.objects[rev][output]})


def _cached(repo: Path) -> set[str]:
    """The object ids in a DVC cache (or a local remote: the same layout)."""
    where = repo / ".dvc" / "cache" / "files" / "md5" if (repo / ".dvc").is_dir() else repo / "files" / "md5"
    return {f"{p.parent.name}{p.name}" for p in where.glob("*/*")} if where.is_dir() else set()


def _opener(path: Path, opened: list[Path] | None = None) -> Callable[[], BinaryIO]:
    def opener() -> BinaryIO:
        if opened is not None:
            opened.append(path)
        return open(path, "rb")
    return opener


def _openers(files: list[ObjectFile]) -> list[tuple[str, Callable[[], BinaryIO]]]:
    return [(f.oid, _opener(f.path)) for f in files]


def test_collect_lists_exactly_the_models_objects_each_hashed_from_the_cache(
        built: Built, tmp_path: Path, scratch: Path) -> None:
    repo = _outside(built, tmp_path)
    cache = repo / ".dvc" / "cache"

    data, files = collect(repo, IMAGE, PROD, built.rev1)
    assert data == DvcData(built.rev1, MODEL, tuple(_model(built, built.rev1)))  # not the dataset, nor HEAD's model
    assert len(data.objects) == 5  # weights, tokenizer's .dir and its two files, metrics
    assert [f.oid for f in files] == list(data.objects)
    for file in files:
        content = object_path(cache, file.oid).read_bytes()
        assert file == ObjectFile(file.oid, object_path(cache, file.oid), len(content),
                                  hashlib.sha256(content).hexdigest())
    assert max(f.size for f in files) == WEIGHTS

    # An opted-in dataset travels too; what a base bundle carried is listed but not carried again.
    weights, tokenizer = built.objects[built.rev1]["model/weights.bin"][0], built.objects[built.rev1]["model/tokenizer"]
    skip = {weights, tokenizer[0], tokenizer[1], "0" * 32}  # an id the model does not need changes nothing
    data, files = collect(repo, IMAGE, WITH_DATASET, built.rev1, skip=skip)
    assert data == DvcData(built.rev1, (*MODEL, "data/ds"), tuple(_model(built, built.rev1, *MODEL, "data/ds")))
    assert [f.oid for f in files] == sorted(set(data.objects) - skip)


def test_collect_fetches_from_the_default_remote_only_what_the_cache_lacks_and_the_bundle_carries(
        built: Built, tmp_path: Path, scratch: Path) -> None:
    repo = _outside(built, tmp_path, cache=False)
    recorded = built.objects[built.rev1]
    weights, listing, metrics = (recorded[o][0] for o in ("model/weights.bin", "model/tokenizer", "eval/metrics.json"))
    vocab, merges = built.relpaths["model/tokenizer/vocab.txt"], built.relpaths["model/tokenizer/sub/merges.txt"]

    data, files = collect(repo, IMAGE, PROD, built.rev1, skip={weights, vocab})
    assert _cached(repo) == {listing, merges, metrics}  # one file of the directory (granular), not the skipped ones
    assert [f.oid for f in files] == sorted({listing, merges, metrics})
    assert data.objects == tuple(_model(built, built.rev1))

    data, files = collect(repo, IMAGE, PROD, built.rev1)
    assert _cached(repo) == set(data.objects) and [f.oid for f in files] == list(data.objects)


def _flip(path: Path) -> None:
    path.chmod(0o644)  # DVC keeps cache files read-only
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("case", ["corrupt weights", "corrupt manifest", "lost file"])
def test_collect_refuses_an_object_whose_bytes_are_not_its_md5_or_that_no_remote_has(
        built: Built, tmp_path: Path, scratch: Path, case: str) -> None:
    repo = _outside(built, tmp_path)
    cache, remote = repo / ".dvc" / "cache", tmp_path / "w" / "src-remote"
    if case == "corrupt weights":
        output, oid = "model/weights.bin", built.objects[built.rev1]["model/weights.bin"][0]
        _flip(object_path(cache, oid))
    elif case == "corrupt manifest":
        output, oid = "model/tokenizer", built.objects[built.rev1]["model/tokenizer"][0]
        _flip(object_path(cache, oid))
    else:
        output, oid = "model/tokenizer", built.relpaths["model/tokenizer/vocab.txt"]
        object_path(cache, oid).unlink()
        object_path(remote, oid).unlink()

    with pytest.raises(EnvironmentProblem) as caught:
        collect(repo, IMAGE, PROD, built.rev1)
    message = str(caught.value)
    assert caught.value.exit_code == 3 and "\n" not in message
    assert message.startswith(f"{output}") and oid in message
    assert ("corrupt" in message) == case.startswith("corrupt")
    if case == "lost file":
        assert "DVC remote 'src'" in message


def test_directory_manifests_are_read_strictly() -> None:
    good = [{"md5": "a" * 32, "relpath": "a.txt"}, {"md5": "b" * 32, "relpath": "sub/b.txt", "size": 2}]
    assert dir_entries(json.dumps(good).encode()) == [("a.txt", "a" * 32), ("sub/b.txt", "b" * 32)]
    assert dir_entries(b"[]") == []
    bad = {
        b"not json": "not JSON", b"\xff[]": "not JSON", b"[" * 100_000: "not JSON", b'{"md5": 1}': "not a JSON list",
        b"[1]": "entry 0 is not an object",
        json.dumps([{"relpath": "a"}]).encode(): "md5 'None' is not",
        json.dumps([{"md5": "a" * 32 + ".dir", "relpath": "a"}]).encode(): "is not a file object's id",
        json.dumps([{"md5": "A" * 32, "relpath": "a"}]).encode(): "is not a file object's id",
        **{json.dumps([{"md5": "a" * 32, "relpath": p}]).encode(): "is not a path inside"
           for p in ("../a", "/etc/passwd", "a//b", "a/./b", "", "a\0b", "\ud800", 3)},
        json.dumps([{"md5": "a" * 32, "relpath": "a"}, {"md5": "b" * 32, "relpath": "a"}]).encode(): "listed twice",
        b" " * (64 << 20) + b"[]": "larger than 64 MiB",
    }
    for data, reason in bad.items():
        with pytest.raises(ValueError, match=reason.replace("(", r"\(")):
            dir_entries(data)
    assert dvc_path("ab" + "c" * 30 + ".dir") == "dvc/files/md5/ab/" + "c" * 30 + ".dir"


def _pull(clone: Path, rev: str, *outputs: str) -> subprocess.CompletedProcess[str]:
    repos.git(clone, "checkout", "-q", "--detach", rev)
    return subprocess.run(["dvc", "pull", "-r", "prod", "--", *outputs], cwd=clone, capture_output=True, text=True,
                          check=False)


def test_pushed_objects_let_a_fresh_clone_pull_the_model_from_the_inside_remote_alone(
        built: Built, tmp_path: Path, scratch: Path) -> None:
    data, files = collect(_outside(built, tmp_path), IMAGE, WITH_DATASET, built.rev1)
    inside, prod = _inside(built, tmp_path), tmp_path / "prod-remote"
    assert missing(inside, "prod", data.objects) == list(data.objects)

    pushed = push(inside, "prod", data, _openers(files))
    assert pushed == Pushed("prod", len(files), 0, sum(f.size for f in files))
    assert _cached(prod) == set(data.objects)  # exactly the bundle's objects
    assert missing(inside, "prod", data.objects) == []

    # A re-run (an import interrupted after its push) opens no object and sends nothing.
    before = {p: p.stat().st_mtime_ns for p in [*prod.rglob("*"), *(inside / ".dvc" / "cache").rglob("*")]}
    opened: list[Path] = []
    again = push(inside, "prod", data, [(oid, _opener(Path(os.devnull), opened)) for oid in data.objects])
    assert again == Pushed("prod", 0, len(files), 0) and opened == []
    assert {p: p.stat().st_mtime_ns for p in before} == before

    shutil.rmtree(tmp_path / "w")  # the connected side is gone: only the inside remote can serve the pull
    fresh = _inside(built, tmp_path, "fresh")
    pulled = _pull(fresh, built.rev1, *MODEL, "data/ds")
    assert pulled.returncode == 0, pulled.stderr
    assert (fresh / "model/weights.bin").read_bytes() == random.Random(1).randbytes(WEIGHTS)
    assert (fresh / "model/tokenizer/vocab.txt").read_text() == "vocab 1\n"
    assert (fresh / "model/tokenizer/sub/merges.txt").read_text() == "a b\n"
    assert json.loads((fresh / "eval/metrics.json").read_text()) == {"auc": 0.51}
    assert (fresh / "data/ds/part-1.csv").read_text() == "id,x\n1,1\n"


def test_push_refuses_before_anything_reaches_the_remote(built: Built, tmp_path: Path, scratch: Path) -> None:
    data, files = collect(_outside(built, tmp_path), IMAGE, PROD, built.rev1)
    inside, prod = _inside(built, tmp_path), tmp_path / "prod-remote"
    weights = built.objects[built.rev1]["model/weights.bin"][0]

    unknown = DvcData("f" * 40, data.outputs, data.objects)
    with pytest.raises(EnvironmentProblem, match=rf"^the bundle's revision {'f' * 40} is not in this repository "
                                                 r"\(.*\): mirror the model repository inside first$"):
        push(inside, "prod", unknown, _openers(files))
    with pytest.raises(ConfigError, match=r"^DVC remote 'stage' is not in the DVC config of .* \(defined: "):
        push(inside, "stage", data, _openers(files))

    other = next(f.path for f in files if f.oid != weights)
    lying = [(oid, opener if oid != weights else _opener(other)) for oid, opener in _openers(files)]
    with pytest.raises(BundleInvalid, match=rf"^the bundle's {dvc_path(weights)} \(model/weights.bin\): its "
                                            "bytes do not have the md5"):
        push(inside, "prod", data, lying)
    assert not object_path(inside / ".dvc" / "cache", weights).exists()

    lacking = [(oid, opener) for oid, opener in _openers(files) if oid != weights]  # an incremental bundle ...
    with pytest.raises(EnvironmentProblem, match=rf"^model/weights.bin at {built.rev1[:12]}: DVC remote 'prod' "
                                                 rf"lacks DVC object {weights}, which this bundle does not carry"):
        push(inside, "prod", data, lacking)  # ... whose base is not there
    with pytest.raises(BundleInvalid, match=r"carried but not listed"):
        push(inside, "prod", DvcData(data.revision, data.outputs, data.objects[1:]), _openers(files))
    assert not prod.exists()


def test_an_incremental_bundle_carries_only_what_changed_and_lands_on_its_base_in_s3(
        built: Built, tmp_path: Path, scratch: Path, s3: S3Server) -> None:
    outside = _outside(built, tmp_path)
    bucket = s3.create_bucket()
    prod = f"url = s3://{bucket}/dvc\n    endpointurl = {s3.endpoint_url}\n    access_key_id = testing\n" \
           "    secret_access_key = testing"
    first, carried = collect(outside, IMAGE, PROD, built.rev1)
    assert push(_inside(built, tmp_path, "earlier", prod), "prod", first, _openers(carried)).copied == len(carried)
    inside = _inside(built, tmp_path, prod=prod)  # another runner: its DVC cache holds nothing of the base

    data, files = collect(outside, IMAGE, PROD, built.rev2, skip=first.objects)
    shared = built.relpaths["model/tokenizer/sub/merges.txt"]  # the same bytes at both revisions
    assert data.objects == tuple(_model(built, built.rev2)) and shared in data.objects
    assert [f.oid for f in files] == sorted(set(data.objects) - set(first.objects))
    assert len(files) == 4  # new weights, manifest, vocab and metrics
    assert missing(inside, "prod", sorted(set(data.objects) - {f.oid for f in files})) == []  # the base is there

    pushed = push(inside, "prod", data, _openers(files))
    assert (pushed.copied, pushed.present) == (4, 1)
    assert {k.removeprefix("dvc/files/md5/").replace("/", "") for k in s3.keys(bucket)} == \
        set(first.objects) | set(data.objects)


def test_outputs_recorded_by_dvc_2_are_refused_with_the_migration_to_run(
        built: Built, tmp_path: Path, scratch: Path) -> None:
    repo = _outside(built, tmp_path)
    stage = repo / "data" / "ds.dvc"
    stage.write_text(stage.read_text().replace("  hash: md5\n", ""))  # what DVC 2 wrote: md5-dos2unix, cache/xx/...
    legacy = repos.commit_all(repo, "a DVC 2 .dvc file")
    with pytest.raises(ConfigError, match=rf"^data/ds: its hash at {legacy[:12]} was recorded by DVC 2 .* run "
                                          "`dvc cache migrate --dvc-files`"):
        collect(repo, IMAGE, WITH_DATASET, legacy)


def test_an_unreachable_inside_remote_is_exit_3_in_one_line_without_its_credentials(
        built: Built, tmp_path: Path, scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.testing.procs import free_port

    secret = "mlci-test-secret-5d4c3b2a"
    inside = _inside(built, tmp_path, prod=f"url = s3://nowhere/dvc\n    endpointurl = http://127.0.0.1:{free_port()}"
                                           f"\n    access_key_id = testing\n    secret_access_key = {secret}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(EnvironmentProblem) as caught:
        missing(inside, "prod", [built.objects[built.rev1]["model/weights.bin"][0]])
    message = str(caught.value)
    assert caught.value.exit_code == 3 and "\n" not in message and secret not in message
    assert message.startswith("cannot reach DVC remote 'prod': ")
