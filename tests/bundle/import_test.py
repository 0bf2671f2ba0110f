"""`mlci bundle import` into a real docker-registry, the Nexus raw stand-in, a real DVC repository's local remote and
a bare GitOps repository: a full import (a directory, a tar read in place, a tar.zst streamed again) after which
`dvc pull` works inside, a re-run that sends nothing, an interrupted import that a re-run completes; and every
rejection BEFORE ANY WRITE: the registry's access log shows no PUT, POST, PATCH or DELETE, Nexus gets no request,
the DVC remote and the GitOps repository stay empty."""
from __future__ import annotations

import datetime
import hashlib
import io
import json
import shutil
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from mlci.bundle import manifest as bundle_manifest
from mlci.bundle.archive import open_bundle, open_sink
from mlci.bundle.errors import BundleInvalid
from mlci.bundle.importer import Imported, ImportRequest, import_bundle
from mlci.bundle.manifest import Artifact, Base, BaseBlob, DvcData, ImageEntry
from mlci.bundle.source import BundleChanged, BundleSource, Keeping
from mlci.bundle.verify import verify
from mlci.core.errors import EnvironmentProblem, GateFailed
from mlci.oci.copy import LayoutEndpoint, RegistryEndpoint, open_endpoint
from mlci.oci.layout import Layout
from mlci.oci.manifest import OCI_CONFIG, OCI_MANIFEST, Manifest, sha256_digest
from mlci.oci.reference import parse
from mlci.oci.settings import RegistrySettings
from mlci.promote.copy import TagMoved
from mlci.promote.settings import Environment, GitOps, PromoteSettings
from mlci.scan import policy as scan_policy
from mlci.scan import record as scan_record
from mlci.scan.settings import ScanSettings
from mlci.settings import Config
from mlci.sign import cosign
from mlci.sign.keys import SigningKey
from tests.testing.bundles import make_bundle, provenance
from tests.testing.faultproxy import Fault, FaultProxy
from tests.testing.gitremote import bare_repo, commits, read_file
from tests.testing.nexus import Nexus, start_nexus, stop_nexus
from tests.testing.nginx import access_log as nginx_log
from tests.testing.registry import Registry, access_log, push_random_image, start_registry, stop_registry
from tests.testing.repos import commit_all, copy_repo, dvc, git

NOW = datetime.datetime(2026, 12, 2, 9, 0, 0, tzinfo=datetime.UTC)
TAG = "v1.2.0"
LAYER = "application/vnd.oci.image.layer.v1.tar"
WRITES = ("PUT", "POST", "PATCH", "DELETE")
ENVIRON = {"GITLAB_USER_LOGIN": "release-manager", "CI_JOB_URL": "https://gitlab.inside/ml/churn/-/jobs/7"}
POLICY = scan_policy.policy_hash(ScanSettings(), None)


@pytest.fixture(scope="module")
def inside(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Nexus]]:
    """The inside's registry and Nexus raw stand-in, shared by the module (each test has its own repository)."""
    root = tmp_path_factory.mktemp("inside")
    registry, nexus = start_registry(directory=root / "registry"), start_nexus(root / "nexus")
    yield registry, nexus
    stop_registry(registry)
    stop_nexus(nexus)


WEIGHTS = b"trained weights " * 4096
OID = hashlib.md5(WEIGHTS).hexdigest()  # the weights' DVC object (DVC names objects by md5)


@pytest.fixture(scope="module")
def model_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The inside's mirror of the model repository: git + DVC, its commit tracking models/model.pkl (`dvc add`),
    neither the file nor its object in the workspace or the DVC cache (the weights come in the bundle)."""
    repo = tmp_path_factory.mktemp("inside-model") / "churn"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    dvc(repo, "init", "-q")
    (repo / "models").mkdir()
    (repo / "models" / "model.pkl").write_bytes(WEIGHTS)
    dvc(repo, "add", "-q", "models/model.pkl")
    sha = commit_all(repo, "the model")
    (repo / "models" / "model.pkl").unlink()
    shutil.rmtree(repo / ".dvc" / "cache")
    return repo, sha


@dataclass
class Setup:
    """One test's inside: its destination repository, GitOps repository, checkout of the model repository with an
    empty DVC remote `inside`, config and paths."""

    registry: Registry
    nexus: Nexus
    repo: str  # the destination repository
    bare: Path  # the GitOps repository
    root: Path  # the inside checkout
    remote: Path  # its DVC remote `inside`
    revision: str  # the model's commit
    config: Config
    tmp: Path

    @property
    def destination(self) -> str:
        return f"docker://{self.registry.host}/{self.repo}"

    def endpoint(self) -> RegistryEndpoint:
        endpoint, _ = open_endpoint(parse(self.destination), registries=self.config.registries)
        assert isinstance(endpoint, RegistryEndpoint)
        return endpoint

    @property
    def nexus_directory(self) -> str:
        """MODEL/VERSION/ in the Nexus raw repository (below the environment's prefix)."""
        url = self.config.promote.environments["prod"].nexus_raw or ""
        return f"{url.split('/repository/mlci-raw/', 1)[1]}/churn/{TAG}"

    def bundle(self, key: SigningKey, **fields: Any) -> Path:
        """A directory bundle of the image and the model's DVC object (directory_bundle)."""
        return directory_bundle(self.tmp / "bundle", key, revision=self.revision, **fields)

    def run(self, bundle: Path, key: SigningKey, config: Config | None = None, **changes: Any) -> Imported:
        request = ImportRequest(bundle=bundle, public_key=key.public, **changes)
        return import_bundle(request, config or self.config, self.root, self.tmp, ENVIRON, now=NOW)


@pytest.fixture
def setup(tmp_path: Path, inside: tuple[Registry, Nexus], model_repo: tuple[Path, str],
          request: pytest.FixtureRequest) -> Setup:
    registry, nexus = inside
    name = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:12]
    bare = bare_repo(tmp_path / "environments.git")
    root, remote = copy_repo(model_repo[0], tmp_path / "churn"), tmp_path / "dvc-remote"
    remote.mkdir()
    (root / ".dvc" / "config.local").write_text(f"['remote \"inside\"']\n    url = {remote}\n")
    prod = Environment(image=f"docker://{registry.host}/prod/{name}", tags=r"v\d+\.\d+\.\d+",
                       nexus_raw=f"{nexus.repository_url}/{name}", dvc_remote="inside")
    config = Config(
        promote=PromoteSettings(environments={"prod": prod}, gitops=GitOps(repository=str(bare), gto=False),
                                audit_log=str(tmp_path / "audit.jsonl")),
        registries={registry.host: RegistrySettings(plain_http=True), nexus.host: RegistrySettings(plain_http=True)})
    return Setup(registry, nexus, f"prod/{name}", bare, root, remote, model_repo[1], config, tmp_path)


# --- bundles ---------------------------------------------------------------------------------------------------


MODEL, CODE = b"model weights " * 1024, b"serving code " * 128  # 14 KB and 1.6 KB: larger than any manifest


def image_files(scratch: Path, key: SigningKey, *, verdict: str = "pass", policy: str = POLICY,
                layers: tuple[bytes, ...] = (MODEL, CODE), tag: str = TAG) -> tuple[dict[str, bytes], ImageEntry]:
    """A real image in an OCI layout as an export writes it: tagged TAG, a scan record attached, signed with
    `key` (cosign's format); its files as bundle files."""
    layout = Layout(scratch)
    layout.init()
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
        "type": "layers", "diff_ids": [sha256_digest(layer) for layer in layers]}}).encode()
    for blob in (*layers, config):
        layout.put_blob(sha256_digest(blob), io.BytesIO(blob))
    body = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(config), "size": len(config)},
            "layers": [{"mediaType": LAYER, "digest": sha256_digest(b), "size": len(b)} for b in layers]}
    top = Manifest.of(json.dumps(body).encode(), OCI_MANIFEST)
    layout.put_manifest(top, tag)
    endpoint = LayoutEndpoint(layout)
    scanned = scan_record.ScanRecord(
        image=f"dev.example/ml/churn:{tag}", digest=top.digest, passed=verdict == "pass", counts={},
        policy_hash=policy, scanned_at=NOW - datetime.timedelta(hours=5), db_version=2,
        db_updated_at=NOW - datetime.timedelta(hours=9), trivy_version="0.76.0", scanners=("vuln",))
    scan_record.attach(scanned, endpoint)
    cosign.sign(endpoint, top.digest, key, docker_reference="inside.example/prod/churn")
    files = {p.relative_to(scratch).as_posix(): p.read_bytes() for p in sorted(scratch.rglob("*")) if p.is_file()}
    return files, ImageEntry(source=f"docker://dev.example/ml/churn:{tag}", tag=tag, digest=top.digest)


ARTIFACTS = {"artifacts/metrics.json": b'{"auc": 0.91}\n', "artifacts/dvc.lock": b"schema: '2.0'\nstages: {}\n"}


def directory_bundle(root: Path, key: SigningKey, *, signer: SigningKey | None = None, revision: str | None = None,
                     files: Callable[[dict[str, bytes]], dict[str, bytes]] = dict, weights_in_base: bool = False,
                     **fields: Any) -> Path:
    """A signed directory bundle of an image (image_files), its metrics and dvc.lock for Nexus; with `revision`,
    also the model's DVC object (the weights, models/model.pkl at `revision`), which Nexus gets as
    model/model.pkl. `files` filters what is carried."""
    found, image = image_files(root.parent / f"{root.name}-layout", key, **fields.pop("image", {}))
    fields.setdefault("prov", provenance(image.digest, git_ref=f"refs/tags/{image.tag}", version=image.tag,
                                         environment="prod"))
    carried = files({**found, **ARTIFACTS, **({bundle_manifest.dvc_path(OID): WEIGHTS} if revision else {})})
    if revision is not None:
        fields.setdefault("dvc", DvcData(revision=revision, outputs=("models/model.pkl",), objects=(OID,)))
    artifacts = [Artifact("metrics/metrics.json", "artifacts/metrics.json"), Artifact("dvc.lock", "artifacts/dvc.lock")]
    if bundle_manifest.dvc_path(OID) in carried or weights_in_base:
        artifacts.append(Artifact("model/model.pkl", bundle_manifest.dvc_path(OID)))
    return make_bundle(root, carried, signer or key, images=(image,), artifacts=artifacts, **fields)


def members(root: Path) -> list[str]:
    """A directory bundle's files in an exporter's order: bundle.json and its signature, the image layout, the DVC
    objects, the artifacts, the trivy DB."""
    kinds = ("oci", "dvc", "artifact", "trivy-db")
    rest = sorted((p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()
                   and p.name not in bundle_manifest.HEAD),
                  key=lambda name: (kinds.index(bundle_manifest.check_member_name(name)), name))
    return [*bundle_manifest.HEAD, *rest]


def as_archive(root: Path, fmt: str) -> Path:
    """The directory bundle written as one tar (or tar.zst) by the archive's sink."""
    path = root.parent / f"{root.name}.{fmt}"
    head = ((root / bundle_manifest.MANIFEST).read_bytes(), (root / bundle_manifest.ENVELOPE).read_bytes())
    sink = open_sink(path, fmt, head)  # type: ignore[arg-type]
    for name in members(root)[2:]:
        data = (root / name).read_bytes()
        sink.add(name, len(data), hashlib.sha256(data).hexdigest(), [data])
    sink.commit()
    return path


def hand_tar(root: Path, extra: Callable[[tarfile.TarFile], None] | None = None, skip: str | None = None) -> Path:
    """The directory bundle as a tar made by hand (Python's tarfile), with `extra` members added at the end and
    member `skip` left out."""
    path = root.parent / f"{root.name}-hand.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in members(root):
            if name != skip:
                tar.add(root / name, arcname=name, recursive=False)
        if extra is not None:
            extra(tar)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **fields: Any) -> Callable[[tarfile.TarFile],
                                                                                                    None]:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.size = kind, len(data) if kind == tarfile.REGTYPE else 0
        for key, value in fields.items():
            setattr(info, key, value)
        tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return add


def _a_layer(root: Path) -> str:
    """The largest blob of a directory bundle (the model layer)."""
    return max((p for p in (root / "blobs" / "sha256").iterdir()), key=lambda p: p.stat().st_size).relative_to(
        root).as_posix()


# --- checks ----------------------------------------------------------------------------------------------------


def _tree(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def _branches(bare: Path) -> list[str]:
    return git(bare, "for-each-ref", "--format=%(refname)", "refs/heads").split()


@contextmanager
def nothing_written(setup: Setup) -> Iterator[None]:
    """Zero writes to the registry (its access log); no request at all to Nexus (nginx's access log, the REST
    stand-in's requests) and its files unchanged; the DVC remote empty; no commit in the GitOps repository; no
    audit line."""
    mark, nginx = len(access_log(setup.registry)), len(nginx_log(setup.nexus.nginx))
    api = len(setup.nexus.rest.requests) if setup.nexus.rest else 0
    stored = _tree(setup.nexus.nginx.root)
    yield
    assert [e for e in access_log(setup.registry)[mark:] if e.method in WRITES] == []
    assert nginx_log(setup.nexus.nginx)[nginx:] == [] and _tree(setup.nexus.nginx.root) == stored
    assert (len(setup.nexus.rest.requests) if setup.nexus.rest else 0) == api
    assert _tree(setup.remote) == {}
    assert _branches(setup.bare) == [] and not Path(setup.config.promote.audit_log).exists()


def _sent(setup: Setup, mark: int) -> list[str]:
    """Blob bytes sent since `mark`: upload PATCHes and PUTs (the write check's POST + DELETE send none)."""
    return [e.target for e in access_log(setup.registry)[mark:]
            if e.method == "PATCH" or (e.method == "PUT" and "/blobs/uploads/" in e.target)]


def assert_imported(setup: Setup, done: Imported, key: SigningKey) -> None:
    """The image by tag with its scan record and signature; the weights in the DVC remote, where `dvc pull` finds
    them; the artifacts in Nexus, SHA256SUMS listing them; the GitOps record naming the bundle."""
    destination = setup.endpoint()
    assert destination.get_manifest(TAG).digest == done.digest
    assert done.destination == f"{setup.destination}:{TAG}@{done.digest}" and done.tags == [TAG]
    assert [r.verdict for r in scan_record.find(destination, done.digest)] == ["pass"]
    assert cosign.verify(destination, done.digest, key.public)
    assert (setup.remote / "files" / "md5" / OID[:2] / OID[2:]).read_bytes() == WEIGHTS
    dvc(setup.root, "pull", "-q", "-r", "inside", "models/model.pkl")  # what the inside's users run
    assert (setup.root / "models" / "model.pkl").read_bytes() == WEIGHTS
    uploaded = {"dvc.lock": ARTIFACTS["artifacts/dvc.lock"],
                "metrics/metrics.json": ARTIFACTS["artifacts/metrics.json"], "model/model.pkl": WEIGHTS}
    for name, data in uploaded.items():
        assert setup.nexus.nginx.stored(f"{setup.nexus_directory}/{name}").read_bytes() == data
    assert setup.nexus.nginx.stored(f"{setup.nexus_directory}/SHA256SUMS").read_text() == "".join(
        f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(uploaded.items()))
    state = read_file(setup.bare, "environments/prod.yaml")
    assert state["image"]["digest"] == done.digest and state["promotion"]["by"] == "release-manager"
    assert state["promotion"]["bundle"]["aggregate"] == done.summary["bundle"]["aggregate"]
    assert state["scan"]["verdict"] == "pass" and state["model"]["version"] == TAG


# --- imports ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["dir", "tar", "tar.zst"])
def test_a_bundle_is_imported_whole_and_a_rerun_sends_nothing(setup: Setup, bundle_key: SigningKey,
                                                              fmt: str) -> None:
    root = setup.bundle(bundle_key)
    bundle = root if fmt == "dir" else as_archive(root, fmt)
    done = setup.run(bundle, bundle_key)
    assert_imported(setup, done, bundle_key)
    layers = _image_blobs(root)
    assert layers <= set(done.copied) and done.reused == [] and done.summary["data"]["copied"] == 1
    # a tar.zst is streamed again: once for the image and the DVC object, once more for the weights for Nexus
    # (a DVC object the stream had passed); a directory and a tar are read in place
    assert done.summary["bundle"]["passes"] == (2 if fmt == "tar.zst" else 0)
    first = commits(setup.bare)
    mark = len(access_log(setup.registry))
    again = setup.run(bundle, bundle_key)
    assert again.digest == done.digest and again.copied == [] and set(again.reused) >= layers
    assert again.summary["data"]["copied"] == 0
    assert _sent(setup, mark) == []
    assert not [e for e in access_log(setup.registry)[mark:] if e.method == "PUT" and e.target.endswith(f"/{TAG}")]
    assert commits(setup.bare) == first  # the record of this import is there already: not written twice


def test_a_tar_is_read_in_place_its_blobs_sent_several_at_once(setup: Setup, bundle_key: SigningKey) -> None:
    proxy = FaultProxy(setup.registry.host, delay=0.15)  # each upload held: concurrent ones overlap
    try:
        config = replace(setup.config, registries={**setup.config.registries,
                                                   proxy.host: RegistrySettings(plain_http=True)})
        done = setup.run(as_archive(setup.bundle(bundle_key), "tar"), bundle_key, config=config,
                         destination=f"docker://{proxy.host}/{setup.repo}")
    finally:
        proxy.stop()
    assert done.summary["bundle"]["random_access"] and done.summary["bundle"]["passes"] == 0
    assert proxy.max_in_flight >= 2


def test_an_incremental_bundle_whose_dvc_base_is_missing_is_refused_naming_it(setup: Setup,
                                                                              bundle_key: SigningKey) -> None:
    base = Base(aggregate="sha256:" + "34" * 32, blobs=(), dvc_objects=(OID,))
    bundle = setup.bundle(bundle_key, base=base, files=lambda found: {n: d for n, d in found.items()
                                                                      if n != bundle_manifest.dvc_path(OID)})
    with nothing_written(setup), pytest.raises(GateFailed, match=f"the DVC remote inside lacks 1 object.*{OID}"):
        setup.run(bundle, bundle_key)


def test_an_import_interrupted_before_the_manifests_is_completed_by_a_rerun(setup: Setup,
                                                                           bundle_key: SigningKey) -> None:
    root = setup.bundle(bundle_key)
    proxy = FaultProxy(setup.registry.host, [Fault("PUT", 1, "unauthorized", path="/manifests/")])
    try:
        cut = replace(setup, config=replace(setup.config, registries={
            **setup.config.registries, proxy.host: RegistrySettings(plain_http=True)}))
        with pytest.raises(EnvironmentProblem):  # the registry went away after the blobs: no manifest, no tag
            cut.run(root, bundle_key, destination=f"docker://{proxy.host}/{setup.repo}")
        assert proxy.fired() and _branches(setup.bare) == []
        mark = len(access_log(setup.registry))
        done = setup.run(root, bundle_key)
    finally:
        proxy.stop()
    image = _image_blobs(root)
    assert image <= set(done.reused) and not image & set(done.copied)  # the image's blobs had arrived: reused
    assert not [target for target in _sent(setup, mark) if any(digest in target for digest in image)]
    assert done.copied  # the referrers' and the signature's blobs, which come after the manifests, are sent now
    assert_imported(setup, done, bundle_key)


def test_an_import_interrupted_at_nexus_is_completed_by_a_rerun(setup: Setup, bundle_key: SigningKey) -> None:
    root = setup.bundle(bundle_key)
    locked = start_nexus(setup.tmp / "locked-nexus", auth=True)
    try:
        env = setup.config.promote.environments["prod"]
        url = f"{locked.repository_url}/churn-inside"
        cut = replace(setup.config, registries={**setup.config.registries,
                                                locked.host: RegistrySettings(plain_http=True)},
                      promote=replace(setup.config.promote, environments={"prod": replace(env, nexus_raw=url)}))
        with pytest.raises(EnvironmentProblem, match="credentials"):
            setup.run(root, bundle_key, config=cut)
        destination = setup.endpoint()
        assert destination.get_manifest(done_digest(root)) and not _tagged(destination)  # staged, not tagged
        mark = len(access_log(setup.registry))
        done = setup.run(root, bundle_key)
    finally:
        stop_nexus(locked)
    assert _sent(setup, mark) == [] and done.copied == []
    assert_imported(setup, done, bundle_key)


def done_digest(root: Path) -> str:
    return str(json.loads((root / bundle_manifest.MANIFEST).read_bytes())["provenance"]["image_digest"])


def _image_blobs(root: Path) -> set[str]:
    """The image's config and layers."""
    top = done_digest(root)
    data = (root / "blobs" / "sha256" / top.removeprefix("sha256:")).read_bytes()
    return {blob.digest for blob in Manifest(data, OCI_MANIFEST, top).blobs()}


def _tagged(destination: RegistryEndpoint) -> list[str]:
    return [t for t in destination.registry.tags(destination.repository) if t == TAG]


def test_a_member_changed_after_verification_is_refused_on_the_second_read(tmp_path: Path,
                                                                           bundle_key: SigningKey) -> None:
    root = directory_bundle(tmp_path / "bundle", bundle_key)
    keeping = Keeping(open_bundle(root))
    verified = verify(keeping, bundle_key.public)
    source = BundleSource(root, keeping.reader, verified.manifest, kept=keeping.kept, order=keeping.order,
                          heads=keeping.heads)
    try:
        layer = _a_layer(root)
        assert layer not in source.kept and "index.json" in source.kept  # kept: the small JSON members only
        data = (root / layer).read_bytes()
        (root / layer).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
        with pytest.raises(BundleChanged, match="changed"), source.member(layer) as stream:
            stream.read()
        assert source.get_manifest(TAG).digest == done_digest(root)  # from memory: the verified bytes
    finally:
        source.close()


def test_a_streamed_bundle_read_behind_is_streamed_again_and_still_checked(tmp_path: Path,
                                                                         bundle_key: SigningKey) -> None:
    root = directory_bundle(tmp_path / "bundle", bundle_key)
    bundle = as_archive(root, "tar.zst")
    keeping = Keeping(open_bundle(bundle))
    source = BundleSource(bundle, keeping.reader, verify(keeping, bundle_key.public).manifest, kept=keeping.kept,
                          order=keeping.order, heads=keeping.heads)
    try:
        model, code = (bundle_manifest.blob_path(sha256_digest(layer)) for layer in (MODEL, CODE))
        first, second = sorted((model, code), key=keeping.order.index)
        assert not source.random_access and source.passes == 0
        for name, passes in ((first, 1), (second, 1), (first, 2)):  # forward, then behind: a new pass
            with source.member(name) as stream:
                assert stream.read() == (root / name).read_bytes()
            assert source.passes == passes
        as_archive(directory_bundle(tmp_path / "other", bundle_key, image={"layers": (MODEL[:-1], CODE)}), "tar.zst"
                   ).replace(bundle)  # another bundle in its place: its bundle.json differs
        with pytest.raises(BundleChanged, match="differ from those verified"), source.member(first) as stream:
            stream.read()
    finally:
        source.close()


# --- rejected before any write ------------------------------------------------------------------------------


def _flip(root: Path) -> Path:
    layer = root / _a_layer(root)
    data = bytearray(layer.read_bytes())
    data[len(data) // 2] ^= 0x01
    layer.write_bytes(bytes(data))
    return root


def _truncated(root: Path) -> Path:
    path = as_archive(root, "tar")
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    return path


def _unsigned(root: Path) -> Path:
    (root / bundle_manifest.ENVELOPE).unlink()
    return root


def _added(root: Path) -> Path:
    (root / "artifacts" / "extra.txt").write_bytes(b"not in bundle.json")
    return root


def _edited(root: Path) -> Path:
    """bundle.json with another target environment, canonical as an exporter writes it (its signature stays)."""
    data = json.loads((root / bundle_manifest.MANIFEST).read_bytes())
    data["provenance"]["environment"] = "stage"
    (root / bundle_manifest.MANIFEST).write_bytes(json.dumps(data, sort_keys=True, separators=(",", ":")).encode())
    return root


def _hostile(kind: str) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        layer = _a_layer(root)
        extra = {
            "dotdot": _member("blobs/../../escape", data=b"x"),
            "absolute": _member("/tmp/escape", data=b"x"),
            "symlink": _member("artifacts/link", tarfile.SYMTYPE, linkname="/etc/passwd"),
            "hardlink": _member("artifacts/hard", tarfile.LNKTYPE, linkname=layer),
            "device": _member("artifacts/null", tarfile.CHRTYPE, devmajor=1, devminor=3),
            "fifo": _member("artifacts/fifo", tarfile.FIFOTYPE),
            "duplicate": _member(layer, data=(root / layer).read_bytes()),
        }
        if kind == "size":  # the layer shorter than bundle.json says
            return hand_tar(root, _member(layer, data=(root / layer).read_bytes()[:-7]), skip=layer)
        return hand_tar(root, extra[kind])
    return make


HOSTILE = {"dotdot": "'..'", "absolute": "an absolute name", "symlink": "a symbolic link", "hardlink": "a hard link",
           "device": "a character device", "fifo": "a FIFO", "duplicate": "duplicate", "size": "bundle.json says"}
DAMAGES = {"flipped-byte": (_flip, "bundle.json says"), "truncated-tar": (_truncated, "truncated"),
           "no-signature": (_unsigned, "no signature"), "unlisted-file": (_added, "not listed in bundle.json"),
           "edited-manifest": (_edited, "not the signed one"),
           **{f"member-{kind}": (_hostile(kind), why) for kind, why in HOSTILE.items()}}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_or_hostile_bundle_is_refused_before_any_write(setup: Setup, bundle_key: SigningKey,
                                                                damage: str) -> None:
    make, why = DAMAGES[damage]
    bundle = make(setup.bundle(bundle_key))
    with nothing_written(setup), pytest.raises(BundleInvalid, match=why):
        setup.run(bundle, bundle_key)


def test_a_bundle_signed_by_another_key_is_refused_before_any_write(setup: Setup, bundle_key: SigningKey,
                                                                    other_key: SigningKey) -> None:
    bundle = setup.bundle(bundle_key, signer=other_key)
    with nothing_written(setup), pytest.raises(BundleInvalid, match="not signed by the key"):
        setup.run(bundle, bundle_key)


def test_an_incremental_bundle_after_a_code_only_change_imports_onto_the_earlier_one(setup: Setup,
                                                                                    bundle_key: SigningKey) -> None:
    """The base carried the model layer and the weights; the next release carries only its new code layer, the
    config and the manifests. It imports onto the first; the unchanged weights reach the new version's Nexus
    directory from the inside's DVC remote."""
    first = setup.bundle(bundle_key)
    setup.run(first, bundle_key)
    after = access_log(setup.registry)
    base_manifest = bundle_manifest.parse((first / bundle_manifest.MANIFEST).read_bytes(), "first")
    release = "v1.3.0"
    code = b"serving code, changed " * 128
    base = Base(aggregate=base_manifest.aggregate, blobs=(BaseBlob(sha256_digest(MODEL), len(MODEL)),),
                dvc_objects=(OID,))
    weights, model_layer = bundle_manifest.dvc_path(OID), bundle_manifest.blob_path(sha256_digest(MODEL))
    second = directory_bundle(
        setup.tmp / "second", bundle_key, revision=setup.revision, base=base, weights_in_base=True,
        image={"layers": (MODEL, code), "tag": release},
        files=lambda found: {n: d for n, d in found.items() if n not in (weights, model_layer)})
    carried = bundle_manifest.parse((second / bundle_manifest.MANIFEST).read_bytes(), "second").files
    assert {f.path for f in carried if f.path.startswith("blobs/")} >= {bundle_manifest.blob_path(sha256_digest(code))}
    assert not {weights, model_layer} & {f.path for f in carried}
    mark = len(after)
    done = setup.run(second, bundle_key, environment="prod")
    assert done.tags == [release] and sha256_digest(MODEL) not in done.copied
    sent = [e.target for e in access_log(setup.registry)[mark:] if e.method == "PUT" and "digest=" in e.target]
    assert not [t for t in sent if sha256_digest(MODEL).removeprefix("sha256:") in t]  # the model layer stayed
    nexus = setup.nexus_directory.replace(TAG, release)
    assert setup.nexus.stored(f"{nexus}/model/model.pkl").read_bytes() == WEIGHTS  # from the inside's DVC remote


def test_an_incremental_bundle_whose_base_is_missing_is_refused_naming_it(setup: Setup,
                                                                          bundle_key: SigningKey) -> None:
    scratch = setup.tmp / "probe"
    files, _image = image_files(scratch, bundle_key)
    layer = max((name for name in files if name.startswith("blobs/")), key=lambda n: len(files[n]))
    base = Base(aggregate="sha256:" + "12" * 32, blobs=(BaseBlob("sha256:" + layer.rsplit("/", 1)[1],
                                                                 len(files[layer])),), dvc_objects=())
    bundle = setup.bundle(bundle_key, base=base,
                              files=lambda found: {n: d for n, d in found.items() if n != layer})
    with nothing_written(setup), pytest.raises(GateFailed, match=r"lacks 1 of the 1 blob\(s\).*import that bundle"):
        setup.run(bundle, bundle_key)


def test_a_bundle_without_a_blob_of_its_image_and_no_base_is_refused(setup: Setup, bundle_key: SigningKey) -> None:
    """Signed and verified, yet incomplete (an exporter's mistake): refused before any write, not half-way."""
    bundle = setup.bundle(bundle_key, files=lambda found: {
        n: d for n, d in found.items() if d != MODEL})
    with nothing_written(setup), pytest.raises(BundleInvalid, match=r"1 blob\(s\) of the image cannot be imported: "
                                                                   r"sha256:\w+ \(neither carried nor left to a base"):
        setup.run(bundle, bundle_key)


@pytest.mark.parametrize("scan, refusal", [
    ({"verdict": "fail"}, "the newest scan record of .* under the scan policy now in force fails"),
    ({"policy": "sha256:" + "0" * 64}, "requires a passing scan record")], ids=["failed-scan", "another-scan-policy"])
def test_a_scan_record_the_inside_policy_refuses_stops_the_import(setup: Setup, bundle_key: SigningKey,
                                                                  scan: dict[str, str], refusal: str) -> None:
    bundle = setup.bundle(bundle_key, image=scan)
    with nothing_written(setup), pytest.raises(GateFailed, match=refusal):
        setup.run(bundle, bundle_key)


def test_a_tag_that_would_move_stops_the_import(setup: Setup, bundle_key: SigningKey) -> None:
    push_random_image(setup.registry, setup.repo, tag=TAG, layers=(64,))
    bundle = setup.bundle(bundle_key)
    with nothing_written(setup), pytest.raises(TagMoved, match=f"tag '{TAG}' already names"):
        setup.run(bundle, bundle_key)
