"""The base image's Python and C library, read from its layers (never run): the version and ABI of the
`python3` on its PATH, glibc's or musl's version, and the architecture from its config. Overridden by
`image.python` / `image.libc`; cached by the base's manifest digest in mlci's cache dir (a hint)."""
from __future__ import annotations

import gzip
import json
import posixpath
import re
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Literal

from mlci.core import fsutil, jsonsafe
from mlci.core.errors import ConfigError, EnvironmentProblem, MlciError
from mlci.core.log import logger
from mlci.image.settings import libc_tagged, parse_libc, parse_python
from mlci.oci.manifest import Manifest
from mlci.oci.transport import ImageSource

Base = tuple[ImageSource | None, Manifest | None, dict[str, Any]]  # the base image: source, manifest, config

ARCHES = {"amd64": "x86_64", "arm64": "aarch64", "386": "i686", "ppc64le": "ppc64le", "s390x": "s390x",
          "arm": "armv7l"}  # OCI config `architecture` -> the wheel tags' machine name
_TRIPLETS = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu", "i686": "i386-linux-gnu",
             "ppc64le": "powerpc64le-linux-gnu", "s390x": "s390x-linux-gnu", "armv7l": "arm-linux-gnueabihf"}
_MUSL_ARCH = {"x86_64": "x86_64", "aarch64": "aarch64", "i686": "i386", "ppc64le": "powerpc64le",
              "s390x": "s390x", "armv7l": "armhf"}
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_PYTHON_NAME = re.compile(r"python(\d)\.(\d+)(t?)")
_RECORDED = re.compile(r"python[0-9.]*t?|libc\.so\.6|libc-\d+\.\d+\.so|ld-musl-[a-z0-9_]+\.so\.1")
_STDLIB = re.compile(r"(?:.*/)?lib/python(\d)\.(\d+)(t?)")
_READ = re.compile(r"libc\.so\.6|ld-musl-[a-z0-9_]+\.so\.1")  # small files whose content says the version
_MAX_READ = 32 << 20
_GLIBC_BANNER = re.compile(rb"GNU C Library[^\n\x00]*? version (\d+)\.(\d+)")
_GLIBC_SYMBOL = re.compile(rb"GLIBC_2\.(\d+)")
_MUSL_VERSION = re.compile(rb"\x00(1\.\d+\.\d+)\x00")
_HOPS = 40  # symlinks followed per lookup, as Linux does


@dataclass(frozen=True)
class Platform:
    """What pip installs wheels for: CPython X.Y (ABI flags), a C library and its version, a machine."""

    python: tuple[int, int]
    abiflags: str  # "" or "t" (free-threaded)
    libc: Literal["glibc", "musl"]
    libc_version: tuple[int, int]
    arch: str  # x86_64, aarch64, ...
    interpreter: str | None  # the image's python3, when read from the image (else set by image.python)

    def __str__(self) -> str:
        return (f"CPython {self.python[0]}.{self.python[1]}{self.abiflags} on {self.libc} "
                f"{self.libc_version[0]}.{self.libc_version[1]} {self.arch}")


@dataclass(frozen=True)
class Found:
    """What the base's files say (None: not there)."""

    python: tuple[int, int, str] | None  # major, minor, abiflags
    interpreter: str | None
    libc: tuple[Literal["glibc", "musl"], int, int] | None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> Found:
        data = jsonsafe.loads(text)
        py, libc, interpreter = data["python"], data["libc"], data["interpreter"]
        if py is not None:
            py = (int(py[0]), int(py[1]), str(py[2]))
        if libc is not None:
            if libc[0] not in ("glibc", "musl"):
                raise ValueError("libc")
            libc = (libc[0], int(libc[1]), int(libc[2]))
        return Found(py, None if interpreter is None else str(interpreter), libc)


def arch_of(config: dict[str, Any], shown: str) -> str:
    """The wheel machine name of the config's `architecture` (and `variant` for arm)."""
    arch, variant = config.get("architecture"), config.get("variant")
    if arch == "arm" and variant not in (None, "v7"):
        arch = None
    if config.get("os", "linux") != "linux" or arch not in ARCHES:
        raise ConfigError([f"image.base: {shown} is {config.get('os')}/{arch} ({variant or 'no variant'}): "
                          f"pip can target linux on {', '.join(sorted(ARCHES))} only"])
    return ARCHES[str(arch)]


def target(settings_python: str | None, settings_libc: str | None,
           base: Base, shown: str) -> Platform:
    """The platform the dependency layer is for: the overrides, else what the base's files say."""
    endpoint, manifest, config = base
    python = parse_python(settings_python) if settings_python else None
    libc = parse_libc(settings_libc) if settings_libc else None
    arch = arch_of(config, shown)
    interpreter = None
    if python is None or libc is None:
        if endpoint is None or manifest is None:
            raise ConfigError(["image.lock: the base is empty (scratch): it has no Python to install for; name a "
                              "base with Python in image.base, or set image.python and image.libc"])
        found = detect_cached(endpoint, manifest, config, shown)
        if python is None:
            if found.python is None:
                raise ConfigError([f"image.lock: the base {shown} has no python3 on its PATH (and no single "
                                  f"python3.X): use a base with Python, or set image.python"])
            python, interpreter = found.python, found.interpreter
        if libc is None:
            if found.libc is None:
                raise ConfigError([f"image.lock: found no glibc or musl in the base {shown}: set image.libc "
                                  f"(e.g. 'glibc 2.36')"])
            libc = found.libc
            if not libc_tagged(*libc):
                raise ConfigError([f"image.lock: the base {shown} reports {libc[0]} {libc[1]}.{libc[2]}, which no "
                                  "wheel is tagged for: set image.libc (e.g. 'glibc 2.36')"])
    if python[0] != 3 or python[1] < 7:
        raise ConfigError([f"image.lock: the base's Python is {python[0]}.{python[1]}: pip installs for "
                          f"CPython 3.7 or newer only"])
    return Platform((python[0], python[1]), python[2], libc[0], (libc[1], libc[2]), arch, interpreter)


def _hint_path(digest: str) -> Path:
    return fsutil.cache_dir() / "base-platforms" / f"{digest.replace(':', '-')}.json"


def detect_cached(endpoint: ImageSource, manifest: Manifest, config: dict[str, Any], shown: str) -> Found:
    """`detect`, remembered by the base's manifest digest (it names every layer) in mlci's cache dir."""
    hint = _hint_path(manifest.digest)
    try:
        return Found.from_json(hint.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        pass
    found = detect(endpoint, manifest, config, shown)
    try:
        fsutil.atomic_write(hint, found.to_json())
    except MlciError as exc:
        logger.warning("mlci: warning: base platform not cached (%s)", exc)
    return found


class _Tree:
    """The few entries detection needs, merged over the layers with OCI whiteouts applied."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, str]] = {}  # path -> (kind: file|link|dir, link target)
        self.contents: dict[str, bytes] = {}

    def apply(self, layer: dict[str, tuple[str, str]], contents: dict[str, bytes], removed: set[str],
              opaque: set[str]) -> None:
        """Lay one layer over the tree: its whiteouts and opaque dirs hide lower entries; so does any
        non-directory entry (a directory replaced by a file or link)."""
        replaced = {p for p, (kind, _) in layer.items() if kind != "dir"}

        def gone(path: str) -> bool:
            if path in removed:
                return True
            parent = posixpath.dirname(path)
            while parent:
                if parent in removed or parent in opaque or parent in replaced:
                    return True
                parent = posixpath.dirname(parent)
            return False

        for path in [p for p in self.entries if gone(p)]:
            del self.entries[path]
            self.contents.pop(path, None)
        self.entries.update(layer)
        self.contents.update(contents)

    def lookup(self, path: str) -> tuple[str, list[str]] | None:
        """The entry a path leads to (symlinks followed) and every name on the way; None if absent."""
        parts, done, names, hops = [p for p in path.split("/") if p], "", [], 0
        while parts:
            part = parts.pop(0)
            if part == "..":
                done = posixpath.dirname(done)
                continue
            if part == ".":
                continue
            current = f"{done}/{part}" if done else part
            kind, link = self.entries.get(current, ("dir", ""))
            names.append(part)
            if kind == "link":
                hops += 1
                if hops > _HOPS:
                    return None
                parts = [p for p in link.split("/") if p] + parts
                done = "" if link.startswith("/") else done
                continue
            if not parts and current not in self.entries:
                return None
            done = current
        return (done, names) if done in self.entries else None


def _norm(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/") if name not in ("", ".", "./") else ""


@contextmanager
def _tar(handle: IO[bytes], media_type: str) -> Iterator[tarfile.TarFile]:
    if "zstd" in media_type:
        raise EnvironmentProblem(f"image.base: layer {media_type} is zstd, which mlci does not read: set "
                                 "image.python and image.libc")
    if media_type.endswith("gzip"):
        tar = tarfile.open(fileobj=gzip.GzipFile(fileobj=handle, mode="rb"), mode="r|")
    elif handle.seekable():  # a plain tar in a layout: file data is skipped, not read
        tar = tarfile.open(fileobj=handle, mode="r:")
    else:
        tar = tarfile.open(fileobj=handle, mode="r|")
    with tar:
        yield tar


def _read_layer(tar: tarfile.TarFile) -> tuple[dict[str, tuple[str, str]], dict[str, bytes], set[str], set[str]]:
    layer: dict[str, tuple[str, str]] = {}
    contents: dict[str, bytes] = {}
    removed: set[str] = set()
    opaque: set[str] = set()
    while (member := tar.next()) is not None:
        path = _norm(member.name)
        parent, base = posixpath.split(path)
        if base == ".wh..wh..opq":
            opaque.add(parent)
        elif base.startswith(".wh."):
            removed.add(posixpath.join(parent, base[4:]))
        elif member.issym():
            layer[path] = ("link", member.linkname)
        elif member.islnk() and _RECORDED.fullmatch(base):
            layer[path] = ("file", "")
            if _norm(member.linkname) in contents:
                contents[path] = contents[_norm(member.linkname)]
        elif member.isfile() and (_RECORDED.fullmatch(base) or _musl_libc(parent, base)):
            layer[path] = ("file", "")
            if (_READ.fullmatch(base) or _musl_libc(parent, base)) and member.size <= _MAX_READ:
                extracted = tar.extractfile(member)
                if extracted is not None:
                    contents[path] = extracted.read()
        elif member.isdir() and _STDLIB.fullmatch(path):
            layer[path] = ("dir", "")
        tar.members.clear()  # type: ignore[attr-defined]  # tarfile keeps every member it read: detection needs none of them again
    return layer, contents, removed, opaque


def _musl_libc(parent: str, base: str) -> bool:
    """musl's libc.so where a distribution's loader links to it (Debian: lib/x86_64-linux-musl/libc.so)."""
    return base == "libc.so" and "musl" in posixpath.basename(parent)


def _config_path(config: dict[str, Any]) -> list[str]:
    for item in (config.get("config") or {}).get("Env") or []:
        if isinstance(item, str) and item.startswith("PATH="):
            return item[5:].split(":")
    return DEFAULT_PATH.split(":")


def detect(endpoint: ImageSource, manifest: Manifest, config: dict[str, Any], shown: str) -> Found:
    """Read the base's layers, bottom up: tar headers, and the content of libc.so.6 / the musl loader only."""
    tree = _Tree()
    layers = jsonsafe.loads(manifest.data)["layers"]
    size = sum(int(layer.get("size", 0)) for layer in layers)
    logger.info("mlci: reading the base's %d layer(s) (%.1f MB) for its Python and C library (image.python and "
                "image.libc skip this)", len(layers), size / 1e6)
    for layer in layers:
        digest, media_type = str(layer["digest"]), str(layer.get("mediaType", ""))
        try:
            with endpoint.open_blob(digest) as handle, _tar(handle, media_type) as tar:
                tree.apply(*_read_layer(tar))
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise EnvironmentProblem(f"image.base: {shown}: cannot read layer {digest[:19]} "
                                     f"({type(exc).__name__}: {exc})") from None
    arch = ARCHES.get(str(config.get("architecture")), "x86_64")
    python, interpreter = _python(tree, _config_path(config))
    return Found(python, interpreter, _glibc(tree, arch) or _musl(tree, arch))


def _python(tree: _Tree, path: list[str]) -> tuple[tuple[int, int, str] | None, str | None]:
    for name in ("python3", "python"):
        for directory in path:
            if not directory.startswith("/"):
                continue
            found = tree.lookup(f"{directory}/{name}")
            if found is None or tree.entries[found[0]][0] != "file":
                continue
            for seen in reversed(found[1]):
                match = _PYTHON_NAME.fullmatch(seen)
                if match:
                    return (int(match[1]), int(match[2]), match[3]), posixpath.join(directory, name)
            prefix = posixpath.dirname(posixpath.dirname(found[0]))
            stdlib = {(int(m[1]), int(m[2]), m[3]) for p, (kind, _) in tree.entries.items()
                      if kind == "dir" and (m := _STDLIB.fullmatch(p)) and posixpath.dirname(posixpath.dirname(p))
                      == prefix}
            if len(stdlib) == 1:
                return stdlib.pop(), posixpath.join(directory, name)
    versions = {(int(m[1]), int(m[2]), m[3]): p for p, (kind, _) in sorted(tree.entries.items())
                if kind == "file" and (m := _PYTHON_NAME.fullmatch(posixpath.basename(p)))
                and posixpath.basename(posixpath.dirname(p)) == "bin"}
    if len(versions) == 1:
        version, where = versions.popitem()
        return version, "/" + where
    return None, None


def _glibc(tree: _Tree, arch: str) -> tuple[Literal["glibc", "musl"], int, int] | None:
    triplet = _TRIPLETS[arch]
    for candidate in (f"lib/{triplet}/libc.so.6", f"usr/lib/{triplet}/libc.so.6", "lib64/libc.so.6",
                      "usr/lib64/libc.so.6", "lib/libc.so.6", "usr/lib/libc.so.6"):
        found = tree.lookup(candidate)
        if found is None:
            continue
        named = re.fullmatch(r"libc-(\d+)\.(\d+)\.so", posixpath.basename(found[0]))
        if named:
            return "glibc", int(named[1]), int(named[2])
        content = tree.contents.get(found[0], b"")
        banner = _GLIBC_BANNER.search(content)
        if banner:
            return "glibc", int(banner[1]), int(banner[2])
        symbols = [int(m) for m in _GLIBC_SYMBOL.findall(content)]
        if symbols:
            return "glibc", 2, max(symbols)
    return None


def _musl(tree: _Tree, arch: str) -> tuple[Literal["glibc", "musl"], int, int] | None:
    for candidate in (f"lib/ld-musl-{_MUSL_ARCH[arch]}.so.1", f"usr/lib/ld-musl-{_MUSL_ARCH[arch]}.so.1"):
        found = tree.lookup(candidate)
        if found is None:
            continue
        versions = set(_MUSL_VERSION.findall(tree.contents.get(found[0], b"")))
        if len(versions) == 1:
            major, minor, _ = versions.pop().split(b".")
            return "musl", int(major), int(minor)
    return None
