"""The native builder: a base image plus appended reproducible layers — dependencies from the hash-
pinned lock, code, and model artifacts (weights) each in their own layer — so an unchanged layer is
never uploaded again. The build key hashes every input; an image already tagged with it is reused."""
from __future__ import annotations

import hashlib
import io
import json
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from mlci.core import proc
from mlci.core.errors import EnvironmentProblem, PipelineFailed, UsageError
from mlci.core.log import logger
from mlci.image import cache
from mlci.image.entries import Collector, Entry
from mlci.image.labels import created
from mlci.image.layers import LAYER_MEDIA_TYPE, Layer, build_layer
from mlci.image.scan import Scanner
from mlci.image.settings import ImageSettings
from mlci.oci.copy import Endpoint, ImageSource, LayoutEndpoint, copy, open_source
from mlci.oci.copy import open_endpoint as copy_endpoint
from mlci.oci.layout import Layout
from mlci.oci.manifest import OCI_MANIFEST, Manifest, sha256_digest
from mlci.oci.reference import ImageRef, parse
from mlci.oci.settings import RegistrySettings

CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
DEPS_DIR = "/opt/mlci/site-packages"


@dataclass(frozen=True)
class Inputs:
    """Everything a build reads from the repository, gathered and checked once (after the DVC pull)."""

    lock: str | None  # the lock file's path in the repo
    code: list[Entry]
    artifacts: list[Entry]
    dockerfile: list[Entry]  # the Dockerfile builders' context (and Dockerfile); empty for native


def open_endpoint(ref: ImageRef, settings: ImageSettings, registries: dict[str, RegistrySettings] | None = None
                  ) -> tuple[Endpoint, str | None]:
    """A copy endpoint with the `registries` settings (and the deprecated image.plain_http / image.ca_bundle)."""
    return copy_endpoint(ref, settings.plain_http, settings.ca_bundle, registries)


def gather(settings: ImageSettings, collector: Collector, paths: dict[str, tuple[str, ...]]) -> Inputs:
    """The entries of the checked repo paths (`paths`: code, artifacts, context, dockerfile, lock)."""
    workdir = settings.workdir.strip("/")

    def under_workdir(items: tuple[str, ...]) -> list[Entry]:
        return collector.entries((p, "/".join(x for x in (workdir, p) if x and x != ".")) for p in items)

    native = settings.builder == "native"
    return Inputs(
        lock=paths["lock"][0] if paths["lock"] else None,
        code=under_workdir(paths["code"]) if native else [],
        artifacts=under_workdir(paths["artifacts"]),
        dockerfile=[] if native else collector.entries((p, p) for p in (*paths["context"], *paths["dockerfile"])),
    )


def fingerprint(entries: Iterable[Entry]) -> list[tuple[str, str, bool, str]]:
    """What an entry contributes to an input hash: name, kind, executable bit, content digest or link."""
    return [(e.name, e.kind, e.executable,
             cache.file_sha256(e.source) if e.kind == "file" and e.source is not None else e.linkname)
            for e in entries]


def build_key(settings: ImageSettings, root: Path, inputs: Inputs, base_digest: str | None,
              labels: dict[str, str]) -> str:
    """sha256 over every input: base digest, lock, code and artifact files (content, path, exec bit,
    link target), the image config and mlci's content labels. The commit's own labels (revision,
    created) are not inputs: a commit that changes none of the inputs reuses the image built before."""
    content_labels = {k: v for k, v in labels.items() if k.startswith("io.mlci.")}
    key = {
        "builder": settings.builder,
        "base": base_digest,
        "lock": cache.file_sha256(root / inputs.lock) if inputs.lock else None,
        "pip_args": settings.pip_args,
        "code": fingerprint(inputs.code),
        "artifacts": fingerprint(inputs.artifacts),
        "config": [settings.workdir, settings.entrypoint, settings.cmd, sorted(settings.env.items()),
                   settings.port, settings.user],
        "labels": sorted(content_labels.items()),
        "dockerfile": [fingerprint(inputs.dockerfile), settings.dockerfile, sorted(settings.build_args.items())]
        if settings.builder != "native" else None,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _layers(settings: ImageSettings, root: Path, inputs: Inputs, work: Path, mtime: int, dest: Endpoint,
            scanner: Scanner) -> list[tuple[str, Layer]]:
    """The three layers; one whose inputs are unchanged and whose blob `dest` has is not rebuilt."""
    specs: list[tuple[str, object, Callable[[], Layer]]] = []
    if inputs.lock:
        lock = inputs.lock

        def deps() -> Layer:
            target = work / "deps"
            result = proc.run((sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--require-hashes",
                               "--no-compile", "--disable-pip-version-check", "--target", str(target),
                               "-r", str(root / lock), *settings.pip_args), cwd=root, stream=True, check=False)
            if result.returncode != 0:
                raise PipelineFailed(f"pip could not install image.lock {lock} (exit {result.returncode}):\n"
                                     f"{result.tail(20)}")
            entries = Collector(target, dvc_cache=lambda: None).entries([(".", DEPS_DIR)])
            return build_layer(entries, work / "layers", mtime, scanner)
        specs.append(("dependencies", [cache.file_sha256(root / lock), settings.pip_args, sys.version], deps))
    for name, entries in (("code", inputs.code), ("artifacts", inputs.artifacts)):
        if entries:
            def files(entries: list[Entry] = entries) -> Layer:
                return build_layer(entries, work / "layers", mtime, scanner)
            specs.append((name, fingerprint(entries), files))
    built: list[tuple[str, Layer]] = []
    for name, layer_inputs, make in specs:
        key = hashlib.sha256(json.dumps([name, layer_inputs, mtime], sort_keys=True).encode()).hexdigest()
        known = cache.lookup(key)
        if known is not None and dest.has_blob(known.digest):
            logger.info("mlci: %s layer: unchanged, already in the destination (%s)", name, known.digest[:19])
            built.append((name, known))
            continue
        logger.info("mlci: %s layer: building", name)
        layer = make()
        cache.store(key, layer)
        built.append((name, layer))
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


Base = tuple[ImageSource | None, Manifest | None, dict[str, Any]]


def build_native(settings: ImageSettings, root: Path, inputs: Inputs, dest: Endpoint, tag: str, mtime: int,
                 labels: dict[str, str], base: Base, scanner: Scanner) -> tuple[Manifest, list[str]]:
    """Build the image on `base` (from base_image) in a staging layout and copy it to `dest` under `tag`;
    returns (manifest, uploaded). The caller commits `dest`."""
    base_ep, base_manifest, base_config = base
    with tempfile.TemporaryDirectory(prefix="mlci-build-") as tmp:
        work = Path(tmp)
        layers = _layers(settings, root, inputs, work, mtime, dest, scanner)
        stage = Layout(work / "stage")
        stage.init()
        for _, layer in layers:
            if layer.path is not None:  # a cached layer is already in the destination
                with layer.path.open("rb") as handle:
                    stage.put_blob(layer.digest, handle)
        config = json.dumps(_config(base_config, settings, layers, created(mtime), labels), sort_keys=True,
                            separators=(",", ":")).encode()
        scanner.check(config, "the image config (labels, env, entrypoint, cmd)")
        stage.put_blob(sha256_digest(config), io.BytesIO(config))
        manifest_doc = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": sha256_digest(config), "size": len(config)},
            "layers": _base_layers(base_manifest) + [{"mediaType": LAYER_MEDIA_TYPE, "digest": layer.digest,
                                                      "size": layer.size} for _, layer in layers],
            "annotations": labels,
        }
        data = json.dumps(manifest_doc, sort_keys=True, separators=(",", ":")).encode()
        manifest = Manifest(data, OCI_MANIFEST, sha256_digest(data))
        stage.put_manifest(manifest, tag)
        result = copy(_Stacked(LayoutEndpoint(stage), base_ep), tag, dest, tag)
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
