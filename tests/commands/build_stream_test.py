"""A build streams its layers straight into its destination: no layer is written to a temp file (the mlci
process's opens for writing under TMPDIR, seen by a Python audit hook), into a registry or a layout alike.
A registry that cancels a streamed upload mid-chunk gets the layer again, built once more from the start,
and the image is whole."""
from __future__ import annotations

import json
import os
from pathlib import Path

from tests.testing import faultproxy, repos
from tests.testing.faultproxy import Fault, FaultProxy
from tests.testing.gitlab_ci_local import make_git_repo
from tests.testing.registry import Registry, auth_headers, session

fault_proxies = faultproxy.fault_proxies  # the fixture
WEIGHTS = os.urandom(3 << 20)
HOOK = '''
import os, sys
_log, _tmp = os.environ.get("MLCI_TEST_WRITES"), os.environ.get("TMPDIR")
if _log and _tmp:
    _out = open(_log, "a", buffering=1)
    def _hook(event, args):
        if event == "open" and isinstance(args[0], str) and args[0].startswith(_tmp) \\
                and isinstance(args[2], int) and args[2] & (os.O_WRONLY | os.O_RDWR):
            _out.write(f"{os.getpid()} {args[0]}\\n")
    sys.addaudithook(_hook)
'''


def _build(tmp_path: Path, image: dict[str, object], registries: dict[str, object] | None = None
           ) -> tuple[int, str, list[str]]:
    """Build a repo (code and 3 MB of weights) with this `image` section; (exit code, stderr, the files the
    mlci process opened for writing under TMPDIR)."""
    hook, tmp = tmp_path / "hook", tmp_path / "tmp"
    hook.mkdir(exist_ok=True)
    tmp.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(HOOK)
    log = tmp_path / f"writes-{len(list(tmp_path.glob('writes-*')))}.txt"
    config = {"version": 1, "image": {"code": ["src"], "artifacts": ["model"], **image}, "registries": registries or {}}
    repo = make_git_repo(tmp_path / f"repo-{log.stem}", {"src/serve.py": "print('serve')\n",
                                                         "model/weights.bin": WEIGHTS, "mlci.yaml": json.dumps(config)})
    done = repos.run_mlci(repo, "build", "--tag", "v1", env={
        "PYTHONPATH": str(hook), "TMPDIR": str(tmp), "MLCI_TEST_WRITES": str(log),
        "MLCI_CACHE_DIR": str(tmp_path / f"cache-{log.stem}")})
    lines = log.read_text().splitlines() if log.exists() else []
    pid = lines[0].split()[0] if lines else ""
    return done.returncode, done.stderr, [line.split(" ", 1)[1] for line in lines if line.split()[0] == pid]


def test_no_layer_is_written_to_a_temp_file_for_a_registry_or_a_layout(
        registry: Registry, tmp_path: Path) -> None:
    code, err, written = _build(tmp_path, {"name": f"docker://{registry.host}/ml/stream"},
                                {registry.host: {"plain_http": True}})
    assert code == 0, err
    staged = [w for w in written if "/blobs/sha256/" in w]
    assert len(staged) == 2, written  # the config and the manifest: the layers went to the registry
    assert "artifacts layer: sha256:" in err and "written" in err
    code, err, written = _build(tmp_path, {"name": f"oci:{tmp_path / 'layout'}"})
    assert code == 0, err
    assert len([w for w in written if "/blobs/sha256/" in w]) == 2, written  # the layers went into the layout
    assert len(list((tmp_path / "layout" / "blobs" / "sha256").iterdir())) == 4  # code, artifacts, config, manifest


def test_a_stream_the_registry_cancels_mid_chunk_is_built_again_once(registry: Registry, tmp_path: Path,
                                                                     fault_proxies: list[FaultProxy]) -> None:
    proxy = FaultProxy(registry.host, [Fault("PATCH", 2, "drop_mid_body")])
    fault_proxies.append(proxy)
    code, err, _ = _build(tmp_path, {"name": f"docker://{proxy.host}/ml/stream"},
                          {proxy.host: {"plain_http": True, "chunk_size": 1 << 20}})  # 3 MB: several PATCHes
    assert code == 0, err
    assert [f.action for f in proxy.fired()] == ["drop_mid_body"]
    assert "artifacts layer:" in err and "building it again from the start" in err
    pull = auth_headers(registry, ["repository:ml/stream:pull"])
    manifest = session(registry).get(f"{registry.url}/v2/ml/stream/manifests/v1", timeout=30,
                                     headers={"Accept": "application/vnd.oci.image.manifest.v1+json", **pull})
    layers = json.loads(manifest.content)["layers"]
    artifacts = layers[-1]
    assert artifacts["size"] > len(WEIGHTS)
    blob = session(registry).get(f"{registry.url}/v2/ml/stream/blobs/{artifacts['digest']}", timeout=30,
                                 headers=pull)
    assert WEIGHTS in blob.content  # the uncompressed tar holds the weights whole
