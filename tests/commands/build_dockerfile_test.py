"""`mlci build` with Dockerfile builders: real buildah (chroot isolation, no daemon) against the
real registry; kaniko and docker buildx through a recording stand-in (they cannot run here)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import requests

from tests.testing import repos
from tests.testing.gitlab_ci_local import make_git_repo
from tests.testing.registry import Registry

STANDIN = Path(__file__).resolve().parents[1] / "testing" / "standin_builder.py"


def _repo(path: Path, image: dict[str, object]) -> Path:
    path.mkdir(parents=True)
    (path / "Dockerfile").write_text("FROM scratch\nARG VERSION=0\nCOPY hello.txt /hello.txt\nLABEL v=$VERSION\n")
    (path / "hello.txt").write_text("hello\n")
    (path / "mlci.yaml").write_text(json.dumps({"version": 1, "image": image}))
    return make_git_repo(path)


def _build(repo: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    done = repos.run_mlci(repo, "build", "--tag", "v1", env={"SOURCE_DATE_EPOCH": "1700000000", **(env or {})})
    return done.returncode, done.stdout.strip(), done.stderr


def test_buildah_builds_pushes_and_reports_the_registry_digest(registry: Registry, tmp_path: Path,
                                                             buildah_env: dict[str, str]) -> None:
    name = f"docker://{registry.host}/ml/bh"
    repo = _repo(tmp_path / "repo", {"builder": "buildah", "name": name, "plain_http": [registry.host],
                                      "build_args": {"VERSION": "7"}})
    code, out, err = _build(repo, buildah_env)
    assert code == 0, err
    digest = out.split("@")[1]
    response = requests.get(f"{registry.url}/v2/ml/bh/manifests/v1", timeout=10, headers={"Accept": ", ".join([
        "application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"])})
    assert response.headers["Docker-Content-Digest"] == digest
    config = requests.get(f"{registry.url}/v2/ml/bh/blobs/{response.json()['config']['digest']}", timeout=10).json()
    assert config["config"]["Labels"]["v"] == "7"
    head = repos.git(repo, "rev-parse", "HEAD").strip()
    assert config["config"]["Labels"]["org.opencontainers.image.revision"] == head
    code, again, err = _build(repo, buildah_env)
    assert code == 0 and again == out and "reused" in err


def test_buildah_pushes_with_the_registries_section_tls_ca_and_credentials(
        registry_tls: Registry, tmp_path: Path, buildah_env: dict[str, str]) -> None:
    """The destination's `registries` entry (its CA bundle, credentials by variable name) reaches buildah push
    through a private cert dir and auth file, never the command line; the password appears nowhere in the log."""
    name = f"docker://{registry_tls.host}/ml/bh-tls"
    repo = _repo(tmp_path / "repo", {"builder": "buildah", "name": name})
    config = json.loads((repo / "mlci.yaml").read_text())
    config["registries"] = {registry_tls.host: {"ca_bundle": str(registry_tls.ca_bundle),
                                                "username_env": "PUSH_USER", "password_env": "PUSH_PASSWORD"}}
    (repo / "mlci.yaml").write_text(json.dumps(config))
    repos.commit_all(repo, "registries")
    assert registry_tls.username and registry_tls.password
    code, out, err = _build(repo, {**buildah_env, "PUSH_USER": registry_tls.username,
                                   "PUSH_PASSWORD": registry_tls.password})
    assert code == 0, err
    assert out.startswith(f"{name}:v1@sha256:") and registry_tls.password not in err + out


@pytest.mark.parametrize("builder", ["kaniko", "docker"])
def test_kaniko_and_docker_argv_follow_their_documented_flags(builder: str, registry: Registry,
                                                             tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / ("executor" if builder == "kaniko" else "docker")
    tool.write_text(f"#!{sys.executable}\n" + STANDIN.read_text())
    tool.chmod(0o755)
    record = tmp_path / "record.json"
    image: dict[str, object] = {"builder": builder, "name": f"docker://{registry.host}/ml/{builder}",
                                "plain_http": [registry.host], "build_args": {"BASE_IMAGE": "base:1"}}
    if builder == "kaniko":
        image["kaniko_executor"] = str(tool)
    repo = _repo(tmp_path / "repo", image)
    code, out, err = _build(repo, {"STANDIN_RECORD": str(record), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    assert code == 0, err
    argv = json.loads(record.read_text())["argv"]
    assert ["--build-arg", "BASE_IMAGE=base:1"] == argv[argv.index("--build-arg"):argv.index("--build-arg") + 2]
    if builder == "kaniko":
        assert argv[argv.index("--destination") + 1] == f"{registry.host}/ml/kaniko:v1"
        assert "--reproducible" in argv and argv[argv.index("--insecure-registry") + 1] == registry.host
        assert argv[argv.index("--context") + 1] == f"dir://{repo.resolve()}"
    else:
        assert argv[:2] == ["buildx", "build"] and "--push" in argv and "--metadata-file" in argv
    manifest = requests.get(f"{registry.url}/v2/ml/{builder}/manifests/v1", timeout=10,
                            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert out.split("@")[1] == manifest.headers["Docker-Content-Digest"]
