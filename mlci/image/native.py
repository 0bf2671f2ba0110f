"""The native builder: a base image plus appended reproducible layers — dependencies from the hash-
pinned lock, code, and model artifacts (weights) each in their own layer — so an unchanged layer is
never uploaded again. The build key hashes every input; an image already tagged with it is reused."""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from mlci.core.errors import EnvironmentProblem, UsageError
from mlci.core.log import logger
from mlci.image import cache, deps, python
from mlci.image.entries import Collector, Entry
from mlci.image.labels import created
from mlci.image.layers import Compression, Layer, build_layer
from mlci.image.python import Base
from mlci.image.scan import Scanner
from mlci.image.settings import ImageSettings
from mlci.oci.copy import Endpoint, ImageSource, LayoutEndpoint, copy, open_source
from mlci.oci.copy import open_endpoint as copy_endpoint
from mlci.oci.layout import Layout
from mlci.oci.manifest import OCI_MANIFEST, Manifest, sha256_digest
from mlci.oci.reference import ImageRef, parse
from mlci.oci.settings import RegistrySettings

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
    make: Callable[[Path, Scanner], Layer]  # (work dir, scanner) -> the built layer

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
    `hash: md5`) is keyed by its content instead. Everything else under the paths is keyed by content."""
    root = collector.root
    parts: list[Any] = []
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
                keyed.append(["dvc", name, _verified(collector, out, name), False])
        covered = [image_path(settings, out.path) for out in outputs]
        rest = [e for e in collector.entries([(path, image_path(settings, path))])
                if not any(e.name == c or e.name.startswith(c + "/") or (e.kind == "dir" and c.startswith(e.name + "/"))
                           for c in covered)] if os.path.lexists(root / path) else []
        parts.append(["dvc", path, sorted(keyed, key=lambda k: str(k[1])), fingerprint(rest)])

    def collect() -> list[Entry]:
        pull()
        return collector.entries((p, image_path(settings, p)) for p in paths)
    return Artifacts(parts, collect)


def _verified(collector: Collector, out: Recorded, name: str) -> dict[str, Any]:
    """The recorded hash of a DVC output file in the workspace, after checking the file has that md5."""
    entry = next(e for e in collector.entries([(out.path, name)]) if e.name == name)  # link rules applied
    if entry.kind == "file" and entry.source is not None and cache.file_md5(entry.source) == out.recorded["md5"]:
        return out.recorded
    raise UsageError(f"image.artifacts: {out.path} differs from what DVC recorded for {out.output} (md5 "
                     f"{out.recorded['md5']}): changed without `dvc commit`? Record it with `dvc commit`, or "
                     f"restore it with `dvc checkout {out.output}`")


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

        def dependency_layer(work: Path, scanner: Scanner) -> Layer:
            target = work / "deps"
            deps.install(python.target(settings.python, settings.libc, base, str(settings.base)), root, lock,
                         settings.pip_args, target)
            entries = Collector(target, dvc_cache=lambda: None).entries([(".", DEPS_DIR)])
            return build_layer(entries, work / "layers", scanner, settings.dependencies_compression)
        specs.append(LayerSpec("dependencies", dependency_inputs(settings, root, lock, base),
                               settings.dependencies_compression, dependency_layer))
    if inputs.code:
        code = inputs.code
        specs.append(LayerSpec("code", fingerprint(code), settings.code_compression,
                               lambda work, scanner: build_layer(code, work / "layers", scanner,
                                                                 settings.code_compression)))
    if inputs.artifacts is not None:
        artifacts = inputs.artifacts
        specs.append(LayerSpec("artifacts", [settings.workdir, artifacts.fingerprint], settings.artifacts_compression,
                               lambda work, scanner: build_layer(artifacts.collect(), work / "layers", scanner,
                                                                 settings.artifacts_compression)))
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


def _layers(specs: list[LayerSpec], work: Path, dest: Endpoint, scanner: Scanner) -> list[Appended]:
    """The layers; one whose input hash the destination's record (or the local hint) maps to a blob the
    destination holds is not rebuilt."""
    built: list[Appended] = []
    for spec in specs:
        key = spec.key
        found = cache.find(dest, key, spec.name)
        if found is not None:
            layer, recorded = found
            where = "the destination's build cache" if recorded else "the local layer index"
            logger.info("mlci: %s layer: unchanged, already in the destination (%s, from %s)", spec.name,
                        layer.digest[:19], where)
            built.append(Appended(spec, layer, not recorded))
            continue
        logger.info("mlci: %s layer: building", spec.name)
        layer = spec.make(work, scanner)
        cache.store(key, layer)
        built.append(Appended(spec, layer, True))
    return built


def _config(base: dict[str, Any], settings: ImageSettings, layers: list[tuple[str, Layer]], stamp: str,
            labels: dict[str, str]) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(json.dumps(base))
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
    """Build the image on `base` (from base_image) in a staging layout and copy it to `dest` under `tag`,
    then record the new layers in the destination's build cache; returns (manifest, uploaded). The commit
    time `epoch` goes only into the config's `created` and history. The caller commits `dest`."""
    base_ep, base_manifest, base_config = base
    with tempfile.TemporaryDirectory(prefix="mlci-build-") as tmp:
        work = Path(tmp)
        appended = _layers(layer_specs(settings, root, inputs, base), work, dest, scanner)
        layers = [(a.spec.name, a.layer) for a in appended]
        stage = Layout(work / "stage")
        stage.init()
        for _, layer in layers:
            if layer.path is not None:  # a cached layer is already in the destination
                with layer.path.open("rb") as handle:
                    stage.put_blob(layer.digest, handle)
        config = json.dumps(_config(base_config, settings, layers, created(epoch), labels), sort_keys=True,
                            separators=(",", ":")).encode()
        scanner.check(config, "the image config (labels, env, entrypoint, cmd)")
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
    return manifest, result.copied


def _base_layers(manifest: Manifest | None) -> list[dict[str, Any]]:
    return list(json.loads(manifest.data)["layers"]) if manifest else []


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
        descriptor = json.loads(manifest.data)["config"]
        layers = json.loads(manifest.data)["layers"]
        with endpoint.open_blob(str(descriptor["digest"])) as handle:
            config = json.loads(handle.read())
        if not isinstance(config, dict) or not isinstance(layers, list):
            raise ValueError("not an image")
    except (ValueError, KeyError, TypeError):
        raise EnvironmentProblem(f"image.base: {settings.base}: not a readable image manifest and config") from None
    return endpoint, manifest, dict(config)


@dataclass
class _Stacked:
    """The new blobs from the staging layout, the base image's blobs from where the base lives."""

    stage: LayoutEndpoint
    base: ImageSource | None

    def get_manifest(self, reference: str | None) -> Manifest:
        return self.stage.get_manifest(reference)

    def has_blob(self, digest: str) -> bool:
        return self.stage.has_blob(digest)

    def open_blob(self, digest: str) -> BinaryIO:
        if self.stage.has_blob(digest) or self.base is None:
            return self.stage.open_blob(digest)
        return self.base.open_blob(digest)

    def put_blob(self, digest: str, data: BinaryIO, size: int) -> None:
        raise AssertionError("a build source is read-only")

    def put_manifest(self, manifest: Manifest, tag: str | None) -> None:
        raise AssertionError("a build source is read-only")

    def commit(self) -> None:
        raise AssertionError("a build source is read-only")

    def check_writable(self) -> None:
        raise AssertionError("a build source is read-only")
