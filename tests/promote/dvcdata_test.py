"""The promoted version's DVC objects copied to the target environment's remote, against real git, real DVC, a
local-directory remote and an S3 remote on moto; proven by a fresh clone that pulls from the target alone."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from mlci.core.errors import ConfigError, EnvironmentProblem, UsageError
from mlci.image.settings import ImageSettings
from mlci.promote.dvcdata import check_remotes, copy_environment_data, copy_model_data, model_outputs
from mlci.promote.settings import Environment, PromoteSettings, promote_problems
from tests.testing import repos
from tests.testing.procs import free_port
from tests.testing.s3 import S3Server

TRAIN = """\
import json, os, pathlib, yaml
seed = yaml.safe_load(open('params.yaml'))['seed']
os.makedirs('model/tokenizer', exist_ok=True)
os.makedirs('eval', exist_ok=True)
pathlib.Path('model/weights.bin').write_bytes(bytes([seed]) * 4096)
pathlib.Path('model/tokenizer/vocab.txt').write_text(f'vocab {seed}\\n')
pathlib.Path('model/tokenizer/merges.txt').write_text('a b\\n')
json.dump({'auc': 0.5 + seed / 100}, open('eval/metrics.json', 'w'))
json.dump({'seed': seed}, open('eval/summary.json', 'w'))
"""
PIPELINE = """\
stages:
  train:
    cmd: python train.py
    deps: [train.py, data/ds]
    params: [seed]
    outs: [model/weights.bin, model/tokenizer]
    metrics:
      - eval/metrics.json
      - eval/summary.json:
          cache: false
"""
IMAGE = ImageSettings(artifacts=("model/weights.bin", "model/tokenizer"))
MODEL = ["model/weights.bin", "model/tokenizer", "eval/metrics.json"]  # the cached metrics file too, not summary.json
SECRET = "mlci-test-secret-0f9e8d7c"  # the S3 secret key, in .dvc/config.local only
PROJECT = "models/credit"  # the model's DVC root inside the git repo (`dvc init --subdir`, a monorepo's layout)


@dataclass(frozen=True)
class Built:
    """A git repo `base/repo` holding the model's DVC repo in PROJECT, with two trained revisions; rev1's objects
    pushed to its `src` remote, base/src-remote."""

    base: Path
    rev1: str  # seed 1: what is promoted
    rev2: str  # seed 2: HEAD
    objects: dict[str, set[str]]  # rev1's objects per output, as remote paths (files/md5/xx/rest)
    sizes: dict[str, int]  # remote path -> bytes


def _config(repo: Path, level: str, **remotes: str) -> None:
    """Remotes (name -> url, or name -> `key=value;...`) added to .dvc/config or .dvc/config.local, as
    `dvc remote add/modify` writes them (without its start-up cost); the first in .dvc/config is the default."""
    path = repo / ".dvc" / level
    text = path.read_text() if path.exists() else ""
    if level == "config" and "[core]" not in text:
        text += f"[core]\n    remote = {next(iter(remotes))}\n"
    for name, value in remotes.items():
        pairs = [p.split("=", 1) for p in value.split(";")] if "=" in value else [["url", value]]
        text += f"['remote \"{name}\"']\n" + "".join(f"    {k} = {v}\n" for k, v in pairs)
    path.write_text(text)


def _remote_path(md5: str) -> str:
    return f"files/md5/{md5[:2]}/{md5[2:]}"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    base = tmp_path_factory.mktemp("dvcdata")
    repo = base / "repo" / PROJECT
    repo.mkdir(parents=True)
    repos.git(base / "repo", "init", "-q", "-b", "main")
    repos.dvc(repo, "init", "-q", "--subdir")
    for name, text in {"train.py": TRAIN, "dvc.yaml": PIPELINE, "params.yaml": "seed: 1\n",
                       **{f"data/ds/part-{i}.csv": f"id,x\n{i},{i * i}\n" for i in range(3)}}.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    repos.dvc(repo, "add", "-q", "data/ds")
    (repo / "notes").symlink_to("/etc/hostname")  # a committed link out of the repo: left out of every checkout
    _config(repo, "config", src="../../../../src-remote")  # relative: DVC resolves it against .dvc/
    repos.dvc(repo, "repro", "-q")
    rev1 = repos.commit_all(repo, "seed 1")
    repos.dvc(repo, "push", "-q")
    (repo / "params.yaml").write_text("seed: 2\n")
    repos.dvc(repo, "repro", "-q")
    rev2 = repos.commit_all(repo, "seed 2")  # HEAD; its objects only in the cache: only rev1 is promoted
    lock = yaml.safe_load(repos.git(repo, "show", f"{rev1}:./dvc.lock"))
    recorded = {o["path"]: o["md5"] for o in lock["stages"]["train"]["outs"] if o["path"] != "eval/summary.json"}
    recorded["data/ds"] = yaml.safe_load(repos.git(repo, "show", f"{rev1}:./data/ds.dvc"))["outs"][0]["md5"]
    objects: dict[str, set[str]] = {}
    for output, md5 in recorded.items():
        objects[output] = {_remote_path(md5)}
        if md5.endswith(".dir"):
            manifest = json.loads((repo / ".dvc" / "cache" / _remote_path(md5)).read_text())
            objects[output] |= {_remote_path(entry["md5"]) for entry in manifest}
    sizes = {key: (base / "src-remote" / key).stat().st_size for keys in objects.values() for key in keys}
    return Built(base, rev1, rev2, objects, sizes)


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """mlci's temporary directories go here; each test ends with it empty (no checkout left behind)."""
    where = tmp_path / "tmp"
    where.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(where))
    yield where
    assert list(where.iterdir()) == []


def _workspace(built: Built, tmp_path: Path) -> Path:
    """A private copy of the repo with its source remote beside it (relative remote paths keep working) and an
    empty DVC cache, as on a fresh CI runner: every object has to come from the source remote."""
    shutil.copytree(built.base, tmp_path / "w", symlinks=True, ignore=lambda d, names: ["cache"] * d.endswith(".dvc"))
    return tmp_path / "w" / "repo" / PROJECT


def _objects(built: Built, outputs: list[str]) -> set[str]:
    return set().union(*(built.objects[o] for o in outputs))


def _files(directory: Path) -> set[str]:
    return {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}


def _fresh_clone(project: Path, rev: str, dest: Path, target: str) -> Path:
    """A new clone at `rev` of the git repo holding `project`, whose only way to the data is the target remote
    `tgt` (in its config.local, as the target side would configure it); its DVC root."""
    subprocess.run(["git", "clone", "-q", str(project.parents[1]), str(dest)], check=True)
    repos.git(dest, "checkout", "-q", "--detach", rev)
    _config(dest / PROJECT, "config.local", tgt=target)
    return dest / PROJECT


def _pull(clone: Path, *targets: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["dvc", "pull", "-r", "tgt", "--", *targets], cwd=clone, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, check=False)


def test_a_fresh_clone_pulls_the_promoted_model_from_a_local_target_alone(
        built: Built, tmp_path: Path, scratch: Path) -> None:
    repo = _workspace(built, tmp_path)
    # The target is the workspace's (not the promoted revision's) and lives in config.local, relative.
    _config(repo, "config.local", tgt="../../../../tgt-remote")
    target = tmp_path / "w" / "tgt-remote"

    assert model_outputs(repo, IMAGE, built.rev1) == MODEL
    first = copy_model_data(repo, built.rev1, MODEL, "tgt")
    expected = _objects(built, MODEL)
    assert (first.revision, first.source, first.target, list(first.outputs)) == (built.rev1, "src", "tgt", MODEL)
    assert (first.copied, first.present, first.bytes) == (len(expected), 0, sum(built.sizes[k] for k in expected))
    assert _files(target) == expected  # exactly rev1's model objects: neither the dataset nor rev2's model
    assert not built.objects["data/ds"] & _files(target)
    again = copy_model_data(repo, built.rev1, MODEL, "tgt")
    assert (again.copied, again.present, again.bytes) == (0, len(expected), 0)

    shutil.rmtree(tmp_path / "w" / "src-remote")  # the source is gone: only the target can serve the pull
    clone = _fresh_clone(repo, built.rev1, tmp_path / "fresh", str(target))
    pulled = _pull(clone, *MODEL)
    assert pulled.returncode == 0, pulled.stderr
    assert (clone / "model/weights.bin").read_bytes() == bytes([1]) * 4096  # rev1's weights, not HEAD's
    assert (clone / "model/tokenizer/vocab.txt").read_text() == "vocab 1\n"
    assert json.loads((clone / "eval/metrics.json").read_text()) == {"auc": 0.51}


def _s3_remote(repo: Path, bucket: str, endpoint: str) -> None:
    """The target `tgt` on S3, its endpoint in .dvc/config and its credentials in .dvc/config.local."""
    _config(repo, "config", tgt=f"url=s3://{bucket}/dvc;endpointurl={endpoint}")
    _config(repo, "config.local", tgt=f"access_key_id=testing;secret_access_key={SECRET}")


def test_an_opted_in_dataset_travels_too_to_an_s3_target(
        built: Built, tmp_path: Path, scratch: Path, s3: S3Server, capfd: pytest.CaptureFixture[str]) -> None:
    repo = _workspace(built, tmp_path)
    bucket = s3.create_bucket()
    _s3_remote(repo, bucket, s3.endpoint_url)
    stage = Environment(branches=("main",), dvc_remote="tgt", dvc_outputs=("data/ds",))

    done = copy_environment_data(repo, IMAGE, "stage", stage, built.rev1)
    expected = _objects(built, [*MODEL, "data/ds"])
    assert done is not None and list(done.outputs) == [*MODEL, "data/ds"]
    assert (done.copied, done.present) == (len(expected), 0)
    assert {key.removeprefix("dvc/") for key in s3.keys(bucket)} == expected
    assert copy_environment_data(repo, IMAGE, "dev", Environment(branches=("main",)), built.rev1) is None

    shutil.rmtree(tmp_path / "w" / "src-remote")
    clone = _fresh_clone(repo, built.rev1, tmp_path / "fresh", f"url=s3://{bucket}/dvc;endpointurl={s3.endpoint_url}")
    pulled = _pull(clone, *MODEL, "data/ds", env={"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"})
    assert pulled.returncode == 0, pulled.stderr
    assert (clone / "data/ds/part-2.csv").read_text() == "id,x\n2,4\n"
    assert (clone / "model/weights.bin").read_bytes() == bytes([1]) * 4096
    output = capfd.readouterr()
    assert SECRET not in output.out + output.err


@pytest.mark.parametrize("lost", ["model/tokenizer", "model/tokenizer/vocab.txt"])
def test_an_object_missing_at_the_source_is_exit_3_naming_the_output_and_the_remote(
        built: Built, tmp_path: Path, scratch: Path, lost: str) -> None:
    """A directory's manifest missing at the source (the cache is empty), and one of its files missing from both the
    source and a cache that has the rest (DVC's status then calls it missing)."""
    repo = _workspace(built, tmp_path)
    _config(repo, "config", tgt=str(tmp_path / "tgt-remote"))
    lock = yaml.safe_load(repos.git(repo, "show", f"{built.rev1}:./dvc.lock"))["stages"]["train"]["outs"]
    md5 = next(o["md5"] for o in lock if o["path"] == "model/tokenizer")
    manifest = json.loads((built.base / "src-remote" / _remote_path(md5)).read_text())
    gone = md5 if lost == "model/tokenizer" else next(e["md5"] for e in manifest if e["relpath"] == "vocab.txt")
    (tmp_path / "w" / "src-remote" / _remote_path(gone)).unlink()
    if lost != "model/tokenizer":
        shutil.copytree(built.base / "repo" / PROJECT / ".dvc" / "cache", repo / ".dvc" / "cache")
        (repo / ".dvc" / "cache" / _remote_path(gone)).unlink()

    with pytest.raises(EnvironmentProblem) as caught:
        copy_model_data(repo, built.rev1, MODEL, "tgt")
    message = str(caught.value)
    assert caught.value.exit_code == 3 and "\n" not in message
    assert message.startswith("model/tokenizer at ") and "DVC remote 'src'" in message and gone in message


def test_paths_name_whole_outputs_and_unknown_remotes_revisions_and_outputs_are_exit_2(
        built: Built, tmp_path: Path, scratch: Path) -> None:
    repo = _workspace(built, tmp_path)
    _config(repo, "config", tgt=str(tmp_path / "tgt-remote"))
    # A file inside a directory output means the whole directory (pushing one file of it would leave the rest
    # unpushable: DVC takes the manifest on the remote for the whole); a glob means what it matches.
    assert model_outputs(repo, ImageSettings(artifacts=("model/tokenizer/vocab.txt", "model/*.bin")), built.rev1) \
        == ["model/tokenizer", "model/weights.bin", "eval/metrics.json"]
    unknown = r"^promote\.environments\.prod\.dvc_remote: DVC remote 'nope' is not in the DVC config .* " \
              r"\(defined: src, tgt;"
    with pytest.raises(ConfigError, match=unknown):
        copy_model_data(repo, built.rev1, MODEL, "nope", environment="prod")
    with pytest.raises(ConfigError, match=unknown):  # the promotion's check before anything is copied
        check_remotes(repo, "prod", Environment(tags="v.*", dvc_remote="nope"))
    check_remotes(repo, "prod", Environment(tags="v.*", dvc_remote="tgt"))
    with pytest.raises(ConfigError, match=r"^train\.remote: DVC remote 'gone' is not in"):
        copy_model_data(repo, built.rev1, MODEL, "tgt", source_remote="gone", environment="prod")
    with pytest.raises(ConfigError, match=r"^promote\.environments\.prod\.dvc_outputs: 'train\.py' is not a cached "
                                          r"DVC output at [0-9a-f]{12}"):
        copy_model_data(repo, built.rev1, ["train.py"], "tgt", environment="prod")
    with pytest.raises(UsageError, match=r"^revision '--output=x': no such commit"):
        copy_model_data(repo, "--output=x", MODEL, "tgt")
    assert not (tmp_path / "tgt-remote").exists()  # nothing was sent anywhere


def test_opted_in_outputs_need_a_remote_and_a_path_inside_the_repository() -> None:
    settings = PromoteSettings(environments={
        "stage": Environment(branches=("main",), dvc_outputs=("data/ds",)),
        "prod": Environment(tags="v.*", dvc_remote="prod", dvc_outputs=("data/ds", "../x", "/etc", "")),
    })
    assert promote_problems(settings) == [
        "promote.environments.stage.dvc_outputs: set dvc_remote too (the DVC remote they are copied to)",
        "promote.environments.prod.dvc_outputs: '../x' must be a path inside the repository",
        "promote.environments.prod.dvc_outputs: '/etc' must be a path inside the repository",
        "promote.environments.prod.dvc_outputs: '' must be a path inside the repository",
    ]


def test_an_unreachable_target_is_exit_3_in_one_line_without_credentials(
        built: Built, tmp_path: Path, scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = _workspace(built, tmp_path)
    _s3_remote(repo, "nowhere", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")

    with pytest.raises(EnvironmentProblem) as caught:
        copy_model_data(repo, built.rev1, MODEL, "tgt")
    message = str(caught.value)
    assert caught.value.exit_code == 3 and "\n" not in message and SECRET not in message
    assert message.startswith("cannot reach DVC remote 'tgt': ")
    assert not (repo / ".dvc" / "cache").exists()  # the target is asked first: nothing was fetched for nothing


INTERRUPTED = """\
import sys
from pathlib import Path
from mlci.core.signals import Terminated, sigterm_raises
from mlci.promote.dvcdata import copy_model_data
try:
    with sigterm_raises():
        copy_model_data(Path(sys.argv[1]), sys.argv[2], ["model"], "tgt")
except Terminated:
    sys.exit(143)
except KeyboardInterrupt:
    sys.exit(130)
"""


def _dvc_child(parent: int) -> int | None:
    """A `dvc status` that `parent` started, from /proc."""
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if stat[stat.rfind(")") + 2:].split()[1] == str(parent) and b"status" in argv:
            return int(entry.name)
    return None


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_ctrl_c_leave_no_checkout_behind(
        built: Built, tmp_path: Path, sig: signal.Signals, code: int) -> None:
    repo = _workspace(built, tmp_path)
    with socket.socket() as silent:  # accepts connections (the backlog) and never answers: DVC waits
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        _s3_remote(repo, "hangs", f"http://127.0.0.1:{silent.getsockname()[1]}")
        temp = tmp_path / "tmp"
        temp.mkdir()
        env = {**os.environ, "TMPDIR": str(temp), "PYTHONPATH": str(repos.ROOT)}
        with subprocess.Popen([sys.executable, "-c", INTERRUPTED, str(repo), built.rev1], env=env,
                              stderr=subprocess.PIPE, text=True) as run:
            deadline = time.monotonic() + 30
            child = None
            while child is None and run.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
                child = _dvc_child(run.pid)
            assert child is not None and list(temp.iterdir()), run.stderr.read() if run.stderr else ""
            run.send_signal(sig)
            assert run.wait(timeout=20) == code
    assert list(temp.iterdir()) == []
    assert not Path(f"/proc/{child}").exists()
