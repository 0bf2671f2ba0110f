"""The `image` section of mlci.yaml: what the native builder puts in the model image."""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Literal

from mlci.core.errors import ConfigError

# the C libraries whose wheel tags exist (manylinux_2_*, musllinux_1_*), and a minor version far beyond any
# release: each minor is one pip --platform argument, so an unbounded one hangs pip or overflows its argv
LIBC_MAJOR = {"glibc": 2, "musl": 1}
LIBC_MAX_MINOR = 99
_USER = re.compile(r"[^:\s]+(:[^:\s]+)?")  # user, uid, user:group, uid:gid (the OCI config's User)


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
    workdir: str = field(default="/app", metadata={"doc": (
        "Working directory in the image (absolute, without ..).")})
    entrypoint: tuple[str, ...] = field(default=(), metadata={"doc": "Entrypoint (exec form)."})
    cmd: tuple[str, ...] = field(default=(), metadata={"doc": "Command (exec form)."})
    env: dict[str, str] = field(default_factory=dict, metadata={"doc": (
        "Environment variables (names without '=', spaces or control characters).")})
    port: int | None = field(default=None, metadata={"doc": "Exposed TCP port (1-65535)."})
    user: str | None = field(default=None, metadata={"doc": (
        "User to run as: user, uid, user:group or uid:gid (e.g. 10001).")})
    plain_http: tuple[str, ...] = field(default=(), metadata={"doc": (
        "Deprecated: use registries.HOST.plain_http. Registry hosts spoken to over plain HTTP.")})
    ca_bundle: str | None = field(default=None, metadata={"doc": (
        "Deprecated: use registries.HOST.ca_bundle. A PEM CA bundle for every registry (must exist).")})


def parse_python(value: str) -> tuple[int, int, str]:
    """`image.python`: "3.12" (or "3.13t", free-threaded)."""
    match = re.fullmatch(r"(\d)\.(\d{1,2})(t?)", value.strip())
    if not match:
        raise ConfigError([f"image.python: {value!r} is not a Python version like 3.12"])
    return int(match[1]), int(match[2]), match[3]


def parse_libc(value: str) -> tuple[Literal["glibc", "musl"], int, int]:
    """`image.libc`: "glibc 2.36" or "musl 1.2" (glibc 2.x, musl 1.x, the minor at most LIBC_MAX_MINOR)."""
    match = re.fullmatch(r"(glibc|musl)[ -](\d{1,3})\.(\d{1,3})", value.strip())
    if not match:
        raise ConfigError([f"image.libc: {value!r} is not like 'glibc 2.36' or 'musl 1.2'"])
    kind: Literal["glibc", "musl"] = "glibc" if match[1] == "glibc" else "musl"
    major, minor = int(match[2]), int(match[3])
    if not libc_tagged(kind, major, minor):
        raise ConfigError([f"image.libc: {value!r}: wheels are tagged for {kind} {LIBC_MAJOR[kind]}.0 to "
                           f"{LIBC_MAJOR[kind]}.{LIBC_MAX_MINOR}"])
    return kind, major, minor


def libc_tagged(kind: Literal["glibc", "musl"], major: int, minor: int) -> bool:
    """Whether wheels can be tagged for this C library version (and its tags are few enough to list)."""
    return major == LIBC_MAJOR[kind] and 0 <= minor <= LIBC_MAX_MINOR


def image_problems(settings: ImageSettings) -> list[str]:
    """The `image` values that would make an image no runtime reads as meant, or hang the build; one line each."""
    problems: list[str] = []
    for value, parse in ((settings.python, parse_python), (settings.libc, parse_libc)):
        try:
            parse(value) if value is not None else None
        except ConfigError as exc:
            problems += exc.problems
    workdir = settings.workdir
    if not posixpath.isabs(workdir) or ".." in workdir.split("/") or not _plain(workdir):
        problems.append(f"image.workdir: {workdir!r}: must be an absolute path in the image, without .. or a "
                        "control character")
    if settings.port is not None and not 1 <= settings.port <= 65535:
        problems.append(f"image.port: {settings.port}: a TCP port is 1 to 65535")
    if settings.user is not None and not (_USER.fullmatch(settings.user) and _plain(settings.user)):
        problems.append(f"image.user: {settings.user!r}: a user or uid, optionally :group or :gid, without spaces "
                        "or control characters")
    for name, value in settings.env.items():
        if not name or "=" in name or not _plain(name) or any(c.isspace() for c in name):
            problems.append(f"image.env: {name!r}: a variable name is not empty and holds no '=', space or "
                            "control character")
        elif "\0" in value:
            problems.append(f"image.env.{name}: a NUL character cannot be in a variable's value")
    return problems


def _plain(text: str) -> bool:
    """No control character (C0, DEL, C1): one would split a log line or a config listing."""
    return not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text)
