"""The native builder: a base image plus appended reproducible layers — dependencies from the hash-
pinned lock, code, and model artifacts (weights) each in their own layer — so an unchanged layer is
never uploaded again. The build key hashes every input; an image already tagged with it is reused."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from mlci.core import jsonsafe
from mlci.core.errors import EnvironmentProblem, UsageError
from mlci.core.log import logger
from mlci.core.scratch import scratch_dir
from mlci.image import cache, deps, python
from mlci.image.entries import Collector, Entry, Expected
from mlci.image.labels import created
from mlci.image.layers import MEDIA_TYPES, Compression, Layer, write_layer
from mlci.image.python import Base
from mlci.image.scan import Scanner
from mlci.image.settings import ImageSettings
from mlci.oci.copy import Endpoint, ImageSource, LayoutEndpoint, RegistryEndpoint, copy, copy_blobs, open_source
from mlci.oci.copy import open_endpoint as copy_endpoint
from mlci.oci.layout import HeldBlobs, Layout
from mlci.oci.manifest import OCI_MANIFEST, Descriptor, Manifest, sha256_digest
from mlci.oci.progress import Cancelled, Progress
from mlci.oci.reference import ImageRef, parse
from mlci.oci.settings import RegistrySettings
from mlci.oci.smallblob import MAX_CONFIG, read_small
from mlci.oci.transport import BlobSink, BlobWriter, StreamLost

if TYPE_CHECKING:
    from mlci.dvcstage.fetch import Recorded

CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
DEPS_DIR = "/opt/mlci/site-packages"


@dataclass(frozen=True)
class Artifacts:
    """The artifacts layer's inputs, known before any weight is pulled: `fingerprint` hashes what DVC
    recorded for DVC outputs (dvc.lock, `.dvc` files) and the content of everything else; `collect` pulls
    the missing DVC outputs and returns the layer's entries (called only when the layer is built)."""

    fingerprint: list[Any]
    collect: Callable[[], list[Entry]]
    verify: Callable[[], object]  # when the layer is reused: the workspace's DVC files have their recorded md5


@dataclass(frozen=True)
class Inputs:
    """Everything a build reads from the repository, gathered and checked once."""

    lock: str | None  # the lock file's path in the repo
    code: list[Entry]
    artifacts: Artifacts | None
    dockerfile: list[Entry]  # the Dockerfile builders' context (and Dockerfile); empty for native


@dataclass(frozen=True)
class LayerSpec:
    """One appended layer: its input hash (the key of both caches) and how to build it."""

    name: str  # dependencies | code | artifacts
    inputs: Any  # what the input hash covers (JSON)
    compression: Compression
    entries: Callable[[Path], list[Entry]]  # (work dir) -> what goes in (pip runs, weights are pulled, here)
    check: Callable[[], object] = lambda: None  # what can refuse the build, run before anything is written
    reused: Callable[[], object] = lambda: None  # what can refuse reusing the layer instead of building it

    @property
    def key(self) -> str:
        """The layer's input hash: its name, inputs and compression; never the commit or its time."""
        return cache.input_hash(self.name, [self.inputs, self.compression])


def open_endpoint(ref: ImageRef, settings: ImageSettings, registries: dict[str, RegistrySettings] | None = None
                  ) -> tuple[Endpoint, str | None]:
    """A copy endpoint with the `registries` settings (and the deprecated image.plain_http / image.ca_bundle)."""
    return copy_endpoint(ref, settings.plain_http, settings.ca_bundle, registries)


def image_path(settings: ImageSettings, path: str) -> str:
    """Where a repo path goes in the image: under workdir."""
    return "/".join(x for x in (settings.workdir.strip("/"), path) if x and x != ".")


def gather(settings: ImageSettings, collector: Collector, paths: dict[str, tuple[str, ...]],
           recorded: list[Recorded], pull: Callable[[], object]) -> Inputs:
    """The entries of the checked repo paths (`paths`: code, artifacts, context, dockerfile, lock). For the
    native builder the artifacts are keyed by what DVC `recorded` and pulled (`pull`) only when their layer
    is built; the Dockerfile builders read them from the context, so they are pulled first."""
    def under_workdir(items: tuple[str, ...]) -> list[Entry]:
        return collector.entries((p, image_path(settings, p)) for p in items)

    native = settings.builder == "native"
    if not native:
        pull()
    artifacts = artifact_inputs(settings, collector, paths["artifacts"], recorded, pull) \
        if native and paths["artifacts"] else None
    return Inputs(
        lock=paths["lock"][0] if paths["lock"] else None,
        code=under_workdir(paths["code"]) if native else [],
        artifacts=artifacts,
        dockerfile=[] if native else collector.entries((p, p) for p in (*paths["context"], *paths["dockerfile"])),
    )


def artifact_inputs(settings: ImageSettings, collector: Collector, paths: tuple[str, ...], recorded: list[Recorded],
                    pull: Callable[[], object]) -> Artifacts:
    """The artifacts layer's fingerprint without the weights' bytes. A DVC output is keyed by the hash DVC
    recorded for it; when it is already in the workspace, a file must match that md5 (else exit 2: the
    layer would not hold what the workspace has), and a directory (or a file inside one, or a lock without
    `hash: md5`) is keyed by its content instead. Everything else under the paths is keyed by content.
    The md5 is checked on the read that streams the file into the layer (no pass over the weights before
    the build), or by `verify` when the layer is reused instead of built."""
    root = collector.root
    parts: list[Any] = []
    expected: dict[str, Recorded] = {}  # image path -> the DVC output file there, checked against its md5
    for path in paths:
        outputs = [r for r in recorded if r.artifact == path]
        if not outputs:
            parts.append(["files", path, fingerprint(collector.entries([(path, image_path(settings, path))]))])
            continue
        keyed: list[Any] = []
        for out in outputs:
            name = image_path(settings, out.path)
            if not os.path.lexists(root / out.path):
                keyed.append(["dvc", name, out.recorded, out.inside])
            elif out.is_dir or out.inside or out.recorded.get("hash") != "md5":
                keyed.append(["content", name, fingerprint(collector.entries([(out.path, name)]))])
            else:
                keyed.append(["dvc", name, out.recorded, False])
                expected[name] = out
        covered = [image_path(settings, out.path) for out in outputs]
        rest = [e for e in collector.entries([(path, image_path(settings, path))])
                if not any(e.name == c or e.name.startswith(c + "/") or (e.kind == "dir" and c.startswith(e.name + "/"))
                           for c in covered)] if os.path.lexists(root / path) else []
        parts.append(["dvc", path, sorted(keyed, key=lambda k: str(k[1])), fingerprint(rest)])

    def collect() -> list[Entry]:
        pull()
        return [_checked(e, expected[e.name]) if e.name in expected else e
                for e in collector.entries((p, image_path(settings, p)) for p in paths)]

    def verify() -> None:
        for name, out in expected.items():
            entry = next(e for e in collector.entries([(out.path, name)]) if e.name == name)  # link rules applied
            if entry.kind != "file" or entry.source is None or cache.file_md5(entry.source) != out.recorded["md5"]:
                raise UsageError(_differs(out))
    return Artifacts(parts, collect, verify)


def _checked(entry: Entry, out: Recorded) -> Entry:
    """A DVC output file's entry, to be checked against its recorded md5 as it streams into the layer."""
    if entry.kind != "file" or entry.source is None:
        raise UsageError(_differs(out))
    source, md5, before = entry.source, str(out.recorded["md5"]), entry.source.stat()
    return dataclasses.replace(entry, expected=Expected(md5, _differs(out),
                                                        lambda: cache.remember_file_hash(source, before, "md5", md5)))


def _differs(out: Recorded) -> str:
    return (f"image.artifacts: {out.path} differs from what DVC recorded for {out.output} (md5 "
            f"{out.recorded['md5']}): changed without `dvc commit`? Record it with `dvc commit`, or restore it "
            f"with `dvc checkout {out.output}`")


def fingerprint(entries: Iterable[Entry]) -> list[tuple[str, str, bool, str]]:
    """What an entry contributes to an input hash: name, kind, executable bit, content digest or link."""
    return [(e.name, e.kind, e.executable,
             cache.file_sha256(e.source) if e.kind == "file" and e.source is not None else e.linkname)
            for e in entries]


def dependency_inputs(settings: ImageSettings, root: Path, lock: str, base: Base) -> list[Any]:
    """What the dependency layer's input hash covers: the lock, pip's arguments, the platform it installs for
    (the base's Python, C library and machine: deps.platform_key, never the host's)."""
    return [cache.file_sha256(root / lock), list(settings.pip_args), deps.platform_key(settings.python,
                                                                                      settings.libc, base)]


def layer_specs(settings: ImageSettings, root: Path, inputs: Inputs, base: Base) -> list[LayerSpec]:
    """The appended layers, in image order: dependencies (from the lock), code, artifacts."""
    specs: list[LayerSpec] = []
    if inputs.lock:
        lock = inputs.lock

        platform: list[python.Platform] = []

        def dependency_platform() -> python.Platform:
            if not platform:  # the base's Python and C library, read from its files once
                platform.append(python.target(settings.python, settings.libc, base, str(settings.base)))
            return platform[0]

        def dependency_entries(work: Path) -> list[Entry]:
            target = work / "deps"
            deps.install(dependency_platform(), root, lock, settings.pip_args, target)
            return Collector(target, dvc_cache=lambda: None).entries([(".", DEPS_DIR)])
        specs.append(LayerSpec("dependencies", dependency_inputs(settings, root, lock, base),
                               settings.dependencies_compression, dependency_entries, dependency_platform))
    if inputs.code:
        code = inputs.code
        specs.append(LayerSpec("code", fingerprint(code), settings.code_compression, lambda work: code))
    if inputs.artifacts is not None:
        artifacts = inputs.artifacts
        specs.append(LayerSpec("artifacts", [settings.workdir, artifacts.fingerprint], settings.artifacts_compression,
                               lambda work: artifacts.collect(), reused=artifacts.verify))
    return specs


def build_key(settings: ImageSettings, root: Path, inputs: Inputs, base: Base, labels: dict[str, str]) -> str:
    """sha256 over every input: base digest, each layer's input hash (lock, code, and the artifacts as DVC
    recorded them: no weight is read or pulled for it), the image config and mlci's content labels. The
    commit's own labels (revision, created) are not inputs: a commit that changes none of the inputs reuses
    the image built before."""
    content_labels = {k: v for k, v in labels.items() if k.startswith("io.mlci.")}
    native = settings.builder == "native"
    key = {
        "builder": settings.builder,
        "base": base[1].digest if base[1] else None,
        "layers": [(spec.name, spec.key) for spec in layer_specs(settings, root, inputs, base)] if native else None,
        "config": [settings.workdir, settings.entrypoint, settings.cmd, sorted(settings.env.items()),
                   settings.port, settings.user],
        "labels": sorted(content_labels.items()),
        "dockerfile": None if native else [fingerprint(inputs.dockerfile), settings.dockerfile,
                                           sorted(settings.build_args.items())],
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Appended:
    """A layer of the image being built, and whether the destination's build cache must learn of it."""

    spec: LayerSpec
    layer: Layer
    record: bool  # built now, or found only through the local hint


def _layers(specs: list[LayerSpec], work: Path, dest: Endpoint, sink: BlobSink, scanner: Scanner,
            base: tuple[ImageSource, list[Descriptor]] | None) -> tuple[list[Appended], list[str]]:
    """The layers, and the blobs written meanwhile (the base's to `dest`, then the new layers). A layer whose
    input hash the destination's record (or the local hint) maps to a blob `dest` holds is not rebuilt. The
    rest are streamed into `sink` (`dest` itself, blobs held in the destination layout, or the staging
    layout), each in its own thread, while `base`'s blobs are copied to `dest` in another. Their inputs are
    gathered in this thread (pip and DVC's pull, stopped by Ctrl-C or SIGTERM here), the cheap ones first, so
    the layers already gathered are written while pip runs; what can refuse the build (spec.check) runs before
    anything is written. The first failure stops the rest at their next write (nothing is tagged; upload
    sessions are cancelled)."""
    appended: dict[str, Appended] = {}
    missing: list[LayerSpec] = []
    for spec in specs:
        found = cache.find(dest, spec.key, spec.name)
        if found is None:
            missing.append(spec)
            continue
        spec.reused()
        layer, recorded = found
        where = "the destination's build cache" if recorded else "the local layer index"
        logger.info("mlci: %s layer: unchanged, already in the destination (%s, from %s)", spec.name,
                    layer.digest[:19], where)
        appended[spec.name] = Appended(spec, layer, not recorded)
    for spec in missing:  # e.g. the base's Python: refused before any upload; detected with the CPUs to itself
        spec.check()
    stop = threading.Event()
    progress = Progress("the base image", [b.size for b in base[1]]) if base is not None and base[1] else None
    pool = ThreadPoolExecutor(len(missing) + 1, thread_name_prefix="mlci-layer")
    base_copy: Future[list[str]] | None = None
    built: list[Future[tuple[LayerSpec, Layer]]] = []
    try:
        if base is not None and progress is not None:
            base_copy = pool.submit(_copy_base, base[0], dest, base[1], progress)
        for spec in sorted(missing, key=lambda s: s.name == "dependencies"):  # pip last: the rest overlap it
            _raise_first([base_copy, *built])
            logger.info("mlci: %s layer: building", spec.name)
            (work / spec.name).mkdir()
            entries = spec.entries(work / spec.name)
            built.append(pool.submit(_stream_layer, spec, entries, sink, scanner, stop))
        running: list[Future[Any]] = [f for f in (base_copy, *built) if f is not None]
        wait(running, return_when=FIRST_EXCEPTION)
        _raise_first([base_copy, *built])
    except BaseException:  # the first failure, or Ctrl-C/SIGTERM here: the other threads stop too
        stop.set()
        if progress is not None:
            progress.cancel()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    written = base_copy.result() if base_copy is not None else []
    for future in built:
        spec, layer = future.result()
        cache.store(spec.key, layer)  # a hint, once the blob is in the destination
        appended[spec.name] = Appended(spec, layer, True)
        written.append(layer.digest)
    return [appended[spec.name] for spec in specs], written


def _raise_first(futures: list[Future[Any] | None]) -> None:
    """Raise the exception of the first thread that failed, if one did."""
    for future in futures:
        if future is not None and future.done() and future.exception() is not None:
            future.result()


def _copy_base(src: ImageSource, dest: Endpoint, blobs: list[Descriptor], progress: Progress) -> list[str]:
    """The base image's blobs the destination lacks, copied while the layers build; their digests."""
    with progress:
        return copy_blobs(src, dest, blobs, progress).copied


def _stream_layer(spec: LayerSpec, entries: list[Entry], dest: BlobSink, scanner: Scanner, stop: threading.Event
                  ) -> tuple[LayerSpec, Layer]:
    """Write one layer straight into `dest`. An upload the registry cancelled mid-stream cannot be
    sent again from a buffer: the layer is built once more from the start (the same bytes: it is
    deterministic)."""
    for attempt in (1, 2):
        try:
            layer = write_layer(entries, _Stoppable(dest.blob_writer(MEDIA_TYPES[spec.compression]), stop), scanner,
                                spec.compression)
        except StreamLost as exc:
            if attempt == 2:
                raise
            logger.info("mlci: %s layer: %s; building it again from the start", spec.name, exc)
            continue
        logger.info("mlci: %s layer: %s (%.1f MB) written", spec.name, layer.digest[:19],
                    layer.size / 1e6)
        return spec, layer
    raise AssertionError("unreachable")


class _Stoppable:
    """A blob writer that refuses further writes once `stop` is set (another layer failed, or Ctrl-C)."""

    def __init__(self, inner: BlobWriter, stop: threading.Event) -> None:
        self.inner, self.stop = inner, stop

    def write(self, data: bytes) -> int:
        if self.stop.is_set():
            raise Cancelled("stopped: another part of the build failed or was interrupted")
        return self.inner.write(data)

    def finish(self) -> Descriptor:
        if self.stop.is_set():
            raise Cancelled("stopped: another part of the build failed or was interrupted")
        return self.inner.finish()

    def abort(self) -> None:
        self.inner.abort()


def _config(base: dict[str, Any], settings: ImageSettings, layers: list[tuple[str, Layer]], stamp: str,
            labels: dict[str, str]) -> dict[str, Any]:
    config: dict[str, Any] = jsonsafe.loads(json.dumps(base))
    run = config.setdefault("config", {})
    env = [e for e in run.get("Env") or [] if not e.startswith(tuple(f"{k}=" for k in settings.env))]
    if any(name == "dependencies" for name, _ in layers):
        env.append(f"PYTHONPATH={DEPS_DIR}")
    run["Env"] = env + [f"{k}={v}" for k, v in sorted(settings.env.items())]
    run["WorkingDir"] = settings.workdir
    run["Labels"] = {**(run.get("Labels") or {}), **labels}
    if settings.entrypoint:
        run["Entrypoint"] = list(settings.entrypoint)
    if settings.cmd:
        run["Cmd"] = list(settings.cmd)
    if settings.port:
        run["ExposedPorts"] = {f"{settings.port}/tcp": {}}
    if settings.user:
        run["User"] = settings.user
    config["created"] = stamp
    diff_ids = config.setdefault("rootfs", {"type": "layers", "diff_ids": []})["diff_ids"]
    history = config.get("history") or []
    missing = len(diff_ids) - sum(1 for h in history if not h.get("empty_layer"))
    history += [{"created_by": "(base layer)"}] * max(missing, 0)  # one entry per layer, as tools expect
    diff_ids += [layer.diff_id for _, layer in layers]
    config["history"] = history + [{"created": stamp, "created_by": f"mlci build: {name} layer"}
                                   for name, _ in layers]
    return config


def build_native(settings: ImageSettings, root: Path, inputs: Inputs, dest: Endpoint, tag: str, epoch: int,
                 labels: dict[str, str], base: Base, scanner: Scanner) -> tuple[Manifest, list[str]]:
    """Build the image on `base` (from base_image): into a registry, the new layers are streamed straight
    into `dest` while the base's blobs are copied there (_layers); then the config and manifest are put in
    a staging layout and copied to `dest` under `tag` (the layers are found there), then the new layers
    recorded in the destination's build cache; returns (manifest, uploaded). A layout or an archive is
    changed only once every layer is built and checked (a refused build leaves it as it was): into a layout
    the layers are streamed under temp names in its blobs/ and named when the config has passed the scan
    (written once: a 5 GB weights layer is not copied again); into an archive they are streamed into the
    staging layout and copied with the rest. The commit time `epoch` goes only into the config's `created`
    and history. The caller commits `dest`."""
    base_ep, base_manifest, base_config = base
    base_blobs = [Descriptor.from_json(d, f"image.base: {settings.base}: layer") for d in _base_layers(base_manifest)]
    with scratch_dir("mlci-build-") as tmp:
        work = Path(tmp)
        stage = Layout(work / "stage")
        stage.init()
        direct = isinstance(dest, RegistryEndpoint)  # blobs without a tag: invisible, collected by the registry
        held = HeldBlobs(dest.layout) if isinstance(dest, LayoutEndpoint) else None
        sink: BlobSink = dest if direct else held or LayoutEndpoint(stage)
        try:
            appended, written = _layers(layer_specs(settings, root, inputs, base), work, dest, sink, scanner,
                                        (base_ep, base_blobs) if base_ep is not None and direct else None)
            layers = [(a.spec.name, a.layer) for a in appended]
            config = json.dumps(_config(base_config, settings, layers, created(epoch), labels), sort_keys=True,
                                separators=(",", ":")).encode()
            scanner.check(config, "the image config (labels, env, entrypoint, cmd)")
            if held is not None:
                held.publish()
        except BaseException:
            if held is not None:
                held.discard()
            raise
        stage.put_blob(sha256_digest(config), io.BytesIO(config))
        manifest_doc = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": sha256_digest(config), "size": len(config)},
            "layers": _base_layers(base_manifest) + [layer.descriptor() for _, layer in layers],
            "annotations": labels,
        }
        data = json.dumps(manifest_doc, sort_keys=True, separators=(",", ":")).encode()
        manifest = Manifest(data, OCI_MANIFEST, sha256_digest(data))
        stage.put_manifest(manifest, tag)
        result = copy(_Stacked(LayoutEndpoint(stage), base_ep), tag, dest, tag)
        for item in (a for a in appended if a.record):  # only once the blobs are there
            cache.remember(dest, item.spec.key, item.spec.name, item.layer)
    return manifest, (written if sink is dest or sink is held else []) + result.copied


def _base_layers(manifest: Manifest | None) -> list[dict[str, Any]]:
    return list(jsonsafe.loads(manifest.data)["layers"]) if manifest else []


def base_image(settings: ImageSettings, registries: dict[str, RegistrySettings] | None = None) -> Base:
    """The base image's endpoint, manifest and config (scratch when image.base is empty)."""
    scratch = {"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": []}}
    if not settings.base:
        return None, None, scratch
    endpoint, reference = open_source(parse(settings.base), settings.plain_http, settings.ca_bundle, registries)
    manifest = endpoint.get_manifest(reference)
    if manifest.media_type not in (OCI_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json"):
        raise UsageError(f"image.base: {settings.base} is an index; name one platform's manifest by digest")
    try:
        shown = f"image.base: {settings.base}: config"
        descriptor = Descriptor.from_json(jsonsafe.loads(manifest.data)["config"], shown)
        layers = jsonsafe.loads(manifest.data)["layers"]
        config = jsonsafe.loads(read_small(endpoint, descriptor, MAX_CONFIG, shown))
        if not isinstance(config, dict) or not isinstance(layers, list):
            raise ValueError("not an image")
    except (ValueError, KeyError, TypeError):
        raise EnvironmentProblem(f"image.base: {settings.base}: not a readable image manifest and config") from None
    return endpoint, manifest, dict(config)


@dataclass
class _Stacked:
    """A build's image source: the new blobs from the staging layout, the base image's from where it lives."""

    stage: LayoutEndpoint
    base: ImageSource | None

    def get_manifest(self, reference: str | None) -> Manifest:
        return self.stage.get_manifest(reference)

    def open_blob(self, digest: str) -> BinaryIO:
        if self.stage.has_blob(digest) or self.base is None:
            return self.stage.open_blob(digest)
        return self.base.open_blob(digest)
