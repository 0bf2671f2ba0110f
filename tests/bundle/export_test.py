"""`mlci bundle export` against a real registry holding an image built and scanned by mlci (its `mlci-key-*` tag
and `mlci-cache-*` records beside it, a scan record and an SBOM attached, signed once already): the plan is that
image and nothing else, a directory bundle is an OCI layout that skopeo, the layout endpoint, the scan record's
finder and cosign's verifier read, refusals write nothing, an incremental bundle after a code-only change carries
only the changed layers, and a source that serves a corrupt blob leaves nothing at the output."""
from __future__ import annotations

import dataclasses
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from mlci import settings
from mlci.bundle import imageplan
from mlci.bundle.export import ExportRequest, export
from mlci.bundle.imageplan import InsideSignature, Planned
from mlci.core.errors import GateFailed, UsageError
from mlci.oci.copy import LayoutEndpoint, RegistryEndpoint, open_endpoint
from mlci.oci.layout import Layout
from mlci.oci.reference import parse
from mlci.promote.settings import Signing
from mlci.scan import record
from mlci.sign import cosign, keys
from tests.image.support import model_repo
from tests.sign.support import KeyPair, p256
from tests.testing import repos
from tests.testing.registry import Registry, access_log, start_registry, stop_registry
from tests.testing.secrets import fresh_secrets  # noqa: F401 - a fixture
from tests.testing.trivydb import make_db

pytestmark = pytest.mark.usefixtures("fresh_secrets")  # keys register their PEM as secrets

INSIDE = "docker://registry.prod.invalid:5000/prod/credit"  # never contacted: the export only names it
BRANCH = {"CI_COMMIT_BRANCH": "main"}
WEIGHTS = bytes(range(256)) * 64


@dataclass(frozen=True)
class Source:
    """The model repo, its image in the dev registry (built, scanned, signed by `stage`) and the signing keys."""

    dev: Registry
    repo: Path
    image: str  # docker://HOST/ml/credit:1.0
    digest: str
    keys: KeyPair  # promote.signing's key: signs the bundle and the image for the inside
    stage: KeyPair  # the key of an earlier signature of the image at the source


def _mlci(repo: Path, *args: str) -> str:
    done = repos.run_mlci(repo, *args, env=BRANCH, check=True)
    return done.stdout.strip()


def _build_and_scan(repo: Path, tag: str) -> str:
    """`mlci build` and `mlci scan` of the repo's HEAD; the image's digest."""
    built = _mlci(repo, "build", "--tag", tag)
    _mlci(repo, "scan", built.rsplit("@", 1)[0])
    return built.rsplit("@", 1)[1]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    base = tmp_path_factory.mktemp("export")
    dev = start_registry(directory=base / "dev")
    try:
        db = make_db(base / "db", advisories=())
        signing, stage = p256(base / "keys"), p256(base / "keys", "stage")
        repo = model_repo(base / "repo", {"name": f"docker://{dev.host}/ml/credit", "code": ["src"],
                                          "artifacts": ["model/weights.bin"]}, {"model/weights.bin": WEIGHTS})
        config = json.loads((repo / "mlci.yaml").read_text())
        config["registries"] = {dev.host: {"plain_http": True}}
        config["scan"] = {"cache_dir": str(db.cache_dir)}
        config["promote"] = {"signing": {"key_file": str(signing.private)}, "environments": {
            "prod": {"via": "bundle", "image": INSIDE, "branches": ["main"]},
            "release": {"via": "bundle", "image": INSIDE, "tags": r"v\d+\.\d+\.\d+"}}}
        (repo / "mlci.yaml").write_text(json.dumps(config))
        repos.commit_all(repo, "bundles for prod")
        digest = _build_and_scan(repo, "1.0")
        endpoint = _endpoint(dev)
        cosign.sign(endpoint, digest, keys.load_signing_key(Signing(key_file=str(stage.private)), base),
                    docker_reference=f"{dev.host}/stage/credit")
        yield Source(dev, repo, f"docker://{dev.host}/ml/credit:1.0", digest, signing, stage)
    finally:
        stop_registry(dev)


def _endpoint(registry: Registry, repository: str = "ml/credit") -> RegistryEndpoint:
    endpoint, _ = open_endpoint(parse(f"docker://{registry.host}/{repository}"), plain_http=(registry.host,))
    assert isinstance(endpoint, RegistryEndpoint)
    return endpoint


def _config(repo: Path) -> settings.Config:
    return settings.load(None, repo).config


def _registry_json(registry: Registry, path: str) -> tuple[Any, bytes]:
    """A registry answer read with plain HTTP, not through mlci: the expected side of the assertions."""
    accept = ", ".join(["application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
                        "application/vnd.docker.distribution.manifest.v2+json"])
    response = requests.get(f"http://{registry.host}/v2/{path}", headers={"Accept": accept}, timeout=10)
    response.raise_for_status()
    return response.json(), response.content


def _blobs_of(registry: Registry, reference: str) -> tuple[str, set[str], set[str]]:
    """A manifest's digest (by plain HTTP), its config and its layers."""
    body, data = _registry_json(registry, f"ml/credit/manifests/{reference}")
    import hashlib

    return ("sha256:" + hashlib.sha256(data).hexdigest(), {body["config"]["digest"]},
            {layer["digest"] for layer in body["layers"]})


def _write_dir(files: list[Planned], directory: Path) -> None:
    """The planned files as a tree, each checked against its planned size and sha256."""
    import hashlib

    for planned in files:
        target = directory / planned.name
        target.parent.mkdir(parents=True, exist_ok=True)
        with planned.open() as stream:
            data = stream.read()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (planned.size, planned.sha256), planned.name
        target.write_bytes(data)


def test_the_plan_is_the_image_its_referrers_and_signatures_and_reads_back_as_a_layout(
        source: Source, tmp_path: Path) -> None:
    src = _endpoint(source.dev)
    top = src.get_manifest("1.0")
    key = keys.load_signing_key(Signing(key_file=str(source.keys.private)), tmp_path)
    plan = imageplan.plan_image(src, top, "v1.0.0", sign=InsideSignature(key, "registry.prod.invalid:5000/prod/credit"))
    # the expected side, by plain HTTP: the image, the referrers of the fallback index, the .sig tag
    digest, config, layers = _blobs_of(source.dev, "1.0")
    hexdigest = digest.removeprefix("sha256:")
    fallback, _ = _registry_json(source.dev, f"ml/credit/manifests/sha256-{hexdigest}")
    referrers = {entry["digest"] for entry in fallback["manifests"]}
    assert {entry.get("artifactType") for entry in fallback["manifests"]} == {record.RECORD_TYPE, record.SBOM_TYPE}
    referrer_blobs = set().union(*(set().union(*_blobs_of(source.dev, r)[1:]) for r in referrers))
    planned = {f.name for f in plan.files}
    sig = next(m for m in plan.manifests if m.digest == plan.signature)
    expected = {digest, *config, *layers, *referrers, *referrer_blobs, sig.digest, *(b.digest for b in sig.blobs())}
    assert planned == {"oci-layout", "index.json", *(imageplan.blob_name(d) for d in expected)}
    assert len(planned) == len(plan.files)  # each once
    tags, _ = _registry_json(source.dev, "ml/credit/tags/list")
    kept_out = [t for t in tags["tags"] if t.startswith(("mlci-cache-", "mlci-key-"))]
    assert any(t.startswith("mlci-cache-") for t in kept_out) and any(t.startswith("mlci-key-") for t in kept_out)
    for tag in (t for t in kept_out if t.startswith("mlci-cache-")):
        assert _blobs_of(source.dev, tag)[0] not in {m.digest for m in plan.manifests}
    # written out as it is planned, the files are an OCI layout that mlci and skopeo read
    bundle = tmp_path / "layout"
    _write_dir(plan.files, bundle)
    index = json.loads((bundle / "index.json").read_text())
    assert {e.get("annotations", {}).get("org.opencontainers.image.ref.name") for e in index["manifests"]} \
        == {"v1.0.0", f"sha256-{hexdigest}.sig", None}
    layout = LayoutEndpoint(Layout(bundle))
    assert layout.get_manifest("v1.0.0").digest == digest
    assert [r.verdict for r in record.find(layout, digest)] == ["pass"]
    signers = set()
    for pair in (source.keys, source.stage):  # the source's signature kept, the inside's appended
        found = cosign.verify(layout, digest, keys.load_public_key(pair.public))
        signers |= {v.docker_reference for v in found}
    assert signers == {"registry.prod.invalid:5000/prod/credit", f"{source.dev.host}/stage/credit"}
    shown = subprocess.run(["skopeo", "inspect", f"oci:{bundle}:v1.0.0"], capture_output=True, text=True, check=True)
    assert json.loads(shown.stdout)["Digest"] == digest


def test_without_a_signature_key_nothing_is_read(source: Source, tmp_path: Path) -> None:
    config = _config(source.repo)
    unsigned = dataclasses.replace(config, promote=dataclasses.replace(config.promote, signing=Signing()))
    mark = len(access_log(source.dev))
    with pytest.raises(UsageError, match="a bundle is always signed"):
        export(ExportRequest(source.image, "prod", tmp_path / "b", "dir"), unsigned, source.repo, source.repo,
               BRANCH)
    assert access_log(source.dev)[mark:] == [] and not (tmp_path / "b").exists()


@pytest.mark.parametrize("case", ["ref", "scan-policy", "revision"])
def test_a_policy_refusal_writes_nothing(source: Source, tmp_path: Path, case: str) -> None:
    repo, env, config = source.repo, "prod", _config(source.repo)
    if case == "ref":
        env = "release"  # accepts release tags; this is a branch pipeline
    elif case == "scan-policy":  # the record was made under another policy than today's
        config = dataclasses.replace(config, scan=dataclasses.replace(config.scan, ignore_unfixed=not
                                                                      config.scan.ignore_unfixed))
    else:  # HEAD moved on since the build
        repo = repos.copy_repo(source.repo, tmp_path / "moved")
        (repo / "src" / "serve.py").write_text("print('serve, later')\n")
        repos.commit_all(repo, "later")
    output = tmp_path / "bundle.tar"
    with pytest.raises(GateFailed) as refused:
        export(ExportRequest(source.image, env, output), config, repo, repo, BRANCH)
    assert {"ref": "accepts tags matching", "scan-policy": "under another scan policy",
            "revision": "was built from commit"}[case] in str(refused.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == (["moved"] if case == "revision" else [])
