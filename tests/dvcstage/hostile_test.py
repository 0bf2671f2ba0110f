"""`mlci repro` and the DVC helpers under hostile conditions, against real DVC: secrets in a stage's output,
SIGTERM mid-run, a locked repository, odd file names, nesting bombs, bad output paths, the site cache."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlci.core.proc import _descendants
from mlci.dvcstage.dvc import dvc_env
from mlci.dvcstage.fetch import pull_missing
from tests.testing import repos


def _mlci(repo: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlci", *args], cwd=repo, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, check=False, timeout=120)


def _wait_for(path: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has exited; only its parent (init here) has not reaped it yet


SECRETS = {
    "MY_FORGE": "glpat-Secr3tForgeToken99",  # named by forge.token_env: no secret word in the name
    "WAREHOUSE": "postgresql://etl:Wh-pass-42%21@127.0.0.1:1/dwh",  # named by a dataset's dsn_env
    "GITLAB_TOKEN": "glpat-NameBasedToken77",  # looks secret by its name alone
}
LEAKY = """\
import json, os, urllib.parse
token, dsn = os.environ["MY_FORGE"], os.environ["WAREHOUSE"]
print("token", token, "dsn", dsn, "password", "Wh-pass-42!", flush=True)
print("as json", json.dumps({"t": token + '"'}), "url-encoded", urllib.parse.quote(dsn, safe=""))
print("clone https://gitlab-ci-token:" + os.environ["GITLAB_TOKEN"] + "@gitlab.bank/g/p.git")
open("out.txt", "w").write("x")
"""
LEAKY_CONFIG = """\
version: 1
forge: {token_env: MY_FORGE}
data_tests:
  datasets:
    - {name: warehouse, dsn_env: WAREHOUSE, table: loans}
"""


@dataclass(frozen=True)
class LeakyRun:
    repo: Path
    cache: Path
    done: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def leaky_run(tmp_path_factory: pytest.TempPathFactory) -> LeakyRun:
    """One `mlci repro` of a stage that prints secrets, run under umask 027 with no DVC_SITE_CACHE_DIR."""
    tmp = tmp_path_factory.mktemp("leaky")
    repo = repos.tiny_dvc_repo(tmp / "repo", repos.ONE_STAGE.replace("make.py", "leaky.py"),
                               {"leaky.py": LEAKY, "mlci.yaml": LEAKY_CONFIG})
    env = {**{k: v for k, v in os.environ.items() if k != "DVC_SITE_CACHE_DIR"}, **SECRETS,
           "XDG_CACHE_HOME": str(tmp / "cache")}
    done = subprocess.run([sys.executable, "-m", "mlci", "repro", "--json", "--summary-out", "summary.json"],
                          cwd=repo, capture_output=True, text=True, env=env, check=False, timeout=120,
                          preexec_fn=lambda: os.umask(0o027))
    assert done.returncode == 0, done.stderr
    return LeakyRun(repo, tmp / "cache", done)


def test_repro_never_echoes_a_token_or_a_dsn_password_from_a_stage(leaky_run: LeakyRun) -> None:
    done = leaky_run.done
    written = done.stdout + done.stderr + (leaky_run.repo / "summary.json").read_text()
    for leak in (*SECRETS.values(), "Wh-pass-42!", "Wh-pass-42%21", "Secr3tForgeToken99", "NameBasedToken77"):
        assert leak not in written, leak
    assert "token [MASKED] dsn [MASKED] password [MASKED]" in done.stderr
    assert "clone https://[MASKED]@gitlab.bank/g/p.git" in done.stderr
    json.loads(done.stdout)


def test_repro_writes_files_per_the_umask(leaky_run: LeakyRun) -> None:
    assert stat.S_IMODE((leaky_run.repo / "summary.json").stat().st_mode) == 0o640  # not mkstemp's 0600


def test_dvcs_site_cache_goes_under_mlcis_cache(leaky_run: LeakyRun) -> None:
    assert any((leaky_run.cache / "mlci" / "dvc-site").rglob("*.db"))  # not /var/tmp/dvc


SLEEPY = """\
import os, time
open("out.txt", "w").write("x")
if "mlci-determinism-" in os.getcwd():  # only the determinism re-run hangs
    open(os.environ["STARTED"], "w").write(str(os.getpid()))
    time.sleep(120)
"""


def test_sigterm_mid_run_cleans_up_stops_children_and_exits_143(tmp_path: Path) -> None:
    repo = repos.tiny_dvc_repo(tmp_path / "repo", repos.ONE_STAGE.replace("make.py", "sleepy.py"),
                               {"sleepy.py": SLEEPY})
    started, err_path = tmp_path / "started", tmp_path / "stderr"
    with err_path.open("wb") as err:
        mlci = subprocess.Popen([sys.executable, "-m", "mlci", "repro", "--check-determinism"], cwd=repo,
                                stdout=subprocess.DEVNULL, stderr=err,
                                env={**os.environ, "STARTED": str(started)})
        try:
            _wait_for(started)
            tree = _descendants(mlci.pid)  # dvc, and the stage's process under it
            assert int(started.read_text()) in tree
            before = err_path.stat().st_size
            mlci.send_signal(signal.SIGTERM)
            assert mlci.wait(30) == 143
        finally:
            mlci.kill()
    after = err_path.read_bytes()[before:].decode()
    assert after.splitlines() == ["mlci: terminated (SIGTERM)"]
    assert "Traceback" not in err_path.read_text()
    assert list((repo / ".dvc" / "tmp").glob("mlci-determinism-*")) == []  # the scratch copy is gone
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in tree) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in tree if _alive(pid)] == []  # no dvc, no stage command left behind


HOLD = """\
import os, time
open(os.environ["STARTED"], "w").write("1")
time.sleep(60)
open("out.txt", "w").write("x")
"""


HOLD_REPO_LOCK = """\
import os, time
from dvc.repo import Repo
Repo(".").lock.lock()  # DVC's repository lock (.dvc/tmp/lock), as `dvc pull` or `dvc gc` hold it
open(os.environ["STARTED"], "w").write("1")
time.sleep(60)
"""


@pytest.mark.parametrize("holder", ["dvc repro", "repository lock"])
def test_a_repository_locked_by_another_dvc_is_exit_3_with_a_plain_message(tmp_path: Path, holder: str) -> None:
    repo = repos.tiny_dvc_repo(tmp_path / "repo", repos.ONE_STAGE.replace("make.py", "hold.py"), {"hold.py": HOLD})
    started = tmp_path / "started"
    argv = ["dvc", "repro"] if holder == "dvc repro" else [sys.executable, "-c", HOLD_REPO_LOCK]
    other = subprocess.Popen(argv, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "STARTED": str(started)}, start_new_session=True)
    try:
        _wait_for(started)
        done = _mlci(repo, "repro", "--no-pull")
    finally:
        os.killpg(other.pid, signal.SIGKILL)
        other.wait()
    assert done.returncode == 3, done.stderr
    who = f" (PID {other.pid}: {Path(sys.executable).parent / 'dvc'} repro)" if holder == "dvc repro" else ""
    assert done.stderr.splitlines()[-1] == (
        f"mlci: error: the DVC repository {repo} is locked by another DVC process{who}; wait for it to finish "
        "(if none is running, remove .dvc/tmp/lock and .dvc/tmp/rwlock)")


def test_targets_starting_with_a_dash_are_targets_not_options(tmp_path: Path) -> None:
    repo = repos.tiny_dvc_repo(tmp_path / "repo", repos.ONE_STAGE, {
        "-sub/dvc.yaml": repos.ONE_STAGE, "-sub/make.py": repos.MAKE, "make.py": repos.MAKE})
    done = _mlci(repo, "repro", "--json", "--", "-sub/dvc.yaml")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["stages"] == {"-sub/dvc.yaml:make": "ran"}
    assert (repo / "-sub" / "out.txt").exists() and not (repo / "out.txt").exists()


def test_pull_finds_literal_bracket_names_and_names_starting_with_a_dash(tmp_path: Path) -> None:
    repo = repos.tiny_dvc_repo(tmp_path / "repo", repos.ONE_STAGE, {"make.py": repos.MAKE})
    (repo / "data[1].csv").write_text("a\n1\n")
    (repo / "-weird.csv").write_text("b\n2\n")
    repos.dvc(repo, "remote", "add", "-d", "store", str(tmp_path / "remote"))
    repos.dvc(repo, "add", "--", "data[1].csv", "-weird.csv")
    repos.dvc(repo, "push")
    for name in ("data[1].csv", "-weird.csv"):
        (repo / name).unlink()
    subprocess.run(["rm", "-rf", str(repo / ".dvc" / "cache")], check=True)
    assert pull_missing(["data[1].csv", "-weird.csv", "data/*.csv"], repo) == ["data[1].csv", "-weird.csv"]
    assert (repo / "data[1].csv").read_text() == "a\n1\n" and (repo / "-weird.csv").read_text() == "b\n2\n"


def test_nesting_and_alias_bombs_in_dvc_files_are_exit_2_naming_the_file(tmp_path: Path) -> None:
    repo = repos.tiny_dvc_repo(tmp_path / "repo", repos.ONE_STAGE + "    params: " + "[" * 3000 + "]" * 3000 + "\n",
                               {"make.py": repos.MAKE})
    done = _mlci(repo, "repro")
    assert (done.returncode, done.stderr.splitlines()) == (2, ["dvc.yaml:6: nested deeper than 64 levels"])
    (repo / "dvc.yaml").write_text(repos.ONE_STAGE)
    (repo / "dvc.lock").write_text("".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9) if i else 'x, x, x, x, x, x, x, x, x'}]\n" for i in range(9))
        + "stages: {make: {outs: *a8}}\n")
    started = time.monotonic()
    done = _mlci(repo, "repro")
    assert done.returncode == 2 and done.stderr.startswith("dvc.lock:6: more than 100000 values once its aliases")
    assert time.monotonic() - started < 20


def test_a_hash_or_path_yaml_reads_as_a_number_is_exit_2_naming_the_field(tmp_path: Path) -> None:
    """An md5 of digits only, unquoted (by hand or a merge tool), made DVC itself crash with AttributeError."""
    repo = repos.tiny_dvc_repo(tmp_path / "repo", repos.ONE_STAGE, {"make.py": repos.MAKE})
    (repo / "dvc.lock").write_text("schema: '2.0'\nstages:\n  make:\n    cmd: python make.py\n    deps:\n"
                                   "    - path: make.py\n      md5: 'a1b2'\n    outs:\n    - path: out.txt\n"
                                   "      md5: 12345678901234567890123456789012\n")
    (repo / "raw.dvc").write_text("outs:\n- path: 2024\n  md5: d41d8cd98f00b204e9800998ecf8427e\n")
    done = _mlci(repo, "repro")
    assert (done.returncode, sorted(done.stderr.splitlines())) == (2, [
        "dvc.lock: stages.make.outs[0].md5: 12345678901234567890123456789012 is not text (YAML reads it as a "
        "number): quote it",
        "raw.dvc: outs[0].path: 2024 is not text (YAML reads it as a number): quote it"]), done.stderr


def test_a_directory_as_summary_out_is_exit_2_before_anything_runs(tmp_path: Path) -> None:
    repo = repos.tiny_dvc_repo(tmp_path / "repo", repos.ONE_STAGE, {"make.py": repos.MAKE})
    (repo / "out-dir").mkdir()
    done = _mlci(repo, "repro", "--summary-out", "out-dir")
    assert (done.returncode, done.stderr) == (2, "mlci: error: cannot write out-dir: is a directory; give a file "
                                                 "name\n")
    assert not (repo / "out.txt").exists()


def test_a_site_cache_set_by_the_environment_or_dvc_config_is_left_alone(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".dvc").mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DVC_SITE_CACHE_DIR")
    assert dvc_env(tmp_path) == {"DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(tmp_path / "cache/mlci/dvc-site")}
    (tmp_path / ".dvc" / "config.local").write_text("[core]\n    site_cache_dir = /srv/dvc-site\n")
    assert dvc_env(tmp_path) == {"DVC_NO_ANALYTICS": "1"}
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", "/srv/elsewhere")
    (tmp_path / ".dvc" / "config.local").unlink()
    assert dvc_env(tmp_path) == {"DVC_NO_ANALYTICS": "1"}
