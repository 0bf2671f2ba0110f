"""The `image` section of mlci.yaml: what the native builder puts in the model image."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class ImageSettings:
    """`image` in mlci.yaml: what `mlci build` builds, with which builder, and where it goes."""

    builder: Literal["native", "buildah", "kaniko", "docker"] = field(default="native", metadata={"doc": (
        "native (layers appended by mlci, no daemon), buildah (Dockerfile, chroot isolation), kaniko or "
        "docker (buildx): the last two are unverified on a real runner (docs/build.md).")})
    dockerfile: str = field(default="Dockerfile", metadata={"doc": (
        "Dockerfile for buildah/kaniko/docker (a path inside the repo).")})
    context: str = field(default=".", metadata={"doc": "Build context for buildah/kaniko/docker (inside the repo)."})
    build_args: dict[str, str] = field(default_factory=dict, metadata={"doc": (
        "Build arguments (e.g. BASE_IMAGE, PIP_INDEX_URL) for buildah/kaniko/docker.")})
    kaniko_executor: str = field(default="/kaniko/executor", metadata={"doc": "Path of kaniko's executor."})
    name: str | None = field(default=None, metadata={"doc": (
        "Where the image goes: docker://HOST[:PORT]/REPO, oci:DIR or oci-archive:FILE, optionally with "
        ":TAG (else --tag); empty: `mlci build` skips.")})
    base: str | None = field(default=None, metadata={"doc": (
        "Base image: oci:DIR[:TAG] or docker://HOST/REPO[:TAG|@DIGEST] (a registry host is always "
        "named); default: empty (scratch).")})
    lock: str | None = field(default=None, metadata={"doc": (
        "Requirements, every one pinned (==) and hashed (pip-compile/uv --generate-hashes), installed into "
        "the dependency layer (/opt/mlci/site-packages).")})
    python: str | None = field(default=None, metadata={"doc": (
        "The image's Python for the dependency layer's wheels, e.g. \"3.12\" (\"3.13t\": free-threaded); "
        "default: read from the base (the python3 on its PATH).")})
    libc: str | None = field(default=None, metadata={"doc": (
        "The image's C library for the wheels' platform tags: \"glibc 2.36\" or \"musl 1.2\"; default: read "
        "from the base. With both this and image.python set, the base's layers are never read for them.")})
    pip_args: tuple[str, ...] = field(default=(), metadata={"doc": (
        "Where pip finds wheels, e.g. [--no-index, --find-links, wheelhouse] or [--index-url, URL].")})
    code: tuple[str, ...] = field(default=("src",), metadata={"doc": (
        "Code paths inside the repo, under workdir in the image (symlinks kept; none may leave the repo).")})
    artifacts: tuple[str, ...] = field(default=(), metadata={"doc": (
        "Model weights and other DVC outputs inside the repo, in their own layer under workdir.")})
    dependencies_compression: Literal["gzip", "zstd", "none"] = field(default="gzip", metadata={"doc": (
        "Compression of the dependency layer: gzip (pulled by every runtime), zstd or none (docs/build.md).")})
    code_compression: Literal["gzip", "zstd", "none"] = field(default="gzip", metadata={"doc": (
        "Compression of the code layer: gzip, zstd or none.")})
    artifacts_compression: Literal["gzip", "zstd", "none"] = field(default="none", metadata={"doc": (
        "Compression of the artifacts (weights) layer: none (default: weights do not compress, gzip costs "
        "~35 s of CPU per GB to save <0.1%; measured in docs/build.md), zstd (for compressible artifacts; "
        "containerd 1.5+, CRI-O, podman, Docker 23+) or gzip.")})
    workdir: str = field(default="/app", metadata={"doc": "Working directory in the image."})
    entrypoint: tuple[str, ...] = field(default=(), metadata={"doc": "Entrypoint (exec form)."})
    cmd: tuple[str, ...] = field(default=(), metadata={"doc": "Command (exec form)."})
    env: dict[str, str] = field(default_factory=dict, metadata={"doc": "Environment variables."})
    port: int | None = field(default=None, metadata={"doc": "Exposed TCP port."})
    user: str | None = field(default=None, metadata={"doc": "User to run as (e.g. 10001)."})
    plain_http: tuple[str, ...] = field(default=(), metadata={"doc": (
        "Deprecated: use registries.HOST.plain_http. Registry hosts spoken to over plain HTTP.")})
    ca_bundle: str | None = field(default=None, metadata={"doc": (
        "Deprecated: use registries.HOST.ca_bundle. A PEM CA bundle for every registry (must exist).")})
