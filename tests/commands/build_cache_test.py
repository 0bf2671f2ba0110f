"""The registry is the build cache: a code-only change on a new commit, with default settings (no
SOURCE_DATE_EPOCH), uploads only the code layer and the config (plus the manifest and the code layer's
cache record); a fresh runner with an empty cache dir builds only the code layer and never downloads the
weights from the DVC remote (real docker-registry, real DVC with a moto S3 remote, both access logs read).
Records are OCI artifacts without a subject; a record whose blob is gone is not trusted; weights changed
without `dvc commit` are refused."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import requests

from mlci.image.cache import ARTIFACT_TYPE, DIFF_ID, INPUT, RECORD_PREFIX
from mlci.oci.manifest import OCI_EMPTY
from tests.image.support import wheel
from tests.testing import repos
from tests.testing.registry import Registry, access_log
from tests.testing.s3 import S3Server

WEIGHTS = "model/weights.bin"
MAKE_WEIGHTS = ("import os, random; os.makedirs('model', exist_ok=True); "
                "open('model/weights.bin', 'wb').write(random.Random(7).randbytes(3 << 20))")
OCI = "application/vnd.oci.image.manifest.v1+json"


def _repo(path: Path, image: dict[str, object], s3: S3Server | None = None) -> Path:
    """A git + DVC repo whose `train` stage makes 3 MiB of weights (recorded in dvc.lock), a tiny locked
    dependency and the code; with `s3`, a DVC remote there, pushed."""
    digest = wheel(path / "wheelhouse")
    (path / "src").mkdir(parents=True)
    (path / "src" / "serve.py").write_text("print('v1')\n")
    (path / "requirements.lock").write_text(f"tinydep==1.0 --hash=sha256:{digest}\n")
    (path / "mlci.yaml").write_text(json.dumps({"version": 1, "image": {
        "lock": "requirements.lock", "pip_args": ["--no-index", "--find-links", "wheelhouse"], "code": ["src"],
        "python": "3.11", "libc": "glibc 2.36",  # a scratch base: the dependency layer's platform is named
        "artifacts": [WEIGHTS], **image}}))
    repos.git(path, "init", "-q", "-b", "main")
    repos.git(path, "config", "user.name", "t")
    repos.git(path, "config", "user.email", "t@example.invalid")
    repos.dvc(path, "init", "-q")
    repos.dvc(path, "stage", "add", "-q", "-n", "train", "-o", WEIGHTS, f'python -c "{MAKE_WEIGHTS}"')
    repos.dvc(path, "repro", "-q")
    if s3 is not None:
        bucket = s3.create_bucket()
        repos.dvc(path, "remote", "add", "-d", "store", f"s3://{bucket}/dvc")
        repos.dvc(path, "remote", "modify", "store", "endpointurl", s3.endpoint_url)
        subprocess.run(["dvc", "push", "-q"], cwd=path, check=True, env={**os.environ, **s3.env()})
    repos.commit_all(path, "model")
    return path


def _build(repo: Path, cache: Path, extra: dict[str, str] | None = None) -> tuple[int, Any, str]:
    env = {"MLCI_CACHE_DIR": str(cache), "SOURCE_DATE_EPOCH": "", **(extra or {})}
    done = repos.run_mlci(repo, "build", "--json", env=env)
    return done.returncode, json.loads(done.stdout) if done.returncode == 0 else {}, done.stderr


def _commit(repo: Path, when: str, files: dict[str, str]) -> None:
    """Commit a change at `when` (author and committer time: what the build stamps into `created`)."""
    for path, text in files.items():
        (repo / path).write_text(text)
    repos.git(repo, "add", "-A")
    subprocess.run(["git", "commit", "-qm", "change", "--date", when], cwd=repo, check=True,
                   env={**os.environ, "GIT_COMMITTER_DATE": when})


def _since(registry: Registry, mark: int) -> list[tuple[str, str]]:
    return [(e.method, e.target) for e in access_log(registry)[mark:] if e.status < 400]


def _uploaded(entries: list[tuple[str, str]]) -> set[str]:
    return {m.group(1) for method, target in entries if method == "PUT"
            for m in [re.search(r"[?&]digest=(sha256:[0-9a-f]{64})", target)] if m}


def _manifest_puts(entries: list[tuple[str, str]], repo: str) -> list[str]:
    return sorted(target.split("/manifests/")[1] for method, target in entries
                  if method == "PUT" and target.startswith(f"/v2/{repo}/manifests/"))


def _manifest(registry: Registry, repo: str, reference: str) -> Any:
    answer = requests.get(f"{registry.url}/v2/{repo}/manifests/{reference}", headers={"Accept": OCI}, timeout=10)
    answer.raise_for_status()
    return answer.json()


def _weights_downloads(s3: S3Server, md5: str) -> list[str]:
    """GETs of the weights' object in the DVC remote (moto's request log)."""
    key = f"files/md5/{md5[:2]}/{md5[2:]}"
    return [line for line in s3.log_file.read_text(errors="replace").splitlines() if "GET" in line and key in line]


def test_a_code_only_change_uploads_the_code_layer_and_a_fresh_runner_pulls_no_weights(
        registry: Registry, s3: S3Server, tmp_path: Path) -> None:
    name = f"docker://{registry.host}/ml/cached"
    repo = _repo(tmp_path / "model", {"name": name, "plain_http": [registry.host]}, s3)
    md5 = re.findall(r"md5: ([0-9a-f]{32})", repos.git(repo, "show", "HEAD:dvc.lock"))[-1]
    code, _first, err = _build(repo, tmp_path / "cache")
    assert code == 0, err
    tags = requests.get(f"{registry.url}/v2/ml/cached/tags/list", timeout=10).json()["tags"]
    assert len([t for t in tags if t.startswith(RECORD_PREFIX)]) == 3  # dependencies, code, artifacts

    # 1. The same runner (warm cache dir), a code-only change on a new commit, default settings.
    _commit(repo, "2031-02-03T04:05:06Z", {"src/serve.py": "print('v2')\n"})
    mark = len(access_log(registry))
    code, second, err = _build(repo, tmp_path / "cache")
    assert code == 0, err
    manifest = _manifest(registry, "ml/cached", str(second["digest"]))
    layers = manifest["layers"]
    assert isinstance(layers, list) and len(layers) == 3
    code_layer, config = layers[1]["digest"], manifest["config"]["digest"]
    entries = _since(registry, mark)
    assert _uploaded(entries) == {code_layer, config}
    puts = _manifest_puts(entries, "ml/cached")
    assert len(puts) == 3 and sum(p.startswith(RECORD_PREFIX) for p in puts) == 1  # tag, key tag, code record
    assert sum(p.startswith("mlci-key-") for p in puts) == 1
    assert [m for m, t in entries if "/blobs/uploads/" in t and m == "PATCH"] == []

    # 2. A fresh runner: a new clone (no weights, no DVC cache), an empty MLCI_CACHE_DIR, another code change.
    runner = tmp_path / "runner"
    repos.git(tmp_path, "clone", "-q", str(repo), str(runner))
    repos.git(runner, "config", "user.name", "t")
    repos.git(runner, "config", "user.email", "t@example.invalid")
    _commit(runner, "2032-01-01T00:00:00Z", {"src/serve.py": "print('v3')\n"})
    assert not (runner / WEIGHTS).exists()
    mark = len(access_log(registry))
    s3_mark = len(_weights_downloads(s3, md5))
    code, third, err = _build(runner, tmp_path / "empty-cache", s3.env())
    assert code == 0, err
    assert "mlci: code layer: building" in err
    for layer in ("dependencies", "artifacts"):
        assert re.search(rf"mlci: {layer} layer: unchanged, already in the destination \(sha256:\w+, from the "
                         r"destination's build cache\)", err), err
    assert "pulling" not in err and not (runner / WEIGHTS).exists()
    assert _weights_downloads(s3, md5)[s3_mark:] == []
    manifest = _manifest(registry, "ml/cached", str(third["digest"]))
    assert manifest["layers"][0] == layers[0] and manifest["layers"][2] == layers[2]
    assert _uploaded(_since(registry, mark)) == {manifest["layers"][1]["digest"],
                                                  manifest["config"]["digest"]}
    config = requests.get(f"{registry.url}/v2/ml/cached/blobs/{manifest['config']['digest']}",
                          timeout=10).json()
    assert config["created"] == "2032-01-01T00:00:00Z"  # the commit time: only in the config and labels

    # Another fresh runner on the same commit: the build key needs no weight either; the image is reused.
    again = tmp_path / "runner-2"
    repos.git(tmp_path, "clone", "-q", str(runner), str(again))
    code, reused, err = _build(again, tmp_path / "empty-cache-3", s3.env())
    assert code == 0 and reused["reused"] is True and reused["digest"] == third["digest"], err
    assert "pulling" not in err and not (again / WEIGHTS).exists() and _weights_downloads(s3, md5)[s3_mark:] == []

    # 3. The artifacts layer's blob is gone from the destination: its record is not trusted, the weights
    # are pulled from the DVC remote and the layer is built again (same bytes, same digest).
    artifacts = layers[2]["digest"]
    assert requests.delete(f"{registry.url}/v2/ml/cached/blobs/{artifacts}", timeout=10).status_code == 202
    _commit(runner, "2032-01-02T00:00:00Z", {"src/serve.py": "print('v4')\n"})
    code, fourth, err = _build(runner, tmp_path / "empty-cache-2", s3.env())
    assert code == 0, err
    assert "mlci: artifacts layer: building" in err and "pulling model/weights.bin" in err
    assert len(_weights_downloads(s3, md5)) > s3_mark
    assert _manifest(registry, "ml/cached", str(fourth["digest"]))["layers"][2] == layers[2]


def test_a_cache_record_is_an_artifact_without_a_subject_naming_the_layer(registry: Registry, tmp_path: Path) -> None:
    repo = _repo(tmp_path / "model", {"name": f"docker://{registry.host}/ml/records", "plain_http": [registry.host]})
    code, built, err = _build(repo, tmp_path / "cache")
    assert code == 0, err
    image = _manifest(registry, "ml/records", str(built["digest"]))
    config = requests.get(f"{registry.url}/v2/ml/records/blobs/{image['config']['digest']}",
                          timeout=10).json()
    diff_ids = dict(zip([layer["digest"] for layer in image["layers"]], config["rootfs"]["diff_ids"], strict=True))
    tags = [t for t in requests.get(f"{registry.url}/v2/ml/records/tags/list", timeout=10).json()["tags"]
            if t.startswith(RECORD_PREFIX)]
    seen = {}
    for tag in tags:
        record = _manifest(registry, "ml/records", tag)
        assert record["artifactType"] == ARTIFACT_TYPE and "subject" not in record
        assert record["config"] == {"mediaType": OCI_EMPTY, "size": 2,
                                    "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"}
        [layer] = record["layers"]
        annotations = record["annotations"]
        assert annotations[INPUT] == "sha256:" + tag.removeprefix(RECORD_PREFIX)
        assert annotations[DIFF_ID] == diff_ids[layer["digest"]]
        seen[annotations["io.mlci.build-cache.layer"]] = layer
    assert sorted(seen) == ["artifacts", "code", "dependencies"]
    assert [seen[n] for n in ("dependencies", "code", "artifacts")] == image["layers"]
    assert [seen[n]["mediaType"] for n in ("dependencies", "code", "artifacts")] == [
        "application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar"]  # weights uncompressed by default
    referrers = requests.get(f"{registry.url}/v2/ml/records/referrers/{built['digest']}", timeout=10)
    assert referrers.status_code == 404  # no referrers API here; and no tag-schema fallback index either
    assert f"sha256-{str(built['digest'])[7:]}" not in tags

    # A record that names something else (here: with a subject) is ignored with a warning and replaced.
    code_tag = next(t for t in tags if _manifest(registry, "ml/records", t)["annotations"][
        "io.mlci.build-cache.layer"] == "code")
    bad = {**_manifest(registry, "ml/records", code_tag), "subject": image["config"]}
    assert requests.put(f"{registry.url}/v2/ml/records/manifests/{code_tag}", data=json.dumps(bad),
                        headers={"Content-Type": OCI}, timeout=10).status_code == 201
    config_only = (repo / "mlci.yaml").read_text().replace('"code":', '"user": "10001", "code":')
    _commit(repo, "2031-01-01T00:00:00Z", {"mlci.yaml": config_only})  # a new build key, the same code layer
    code, again, err = _build(repo, tmp_path / "empty")
    assert code == 0, err
    assert f"the destination's {code_tag} is not an mlci build-cache record for this input; ignored" in err
    assert "mlci: code layer: building" in err
    assert "subject" not in _manifest(registry, "ml/records", code_tag)  # replaced by a good one
    assert _manifest(registry, "ml/records", str(again["digest"]))["layers"] == image["layers"]


def test_weights_changed_before_the_first_build_are_refused_as_they_stream(tmp_path: Path) -> None:
    """No pass over the weights before the build: their md5 is checked on the one read that layers them,
    and a mismatch refuses the build before the layer is finished (no weights blob, no image, no tag). A
    build that read them remembers their md5, so the next build's check reads nothing."""
    repo = _repo(tmp_path / "model", {"name": f"oci:{tmp_path / 'out'}"})
    weights = repo / WEIGHTS
    good = weights.read_bytes()
    weights.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # the same size: only the bytes tell
    code, _built, err = _build(repo, tmp_path / "cache")
    assert code == 2 and err.strip().splitlines()[-1].startswith(
        f"mlci: error: image.artifacts: {WEIGHTS} differs from what DVC recorded for {WEIGHTS} (md5 "), err
    assert "Traceback" not in err
    out = tmp_path / "out"
    assert not (out / "index.json").exists() or json.loads((out / "index.json").read_text())["manifests"] == []
    assert all(b.stat().st_size < len(good) for b in out.glob("blobs/sha256/*"))  # no weights layer
    weights.write_bytes(good)
    code, _built, err = _build(repo, tmp_path / "cache")
    assert code == 0 and "mlci: artifacts layer: building" in err, err
    [index] = (tmp_path / "cache").rglob("file-hashes.json")
    remembered = json.loads(index.read_text())
    md5 = hashlib.md5(good).hexdigest()
    assert [v[3] for k, v in remembered.items() if k.startswith("md5:")] == [md5]


def test_weights_changed_without_dvc_commit_are_refused(tmp_path: Path) -> None:
    """The layer recorded for dvc.lock's md5 would not hold what the workspace has; the image's
    io.mlci.dvc-lock.digest label would not tell the truth either."""
    repo = _repo(tmp_path / "model", {"name": f"oci:{tmp_path / 'out'}"})
    code, _built, err = _build(repo, tmp_path / "cache")
    assert code == 0, err
    (repo / WEIGHTS).write_bytes(b"retrained by hand")
    before = sorted(p.name for p in (tmp_path / "out" / "blobs" / "sha256").iterdir())
    code, _built, err = _build(repo, tmp_path / "cache")
    assert code == 2 and err.strip().splitlines()[-1].startswith(
        f"mlci: error: image.artifacts: {WEIGHTS} differs from what DVC recorded for {WEIGHTS} (md5 "), err
    assert "dvc commit" in err and f"dvc checkout {WEIGHTS}" in err and "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / "out" / "blobs" / "sha256").iterdir()) == before
    repos.dvc(repo, "commit", "-q", "-f")
    code, _built, err = _build(repo, tmp_path / "cache")
    assert code == 0 and "mlci: artifacts layer: building" in err, err
    assert re.search(r"mlci: code layer: unchanged, already in the destination \(sha256:\w+, from the local "
                     r"layer index\)", err), err  # a layout: the local index is the cache, checked against it
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    names = [m.get("annotations", {}).get("org.opencontainers.image.ref.name", "") for m in index["manifests"]]
    assert not [n for n in names if n.startswith(RECORD_PREFIX)]  # layouts get no records


def test_dvc_added_weights_are_keyed_by_their_dvc_file_and_not_pulled_when_their_layer_is_known(
        tmp_path: Path) -> None:
    """`dvc add`ed weights (a `.dvc` file, no stage): a layout and the local index, the weights gone from the
    workspace and from DVC's cache, and no remote at all: the layer is known, nothing is pulled."""
    repo = tmp_path / "model"
    (repo / "model").mkdir(parents=True)
    (repo / "src").mkdir()
    (repo / "src" / "serve.py").write_text("print('v1')\n")
    (repo / "model" / "weights.bin").write_bytes(os.urandom(1 << 20))
    (repo / "mlci.yaml").write_text(json.dumps({"version": 1, "image": {
        "name": f"oci:{tmp_path / 'out'}", "code": ["src"], "artifacts": ["model"]}}))
    repos.git(repo, "init", "-q", "-b", "main")
    repos.dvc(repo, "init", "-q")
    repos.dvc(repo, "add", "-q", WEIGHTS)
    repos.commit_all(repo, "model")
    code, first, err = _build(repo, tmp_path / "cache")
    assert code == 0, err
    (repo / WEIGHTS).unlink()
    shutil.rmtree(repo / ".dvc" / "cache")
    _commit(repo, "2031-01-01T00:00:00Z", {"src/serve.py": "print('v2')\n"})
    code, second, err = _build(repo, tmp_path / "cache")
    assert code == 0, err
    assert "mlci: artifacts layer: unchanged, already in the destination" in err and "pulling" not in err
    layers = [json.loads((tmp_path / "out" / "blobs" / "sha256" / built["digest"][7:]).read_text())["layers"]
              for built in (first, second)]
    assert layers[0][1] == layers[1][1] and layers[0][0] != layers[1][0]  # same weights layer, new code layer
