"""The native builder: a base image plus appended reproducible layers — dependencies from the hash-
pinned lock, code, and model artifacts (weights) each in their own layer — so an unchanged layer is
never uploaded again. The build key hashes every input; an image already tagged with it is reused."""
from __future__ import annotations

import datetime
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
from mlci.core.errors import UsageError
from mlci.core.log import logger
from mlci.image import cache
from mlci.image.layers import LAYER_MEDIA_TYPE, Layer, build_layer
from mlci.image.settings import ImageSettings
from mlci.oci.copy import Endpoint, LayoutEndpoint, copy
from mlci.oci.copy import open_endpoint as copy_endpoint
from mlci.oci.layout import Layout
from mlci.oci.reference import ImageRef, parse
from mlci.oci.registry import OCI_MANIFEST, Manifest, sha256_digest

CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
DEPS_DIR = "/opt/mlci/site-packages"


def open_endpoint(ref: ImageRef, settings: ImageSettings) -> tuple[Endpoint, str | None]:
    """A copy endpoint with the image settings' plain-http hosts and CA bundle."""
    return copy_endpoint(ref, settings.plain_http, settings.ca_bundle)


def _file_hashes(root: Path, paths: Iterable[str]) -> list[tuple[str, bool, str]]:
    found = []
    for item in paths:
        top = root / item
        if not top.exists():
            raise UsageError(f"image: {item} does not exist in {root}")
        files = [top] if top.is_file() else [p for p in top.rglob("*") if p.is_file() and ".git" not in p.parts]
        for path in sorted(files):
            digest = cache.file_sha256(path)
            found.append((path.relative_to(root).as_posix(), bool(path.stat().st_mode & 0o111), digest))
    return found


def build_key(settings: ImageSettings, root: Path, base_digest: str | None, labels: dict[str, str]) -> str:
    """sha256 over every input: base digest, lock, code and artifact files (content, path, exec bit),
    the image config and mlci's content labels. The commit's own labels (revision, created) are not
    inputs: a commit that changes none of the inputs reuses the image built before."""
    content_labels = {k: v for k, v in labels.items() if k.startswith("io.mlci.")}
    inputs = {
        "builder": settings.builder,
        "base": base_digest,
        "lock": _file_hashes(root, [settings.lock]) if settings.lock else None,
        "pip_args": settings.pip_args,
        "code": _file_hashes(root, settings.code if settings.builder == "native" else (settings.context,)),
        "artifacts": _file_hashes(root, settings.artifacts),
        "config": [settings.workdir, settings.entrypoint, settings.cmd, sorted(settings.env.items()),
                   settings.port, settings.user],
        "labels": sorted(content_labels.items()),
        "dockerfile": [settings.dockerfile, settings.context, sorted(settings.build_args.items())]
        if settings.builder != "native" else None,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def _layers(settings: ImageSettings, root: Path, work: Path, mtime: int, dest: Endpoint) -> list[tuple[str, Layer]]:
    """The three layers; one whose inputs are unchanged and whose blob `dest` has is not rebuilt."""
    workdir = settings.workdir.rstrip("/")
    specs: list[tuple[str, object, Callable[[], Layer]]] = []
    if settings.lock:
        lock = settings.lock

        def deps() -> Layer:
            target = work / "deps"
            proc.run((sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--require-hashes",
                      "--no-compile", "--disable-pip-version-check", "--target", str(target),
                      "-r", str(root / lock), *settings.pip_args), stream=True)
            return build_layer([(target, DEPS_DIR)], work / "layers", mtime)
        specs.append(("dependencies", [_file_hashes(root, [lock]), settings.pip_args, sys.version], deps))
    for name, paths in (("code", settings.code), ("artifacts", settings.artifacts)):
        if paths:
            def files(name: str = name, paths: tuple[str, ...] = paths) -> Layer:
                sources = [(_staged(root, p, work / name), workdir) for p in paths]
                return build_layer(list(dict.fromkeys(sources)), work / "layers", mtime)
            specs.append((name, [_file_hashes(root, paths), workdir], files))
    built: list[tuple[str, Layer]] = []
    for name, inputs, make in specs:
        key = hashlib.sha256(json.dumps([name, inputs, mtime], sort_keys=True).encode()).hexdigest()
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


def _staged(root: Path, item: str, stage: Path) -> Path:
    """Copy one path (file or directory) into a staging tree so it lands at workdir/item."""
    import shutil

    source, target = root / item, stage / item
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        shutil.copy2(source, target)
    return stage


def _config(base: dict[str, Any], settings: ImageSettings, layers: list[tuple[str, Layer]], created: str,
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
    config["created"] = created
    diff_ids = config.setdefault("rootfs", {"type": "layers", "diff_ids": []})["diff_ids"]
    history = config.get("history") or []
    missing = len(diff_ids) - sum(1 for h in history if not h.get("empty_layer"))
    history += [{"created_by": "(base layer)"}] * max(missing, 0)  # one entry per layer, as tools expect
    diff_ids += [layer.diff_id for _, layer in layers]
    config["history"] = history + [{"created": created, "created_by": f"mlci build: {name} layer"}
                                   for name, _ in layers]
    return config


Base = tuple[Endpoint | None, Manifest | None, dict[str, Any]]


def build_native(settings: ImageSettings, root: Path, dest: Endpoint, tag: str, mtime: int,
                 labels: dict[str, str], base: Base) -> tuple[Manifest, list[str]]:
    """Build the image on `base` (from base_image) in a staging layout and copy it to `dest` under `tag`;
    returns (manifest, uploaded)."""
    base_ep, base_manifest, base_config = base
    created = datetime.datetime.fromtimestamp(mtime, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with tempfile.TemporaryDirectory(prefix="mlci-build-") as tmp:
        work = Path(tmp)
        layers = _layers(settings, root, work, mtime, dest)
        stage = Layout(work / "stage")
        stage.init()
        for _, layer in layers:
            if layer.path is not None:  # a cached layer is already in the destination
                with layer.path.open("rb") as handle:
                    stage.put_blob(layer.digest, handle)
        config = json.dumps(_config(base_config, settings, layers, created, labels), sort_keys=True,
                            separators=(",", ":")).encode()
        stage.put_blob(sha256_digest(config), io.BytesIO(config))
        base_layers = json.loads(base_manifest.data)["layers"] if base_manifest else []
        manifest_doc = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": sha256_digest(config), "size": len(config)},
            "layers": base_layers + [{"mediaType": LAYER_MEDIA_TYPE, "digest": layer.digest,
                                      "size": layer.size} for _, layer in layers],
            "annotations": labels,
        }
        data = json.dumps(manifest_doc, sort_keys=True, separators=(",", ":")).encode()
        manifest = Manifest(data, OCI_MANIFEST, sha256_digest(data))
        stage.put_manifest(manifest, tag)
        result = copy(_Stacked(LayoutEndpoint(stage), base_ep), tag, dest, tag)
    return manifest, result.copied


def base_image(settings: ImageSettings) -> Base:
    scratch = {"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": []}}
    if not settings.base:
        return None, None, scratch
    endpoint, reference = open_endpoint(parse(settings.base), settings)
    manifest = endpoint.get_manifest(reference)
    if manifest.media_type not in (OCI_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json"):
        raise UsageError(f"image.base: {settings.base} is an index; name one platform's manifest by digest")
    descriptor = json.loads(manifest.data)["config"]
    with endpoint.open_blob(descriptor["digest"]) as handle:
        return endpoint, manifest, dict(json.loads(handle.read()))


@dataclass
class _Stacked:
    """The new blobs from the staging layout, the base image's blobs from where the base lives."""

    stage: LayoutEndpoint
    base: Endpoint | None

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
