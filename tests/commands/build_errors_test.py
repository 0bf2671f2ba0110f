"""`mlci build` under CI-runner conditions and bad input: git failures (exit 3 with the fix), the
destination checked before any build, pip locks and pip failures, tags and references, SOURCE_DATE_EPOCH
and a missing CA bundle (exit 2 before any work), and the skip when no image is configured."""
from __future__ import annotations

import io
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.image.support import build, model_repo, tree, wheel
from tests.testing.procs import free_port
from tests.testing.registry import Registry


@pytest.fixture(autouse=True)
def _epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")


def _repo(tmp_path: Path, **image: object) -> Path:
    return model_repo(tmp_path / "repo", {"name": f"oci:{tmp_path / 'out'}", "code": ["src"], **image})


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def test_a_checkout_owned_by_another_user_is_exit_3_with_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A real "dubious ownership": the checkout belongs to another uid, git runs as root without
    safe.directory. Before the fix: exit 0 with tag `latest`, no revision and a 1970 date."""
    if os.geteuid() != 0:
        pytest.fail("this test chowns a checkout to another user: run the suite as root", pytrace=False)
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    repo = _repo(tmp_path)
    subprocess.run(["chown", "-R", "12345:12345", str(repo)], check=True)
    run = build(repo, capsys)
    assert run.code == 3, run.err
    assert "dubious ownership" in run.err
    assert f"git config --global --add safe.directory {repo.resolve()}" in run.err
    assert not (tmp_path / "out").exists()
    subprocess.run(["git", "config", "--global", "--add", "safe.directory", str(repo.resolve())], check=True)
    run = build(repo, capsys, "--json")  # the fix the message gives works
    assert run.code == 0, run.err
    labels = json.loads(run.out)["labels"]
    assert labels["org.opencontainers.image.revision"] == _git(repo, "rev-parse", "HEAD")
    assert not labels["org.opencontainers.image.created"].startswith("1970")


def test_a_repo_without_commits_or_outside_git_is_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "src" / "serve.py").write_text("print()\n")
    (repo / "mlci.yaml").write_text(json.dumps({"version": 1, "image": {"name": f"oci:{tmp_path / 'out'}"}}))
    run = build(repo, capsys, "--tag", "v1")
    assert run.code == 3 and "not a git checkout" in run.err
    _git(repo, "init", "-q")
    run = build(repo, capsys, "--tag", "v1")
    assert run.code == 3 and "has no commits yet" in run.err
    assert not (tmp_path / "out").exists()


def test_a_detached_head_as_ci_checks_out_is_fine(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    repo = _repo(tmp_path)
    sha = _git(repo, "rev-parse", "HEAD")
    _git(repo, "checkout", "-q", "--detach")
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    run = build(repo, capsys, "--json")
    assert run.code == 0, run.err
    result = json.loads(run.out)
    assert result["image"].startswith(f"oci:{tmp_path / 'out'}:{sha[:12]}@")  # tag: the short sha
    assert result["labels"]["org.opencontainers.image.revision"] == sha
    stamp = int(_git(repo, "log", "-1", "--format=%ct"))
    assert result["labels"]["org.opencontainers.image.created"] == time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                 time.gmtime(stamp))


@pytest.mark.parametrize("value", ["abc", "-1", "1e9", "1.5", "99999999999999999999", "\u0661\u0662"])
def test_a_bad_source_date_epoch_is_exit_2_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    run = build(_repo(tmp_path), capsys, "--tag", "v1")
    assert run.code == 2 and "SOURCE_DATE_EPOCH=" in run.err and "Traceback" not in run.err


@pytest.mark.parametrize("args, image, message", [
    (["--tag", "bad tag"], {}, "--tag: 'bad tag' is not a valid image tag"),
    (["--tag=-x"], {}, "--tag: '-x' is not a valid image tag"),
    (["--tag", "v2"], {"name": "oci:{out}:v1"}, "--tag v2: image.name already has the tag 'v1'"),
    ([], {"name": "docker://127.0.0.1:5000"}, "names no repository in a registry"),
    ([], {"name": "docker://bank/model"}, "names no registry host"),
    ([], {"base": "docker://python:3.11-slim"}, "names no repository in a registry"),
    ([], {"name": "docker://reg.bank/m@sha256:" + "a" * 64}, "a destination is a repository"),
    ([], {"ca_bundle": "/nonexistent/ca.pem"}, "image.ca_bundle: /nonexistent/ca.pem: not found"),
    ([], {"workdir": "app"}, "image.workdir: 'app': must be an absolute path"),
    ([], {"workdir": "/app\nUSER root"}, "image.workdir: '/app\\nUSER root': must be an absolute path in the image, "
                                           "without .. or a control character"),
    ([], {"port": 70000}, "image.port: 70000: a TCP port is 1 to 65535"),
    ([], {"port": 0}, "image.port: 0: a TCP port is 1 to 65535"),
    ([], {"user": "app\nroot"}, "image.user: 'app\\nroot': a user or uid"),
    ([], {"user": "1000:1000:1"}, "image.user: '1000:1000:1': a user or uid"),
    ([], {"env": {"A=B": "c"}}, "image.env: 'A=B': a variable name is not empty and holds no '='"),
    ([], {"env": {"": "c"}}, "image.env: '': a variable name"),
    ([], {"env": {"MY VAR": "c"}}, "image.env: 'MY VAR': a variable name"),
    ([], {"libc": "glibc 2.999999999999"}, "image.libc: 'glibc 2.999999999999' is not like 'glibc 2.36'"),
    ([], {"libc": "glibc 2.100000"}, "image.libc: 'glibc 2.100000' is not like"),
    ([], {"libc": "glibc 2.100"}, "image.libc: 'glibc 2.100': wheels are tagged for glibc 2.0 to 2.99"),
    ([], {"libc": "musl 2.1"}, "image.libc: 'musl 2.1': wheels are tagged for musl 1.0 to 1.99"),
])
def test_bad_tags_references_and_paths_are_exit_2_before_any_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], image: dict[str, object],
        message: str) -> None:
    image = {k: v.format(out=tmp_path / "out") if isinstance(v, str) else v for k, v in image.items()}
    repo = _repo(tmp_path, **image)
    before = tree(tmp_path)
    run = build(repo, capsys, *args)
    assert run.code == 2 and message in run.err, run.err
    assert tree(tmp_path) == before


def test_the_tag_in_image_name_is_the_tag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = build(_repo(tmp_path, name=f"oci:{tmp_path / 'out'}:stable"), capsys)
    assert run.code == 0 and run.out.startswith(f"oci:{tmp_path / 'out'}:stable@sha256:"), run.err


def test_nothing_configured_is_a_skip_not_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The GitLab job always runs (rules: cannot read mlci.yaml): no image.name is exit 0 and one line."""
    repo = model_repo(tmp_path / "repo", {"code": ["src"]})
    run = build(repo, capsys)
    assert (run.code, run.out) == (0, "skipped: no image.name")
    run = build(repo, capsys, "--json")
    assert run.code == 0 and json.loads(run.out) == {"skipped": "no image.name"}


def _locked_repo(tmp_path: Path, lock: str, **image: object) -> Path:
    digest = wheel(tmp_path / "repo" / "wheelhouse")
    (tmp_path / "repo" / "requirements.lock").write_text(lock.format(digest=digest))
    return _repo(tmp_path, lock="requirements.lock", pip_args=["--no-index", "--find-links", "wheelhouse"],
                 python="3.11", libc="glibc 2.36", **image)  # a scratch base: the platform is named


@pytest.mark.parametrize("lock, message", [
    ("tinydep>=1.0 --hash=sha256:{digest}\n", "'tinydep>=1.0' is not pinned to one version"),
    ("tinydep==1.0\n", "tinydep has no --hash"),
    ("tinydep\n", "'tinydep' is not pinned"),
    ("-r other.txt\n", "-r is not allowed in image.lock"),
    ("# nothing\n", "lists no requirements"),
])
def test_an_unpinned_or_unhashed_lock_is_exit_2_with_how_to_make_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], lock: str, message: str) -> None:
    run = build(_locked_repo(tmp_path, lock), capsys, "--tag", "v1")
    assert run.code == 2 and message in run.err, run.err
    assert "pip-compile --generate-hashes" in run.err and "uv pip compile --generate-hashes" in run.err


def test_a_pip_failure_with_a_valid_lock_is_exit_4_with_pips_tail(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Before the fix a failing pip was an internal error (exit 70)."""
    run = build(_locked_repo(tmp_path, "tinydep==1.0 --hash=sha256:" + "0" * 64 + "\n"), capsys, "--tag", "v1")
    assert run.code == 4, run.err
    assert "pip could not install image.lock requirements.lock" in run.err
    assert "DO NOT MATCH THE HASHES" in run.err and "Traceback" not in run.err


def test_a_wrong_password_fails_before_anything_is_built(registry_basic: Registry, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import base64
    auth = tmp_path / "auth.json"
    token = base64.b64encode(f"{registry_basic.username}:wrong-password".encode()).decode()
    auth.write_text(json.dumps({"auths": {registry_basic.host: {"auth": token}}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth))
    repo = _locked_repo(tmp_path, "tinydep==1.0 --hash=sha256:{digest}\n",
                        name=f"docker://{registry_basic.host}/ml/model", plain_http=[registry_basic.host])
    run = build(repo, capsys, "--tag", "v1")
    assert run.code == 3 and "401 on GET /v2/" in run.err, run.err
    assert "layer: building" not in run.err and "wrong-password" not in run.err


def test_a_registry_that_is_down_fails_fast(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host = f"127.0.0.1:{free_port()}"
    repo = _repo(tmp_path, name=f"docker://{host}/ml/model", plain_http=[host])
    started = time.monotonic()
    run = build(repo, capsys, "--tag", "v1")
    assert run.code == 3 and f"registry {host}: GET /v2/: ConnectionError" in run.err
    assert time.monotonic() - started < 5 and "layer: building" not in run.err


def test_push_rights_are_checked_before_the_build(registry_token: Registry, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import base64
    assert registry_token.token_issuer is not None
    registry_token.token_issuer.allowed_actions = {"pull"}
    auth = tmp_path / "auth.json"
    token = base64.b64encode(f"{registry_token.username}:{registry_token.password}".encode()).decode()
    auth.write_text(json.dumps({"auths": {registry_token.host: {"auth": token}}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth))
    repo = _repo(tmp_path, name=f"docker://{registry_token.host}/ml/model", plain_http=[registry_token.host])
    run = build(repo, capsys, "--tag", "v1")
    assert run.code == 3 and "on POST /v2/ml/model/blobs/uploads/" in run.err, run.err
    assert "layer: building" not in run.err


def test_an_output_path_that_is_a_directory_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "dir").mkdir()
    run = build(_repo(tmp_path), capsys, "--tag", "v1", "--dotenv", str(tmp_path / "dir"))
    assert run.code == 2 and "--dotenv" in run.err and "is a directory" in run.err


def test_a_destination_that_is_not_a_layout_is_refused_before_the_build(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("someone's files\n")
    run = build(_repo(tmp_path), capsys, "--tag", "v1")
    assert run.code == 2 and "not an OCI image layout (no index.json) and not empty" in run.err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["notes.txt"]
    (tmp_path / "out" / "index.json").write_text("{broken")
    second = model_repo(tmp_path / "second", {"name": f"oci:{tmp_path / 'out'}", "code": ["src"]})
    run = build(second, capsys, "--tag", "v1")
    assert run.code == 3 and "index.json: not valid JSON" in run.err and "layer: building" not in run.err


@pytest.mark.parametrize("tamper, message", [
    ("swap", "config: blob sha256:"),  # the same length, other bytes: "digest did not match"
    ("fifo", "is a FIFO, not a regular file"),
])
def test_a_base_layout_whose_config_is_not_what_its_manifest_names_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], tamper: str, message: str) -> None:
    """A base image's config (its Env, Entrypoint, User) goes into the new image: from a layout too it is read
    only when it is the bytes its manifest names, and a FIFO under its name is refused, never waited on."""
    from mlci.oci.layout import Layout
    from mlci.oci.manifest import OCI_CONFIG, OCI_MANIFEST, Manifest, sha256_digest

    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"User": "app"},
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    base = Layout(tmp_path / "base")
    base.init()
    base.put_blob(sha256_digest(config), io.BytesIO(config))
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [], "config": {
        "mediaType": OCI_CONFIG, "digest": sha256_digest(config), "size": len(config)}}).encode()
    base.put_manifest(Manifest.of(manifest, OCI_MANIFEST), "1")
    repo = _repo(tmp_path, base=f"oci:{base.root}:1", python="3.11", libc="glibc 2.36")
    assert build(repo, capsys, "--tag", "v1").code == 0  # as it was written
    path = base.blob_path(sha256_digest(config))
    path.unlink()
    if tamper == "swap":
        path.write_bytes(config.replace(b'"app"', b'"0"  '))  # root instead of app, the size kept
    else:
        os.mkfifo(path)
    run = build(repo, capsys, "--tag", "v2")
    assert run.code == 3 and message in run.err and len(run.err.strip().splitlines()) == 1, run.err
    if tamper == "swap":
        assert "digest did not match" in run.err
