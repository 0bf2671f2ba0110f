"""`mlci bundle export` against a real registry holding an image built and scanned by mlci (its `mlci-key-*` tag
and `mlci-cache-*` records beside it, a scan record and an SBOM attached, signed once already): the plan is that
image and nothing else, a directory bundle is an OCI layout that skopeo, the layout endpoint, the scan record's
finder and cosign's verifier read, refusals write nothing, an incremental bundle after a code-only change carries
only the changed layers, and a source that serves a corrupt blob leaves nothing at the output."""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import subprocess
import time
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
from mlci.core.errors import GateFailed, MlciError, UsageError
from mlci.oci.copy import LayoutEndpoint, RegistryEndpoint, open_endpoint
from mlci.oci.layout import Layout
from mlci.oci.reference import parse
from mlci.promote.settings import Signing
from mlci.scan import record, trivy
from mlci.sign import cosign, keys
from tests.image.support import model_repo
from tests.sign.support import KeyPair, p256
from tests.testing import repos
from tests.testing.registry import Registry, access_log, start_registry, stop_registry
from tests.testing.scanimage import tiny_index
from tests.testing.secrets import fresh_secrets  # noqa: F401 - a fixture
from tests.testing.trivydb import make_db

pytestmark = pytest.mark.usefixtures("fresh_secrets")  # keys register their PEM as secrets

INSIDE = "docker://registry.prod.invalid:5000/prod/credit"  # never contacted: the export only names it
BRANCH = {"CI_COMMIT_BRANCH": "main"}
WEIGHTS = bytes(range(256)) * 64
TOKENIZER = {"model/tokenizer/vocab.txt": "a\nb\n", "model/tokenizer/merges.txt": "a b\n"}


@dataclass(frozen=True)
class Source:
    """The model repo, its image in the dev registry (built, scanned, signed by `stage`) and the signing keys."""

    dev: Registry
    repo: Path
    image: str  # docker://HOST/ml/credit:1.0
    digest: str
    keys: KeyPair  # promote.signing's key: signs the bundle and the image for the inside
    stage: KeyPair  # the key of an earlier signature of the image at the source


def _track_with_dvc(repo: Path, remote: Path) -> None:
    """The weights (a file) and the tokenizer (a directory) tracked by DVC and pushed to a local remote; the model
    card stays in git."""
    repos.dvc(repo, "init", "-q")
    (repo / ".dvc" / "config").write_text(f"[core]\n    remote = dev\n['remote \"dev\"']\n    url = {remote}\n")
    repos.git(repo, "rm", "-q", "-r", "--cached", "model/weights.bin", "model/tokenizer")
    repos.dvc(repo, "add", "-q", "model/weights.bin", "model/tokenizer")
    repos.dvc(repo, "push", "-q")
    repos.commit_all(repo, "the model's files in DVC")


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
                                          "artifacts": ["model/weights.bin", "model/tokenizer", "model/card.md"]},
                          {"model/weights.bin": WEIGHTS, **TOKENIZER, "model/card.md": "# credit model\n"})
        _track_with_dvc(repo, base / "dvc-remote")
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


def _md5(data: bytes) -> str:
    import hashlib

    return hashlib.md5(data).hexdigest()


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


def _export(source: Source, repo: Path, output: Path, fmt: str = "dir", **options: Any) -> Any:
    request = ExportRequest(f"docker://{source.dev.host}/ml/credit:{options.pop('tag', '1.0')}", "prod", output,
                            fmt, **options)  # type: ignore[arg-type]
    return export(request, _config(repo), repo, repo, {**BRANCH, "GITLAB_USER_LOGIN": "release-manager"},
                  datetime.datetime.now(datetime.UTC))


def test_a_directory_bundle_is_a_verified_oci_layout_with_its_evidence(
        source: Source, tmp_path: Path) -> None:
    from mlci.bundle import archive, verify

    output = tmp_path / "bundle"
    done = _export(source, source.repo, output, trivy_db=True)
    assert done.paths == [output]
    public = keys.load_public_key(source.keys.public)
    reader = archive.open_bundle(output)
    try:
        verified = verify.verify(reader, public)
    finally:
        reader.close()
    manifest = verified.manifest
    assert manifest.images[0].digest == source.digest and manifest.images[0].tag == "1.0"
    assert manifest.provenance.exported_by == "release-manager" and manifest.provenance.environment == "prod"
    assert manifest.provenance.scan is not None and manifest.provenance.scan.verdict == "pass"
    assert manifest.base is None
    layout = LayoutEndpoint(Layout(output))
    assert [r.verdict for r in record.find(layout, source.digest)] == ["pass"]
    cosign.verify(layout, source.digest, public)
    shown = subprocess.run(["skopeo", "inspect", f"oci:{output}:1.0"], capture_output=True, text=True, check=True)
    assert json.loads(shown.stdout)["Digest"] == source.digest
    names = {a.name: a.path for a in manifest.artifacts}
    assert set(names) == {"model/model/weights.bin", "model/model/tokenizer/vocab.txt",
                          "model/model/tokenizer/merges.txt", "model/model/card.md", "scan-record.json"}
    # DVC-tracked files are carried once, as their DVC objects; the card, kept in git, as its own member
    assert names["model/model/weights.bin"] == f"dvc/files/md5/{_md5(WEIGHTS)[:2]}/{_md5(WEIGHTS)[2:]}"
    for name, text in TOKENIZER.items():
        assert (output / names[f"model/{name}"]).read_text() == text and names[f"model/{name}"].startswith("dvc/")
    assert names["model/model/card.md"] == "artifacts/model/model/card.md"
    assert (output / names["model/model/card.md"]).read_text() == "# credit model\n"
    assert (output / names["scan-record.json"]).read_bytes() == record.find(layout, source.digest)[0].to_bytes()
    assert manifest.dvc is not None and manifest.dvc.revision == repos.git(source.repo, "rev-parse", "HEAD").strip()
    # the bundle's dvc/ is a DVC remote a fresh clone pulls the model from
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(source.repo), str(clone)], check=True)
    repos.dvc(clone, "remote", "add", "-d", "-f", "bundle", str(output / "dvc"))
    repos.dvc(clone, "pull", "-q", "-r", "bundle")
    assert (clone / "model" / "weights.bin").read_bytes() == WEIGHTS
    assert (clone / "model" / "tokenizer" / "vocab.txt").read_text() == TOKENIZER["model/tokenizer/vocab.txt"]
    db = trivy.db_info(output / "trivy")  # the snapshot is a DB a scan inside reads
    assert manifest.trivy_db is not None and manifest.trivy_db.version == db.version
    assert datetime.datetime.fromisoformat(manifest.trivy_db.updated_at) == db.updated_at
    listed = {f.path for f in manifest.files}
    on_disk = {str(p.relative_to(output)) for p in output.rglob("*") if p.is_file()}
    assert on_disk == listed | {"bundle.json", "bundle.dsse.json"}


def test_an_incremental_bundle_after_a_code_only_change_carries_only_the_changed_layers(
        source: Source, tmp_path: Path) -> None:
    from mlci.bundle import archive, exportfiles, verify

    first = tmp_path / "first.tar"
    _export(source, source.repo, first, "tar", part_size=1 << 20)
    reader = archive.open_bundle(Path(f"{first}.000"))
    try:
        (tmp_path / "first.json").write_bytes(reader.head()[0])
    finally:
        reader.close()
    assert exportfiles.previous(Path(f"{first}.000")) == exportfiles.previous(tmp_path / "first.json")
    repo = repos.copy_repo(source.repo, tmp_path / "repo")
    (repo / "src" / "serve.py").write_text("print('serve, faster')\n")
    repos.commit_all(repo, "a code-only change")
    digest = _build_and_scan(repo, "1.1")
    _, _, before = _blobs_of(source.dev, "1.0")
    _, config, after = _blobs_of(source.dev, "1.1")
    changed = after - before
    assert changed and after & before  # the code layer changed; the base and the model's layers did not
    done = _export(source, repo, tmp_path / "second", since=tmp_path / "first.json", tag="1.1")
    manifest = done.manifest
    assert manifest.base is not None and manifest.base.aggregate != manifest.aggregate
    assert {b.digest for b in manifest.base.blobs} == after & before
    carried = {"sha256:" + f.path.removeprefix("blobs/sha256/") for f in manifest.files
               if f.path.startswith("blobs/")}
    assert carried & after == changed  # of the image's layers: exactly the changed ones
    assert digest in carried and config <= carried
    assert done.omitted_blobs == len(after & before)
    # the model's files did not change: their DVC objects are left to the base, the tokenizer's listing travels
    assert manifest.dvc is not None and manifest.base.dvc_objects
    assert set(manifest.base.dvc_objects) == {o for o in manifest.dvc.objects if not o.endswith(".dir")}
    assert {f.path for f in manifest.files if f.kind == "dvc"} == {
        f"dvc/files/md5/{o[:2]}/{o[2:]}" for o in manifest.dvc.objects if o.endswith(".dir")}
    # the unchanged weights are still listed for Nexus raw, by the base's object (the inside's DVC remote has it)
    weights = {a.name: a.path for a in manifest.artifacts}["model/model/weights.bin"]
    assert weights.removeprefix("dvc/files/md5/").replace("/", "") in manifest.base.dvc_objects
    assert weights not in {f.path for f in manifest.files}
    assert not (tmp_path / "second" / "blobs" / "sha256" / next(iter(after & before))[7:]).exists()
    reader = archive.open_bundle(tmp_path / "second")
    try:
        assert verify.verify(reader, keys.load_public_key(source.keys.public)).manifest == manifest
    finally:
        reader.close()


def test_a_corrupt_source_blob_fails_the_export_and_leaves_nothing(
        source: Source, tmp_path: Path) -> None:
    from mlci.promote import copy

    lying = start_registry(directory=tmp_path / "lying")
    try:
        copy.stage(_endpoint(source.dev), "1.0", _endpoint(lying))
        _endpoint(lying).put_manifest(_endpoint(source.dev).get_manifest("1.0"), "1.0")
        _, _, layers = _blobs_of(source.dev, "1.0")
        victim = max(layers)  # any layer: its bytes on the registry's disk are changed, its size kept
        stored = next((tmp_path / "lying").rglob(f"blobs/sha256/{victim[7:9]}/{victim[7:]}/data"))
        data = bytearray(stored.read_bytes())
        data[len(data) // 2] ^= 0xFF
        stored.write_bytes(bytes(data))
        repo = repos.copy_repo(source.repo, tmp_path / "repo")
        config = json.loads((repo / "mlci.yaml").read_text())
        config["registries"][lying.host] = {"plain_http": True}
        (repo / "mlci.yaml").write_text(json.dumps(config))  # uncommitted: HEAD is still the image's commit
        out = tmp_path / "out"
        out.mkdir()
        for fmt, name in (("dir", "bundle"), ("tar", "bundle.tar")):
            request = ExportRequest(f"docker://{lying.host}/ml/credit:1.0", "prod", out / name, fmt)  # type: ignore[arg-type]
            with pytest.raises(MlciError, match=f"blob {victim}.*: digest did not match"):
                export(request, _config(repo), repo, repo, BRANCH)
            assert list(out.iterdir()) == []
    finally:
        stop_registry(lying)



def test_sigterm_while_writing_aborts_the_bundle(source: Source, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import signal
    import threading

    from mlci.core.signals import Terminated, sigterm_raises
    from mlci.promote import copy

    layout = LayoutEndpoint(Layout(tmp_path / "layout"))  # the image with its evidence, as an oci: source
    copy.stage(_endpoint(source.dev), "1.0", layout)
    layout.put_manifest(_endpoint(source.dev).get_manifest("1.0"), "1.0")
    _, _, layers = _blobs_of(source.dev, "1.0")
    blob = layout.layout.blob_path(max(layers))
    blob.unlink()
    os.mkfifo(blob)  # opened only when its bytes are written: the export blocks there, mid-write
    from mlci.oci import layout as layout_module  # a layout refuses a FIFO blob; this one stands for a stalled disk
    monkeypatch.setattr(layout_module, "open_regular", lambda path, shown: Path(path).open("rb"))
    output = tmp_path / "bundle.tar"
    partial: list[Path] = []

    def terminate() -> None:
        while not [p for p in tmp_path.iterdir() if p.name.startswith("bundle.tar")]:
            time.sleep(0.01)
        partial.extend(p for p in tmp_path.iterdir() if p.name.startswith("bundle.tar"))
        time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=terminate, daemon=True)
    killer.start()
    request = ExportRequest(f"oci:{tmp_path / 'layout'}:1.0", "prod", output)
    with sigterm_raises(), pytest.raises(Terminated):
        export(request, _config(source.repo), source.repo, source.repo, BRANCH)
    killer.join(5)
    assert partial  # it was writing
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("bundle.tar")]


def test_an_index_travels_with_every_platform_and_the_referrers_of_each(tmp_path: Path) -> None:
    from mlci.oci import referrers
    from mlci.oci.manifest import sha256_digest

    source_dir = tmp_path / "source"
    index = tiny_index(source_dir, {"amd64": {"app": b"x86"}, "arm64": {"app": b"arm"}})
    src = LayoutEndpoint(Layout(source_dir))
    children = [src.get_manifest(child.digest) for child in index.children()]
    sbom = b'{"bomFormat":"CycloneDX"}'
    referrers.attach(src, children[1].descriptor(), record.SBOM_TYPE, [referrers.Blob(record.SBOM_TYPE, sbom)])
    plan = imageplan.plan_image(src, index, "v2")
    _write_dir(plan.files, tmp_path / "bundle")
    bundle = LayoutEndpoint(Layout(tmp_path / "bundle"))
    assert bundle.get_manifest("v2").digest == index.digest
    for child in children:  # each platform whole, a blob only (no index.json entry of its own)
        assert all(bundle.has_blob(b.digest) for b in [*child.blobs(), child.descriptor()])
    listed = referrers.referrers(bundle, children[1].digest)
    assert [d.artifact_type for d in listed] == [record.SBOM_TYPE]
    assert bundle.has_blob(sha256_digest(sbom))
    assert [e.get("annotations") for e in json.loads((tmp_path / "bundle" / "index.json").read_text())["manifests"]
            ] == [{"org.opencontainers.image.ref.name": "v2"}, None]
    assert plan.signature is None and not plan.signed  # the source holds no signature; none was asked for


def test_a_bundle_path_through_a_committed_symlink_out_of_the_checkout_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`out -> /elsewhere` committed by an MR: `--out out/b` (or bundle.output) wrote the bundle there, exit 0."""
    from mlci.bundle.export import _check_output

    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "out").symlink_to(tmp_path / "elsewhere")
    monkeypatch.chdir(tmp_path / "repo")
    for output in (Path("out/b"), tmp_path / "repo" / "out" / "c.tar"):
        with pytest.raises(UsageError, match=r"out is a symlink out of the working directory .*; mlci writes nothing"):
            _check_output(output)
    _check_output(tmp_path / "elsewhere" / "named-by-the-user.tar")  # a path the user gives outside: theirs


def test_a_fifo_as_the_previous_bundle_is_refused_not_waited_on(tmp_path: Path) -> None:
    from mlci.bundle.exportfiles import previous

    os.mkfifo(tmp_path / "since.json")
    with pytest.raises(MlciError, match=r"since\.json.*is a FIFO, not a regular file"):
        previous(tmp_path / "since.json")


def test_a_previous_bundle_json_that_is_not_one_is_a_usage_error(tmp_path: Path) -> None:
    """docs/airgap.md: a --since bundle that cannot be read is exit 2; a broken bundle.json was exit 1."""
    from mlci.bundle.exportfiles import previous

    (tmp_path / "bundle.json").write_text("{not json")
    with pytest.raises(UsageError, match=r"^--since: .*bundle\.json.*\(name the previous bundle or its bundle\.json\)"):
        previous(tmp_path / "bundle.json")
