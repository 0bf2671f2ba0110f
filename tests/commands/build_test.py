"""`mlci build` (native) against the real registry: layers, labels, reuse by build key, reproducibility,
and a code-only change that uploads only the code layer."""
from __future__ import annotations

import json
import os
from pathlib import Path

from tests.image.support import wheel as _wheel
from tests.testing import repos
from tests.testing.gitlab_ci_local import make_git_repo
from tests.testing.registry import Registry, blob_upload_count


def _model_repo(path: Path, registry_name: str, plain_http: str) -> Path:
    digest = _wheel(path / "wheelhouse")
    (path / "src").mkdir(parents=True)
    (path / "src" / "serve.py").write_text("import tinydep\nprint(tinydep.VALUE)\n")
    (path / "model").mkdir()
    (path / "model" / "weights.bin").write_bytes(os.urandom(0) + bytes(range(256)) * 512)
    (path / "requirements.lock").write_text(f"tinydep==1.0 --hash=sha256:{digest}\n")
    (path / "mlci.yaml").write_text(json.dumps({"version": 1, "image": {
        "name": registry_name, "plain_http": [plain_http], "lock": "requirements.lock",
        "python": "3.11", "libc": "glibc 2.36",  # a scratch base: the dependency layer's platform is named
        "pip_args": ["--no-index", "--find-links", "wheelhouse"], "code": ["src"], "artifacts": ["model"],
        "entrypoint": ["python3", "src/serve.py"], "port": 8080, "user": "10001", "env": {"MODEL": "model"}}}))
    return make_git_repo(path)


def _build(repo: Path, *args: str) -> tuple[int, str, str]:
    done = repos.run_mlci(repo, "build", "--tag", "v1", *args, env={"SOURCE_DATE_EPOCH": "1700000000"})
    return done.returncode, done.stdout.strip(), done.stderr


def test_build_push_reuse_and_code_only_change(registry: Registry, tmp_path: Path) -> None:
    name = f"docker://{registry.host}/ml/credit"
    repo = _model_repo(tmp_path / "model", name, registry.host)
    code, out, err = _build(repo, "--digest-file", "digest.txt", "--dotenv", "build.env")
    assert code == 0, err
    digest = (repo / "digest.txt").read_text().strip()
    assert out == f"{name}:v1@{digest}"
    assert (repo / "build.env").read_text() == f"MLCI_IMAGE={name}:v1\nMLCI_IMAGE_DIGEST={digest}\n"
    import requests
    manifest = requests.get(f"{registry.url}/v2/ml/credit/manifests/v1",
                            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}, timeout=10).json()
    assert len(manifest["layers"]) == 3  # dependencies, code, artifacts
    assert manifest["annotations"]["org.opencontainers.image.revision"] == repos.git(repo, "rev-parse", "HEAD").strip()
    config = requests.get(f"{registry.url}/v2/ml/credit/blobs/{manifest['config']['digest']}", timeout=10).json()
    assert config["config"]["Entrypoint"] == ["python3", "src/serve.py"] and config["config"]["User"] == "10001"
    assert "PYTHONPATH=/opt/mlci/site-packages" in config["config"]["Env"]
    assert config["created"] == "2023-11-14T22:13:20Z"

    uploads = blob_upload_count(registry)
    code, again, err = _build(repo)
    assert code == 0 and again == out and "reused" in err
    assert blob_upload_count(registry) == uploads

    (repo / "src" / "serve.py").write_text("import tinydep\nprint('v2', tinydep.VALUE)\n")
    code, changed, err = _build(repo, "--json")
    assert code == 0, err
    result = json.loads(changed)
    assert result["reused"] is False and result["digest"] != digest
    assert len(result["uploaded"]) == 2  # the code layer and the config: dependencies and weights reused
    assert blob_upload_count(registry) == uploads + 2


def test_two_checkouts_with_other_mtimes_umask_and_owner_build_the_same_digest(tmp_path: Path) -> None:
    origin = _model_repo(tmp_path / "origin", "oci:image", "none")
    repos.git(origin, "add", "-A")
    repos.git(origin, "commit", "-q", "--allow-empty", "-m", "wheelhouse")
    digests = []
    for name, umask, when, owner in (("a", 0o022, 1_000_000, 0), ("b", 0o077, 2_000_000, 4321)):
        old = os.umask(umask)
        try:
            repos.git(tmp_path, "clone", "-q", str(origin), name)
        finally:
            os.umask(old)
        checkout = tmp_path / name
        for path in checkout.rglob("*"):
            if ".git" not in path.parts:
                os.utime(path, (when, when))
                os.lchown(path, owner, owner)
        code, out, err = _build(checkout)
        assert code == 0, err
        digests.append(out.split("@")[1])
    assert digests[0] == digests[1]


def test_history_has_one_entry_per_layer(registry: Registry, tmp_path: Path) -> None:
    name = f"docker://{registry.host}/ml/hist"
    repo = _model_repo(tmp_path / "model", name, registry.host)
    code, _out, err = _build(repo)
    assert code == 0, err
    import requests
    manifest = requests.get(f"{registry.url}/v2/ml/hist/manifests/v1",
                            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}, timeout=10).json()
    config = requests.get(f"{registry.url}/v2/ml/hist/blobs/{manifest['config']['digest']}", timeout=10).json()
    assert len([h for h in config["history"] if not h.get("empty_layer")]) == len(config["rootfs"]["diff_ids"]) == 3


def test_unchanged_layers_are_not_rebuilt_when_the_registry_has_them(registry: Registry, tmp_path: Path) -> None:
    name = f"docker://{registry.host}/ml/cache"
    repo = _model_repo(tmp_path / "model", name, registry.host)
    assert _build(repo)[0] == 0
    (repo / "src" / "serve.py").write_text("print('v2')\n")
    code, _out, err = _build(repo)
    assert code == 0, err
    assert "mlci: dependencies layer: unchanged, already in the destination" in err
    assert "mlci: artifacts layer: unchanged, already in the destination" in err
    assert "mlci: code layer: building" in err
