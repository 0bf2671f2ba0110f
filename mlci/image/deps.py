"""The dependency layer's pip run, for the image's platform rather than the host's: binary wheels only,
for the base's Python, C library and machine, and scripts in `bin/` that name the image's interpreter
(not the runner's venv), so the layer's bytes do not depend on where mlci runs."""
from __future__ import annotations

import base64
import hashlib
import os
import posixpath
import re
import sys
from pathlib import Path

from mlci.core import fsutil, proc
from mlci.core.errors import ConfigError, PipelineFailed
from mlci.core.log import logger
from mlci.image.python import Base, Platform
from mlci.image.settings import parse_libc, parse_python

_LEGACY = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
_SH_WRAPPER = re.compile(rb"#!/bin/sh\n'''exec' (\"[^\"\n]*\"|\S+) \"\$0\" \"\$@\"\n' '''\n")
_SHEBANG = re.compile(rb"#!([^\s]*/python[0-9.]*t?)(?=[ \t]|\n)")


def platform_tags(platform: Platform) -> list[str]:
    """Every wheel platform tag the base's C library accepts, newest first (as packaging orders them):
    manylinux_2_M down to 2_17 (2_5 on x86_64/i686) with the legacy aliases, or musllinux_1_M down to 1_0."""
    arch, (major, minor) = platform.arch, platform.libc_version
    if platform.libc == "musl":
        return [f"musllinux_{major}_{m}_{arch}" for m in range(minor, -1, -1)]
    oldest = 5 if arch in ("x86_64", "i686") else 17
    tags: list[str] = []
    for m in range(minor, oldest - 1, -1):
        tags.append(f"manylinux_{major}_{m}_{arch}")
        if m in _LEGACY and (m == 17 or arch in ("x86_64", "i686")):
            tags.append(f"{_LEGACY[m]}_{arch}")
    return tags


def pip_argv(platform: Platform, target: Path, lock: Path, pip_args: tuple[str, ...], python: str) -> list[str]:
    """pip install of the hash-pinned lock into `target`, for `platform`'s wheels only."""
    py = f"{platform.python[0]}.{platform.python[1]}"
    platforms = [arg for tag in platform_tags(platform) for arg in ("--platform", tag)]
    return [python, "-m", "pip", "install", "--quiet", "--no-deps", "--require-hashes", "--no-compile",
            "--disable-pip-version-check", "--target", str(target), "--python-version", py,
            "--implementation", "cp", "--abi", f"cp{py.replace('.', '')}{platform.abiflags}",
            "--only-binary=:all:", *platforms, "-r", str(lock), *pip_args]


def install(platform: Platform, root: Path, lock: str, pip_args: tuple[str, ...], target: Path,
            python: str = sys.executable) -> None:
    """Run pip (the host's, `python`) for the image's platform; exit 4 with pip's tail when it fails."""
    result = proc.run(pip_argv(platform, target, root / lock, pip_args, python), cwd=root, stream=True,
                      check=False)
    if result.returncode != 0:
        tags = platform_tags(platform)
        raise PipelineFailed(f"pip could not install image.lock {lock} for {platform} (wheels tagged "
                             f"{tags[0]} .. {tags[-1]}; exit {result.returncode}):\n{result.tail(20)}")
    fix_scripts(target, platform.interpreter or f"/usr/bin/env python{platform.python[0]}.{platform.python[1]}")


def fix_scripts(target: Path, interpreter: str) -> None:
    """Point the scripts pip wrote to `target/bin` at the image's interpreter (pip wrote the host's, or a
    /bin/sh wrapper when that path was long), and update their RECORD lines; a script still naming the
    host's Python after that is left out."""
    bin_dir = target / "bin"
    if not bin_dir.is_dir():
        return
    host = {os.fsencode(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    changed: dict[str, bytes | None] = {}
    for script in sorted(bin_dir.iterdir()):
        if script.is_symlink() or not script.is_file():
            continue
        data = script.read_bytes()
        wrapped = _SH_WRAPPER.match(data)
        if wrapped:
            data = b"#!" + os.fsencode(interpreter) + b"\n" + data[wrapped.end():]
        elif (shebang := _SHEBANG.match(data)) is not None:
            data = b"#!" + os.fsencode(interpreter) + data[shebang.end():]
        if any(prefix in data for prefix in host):
            logger.warning("mlci: dependency layer: left out %s (it names the host's Python)", script.name)
            script.unlink()
            changed[script.name] = None
        elif data != script.read_bytes():
            fsutil.atomic_write(script, data)
            changed[script.name] = data
    if changed:
        _rewrite_records(target, changed)


def _rewrite_records(target: Path, changed: dict[str, bytes | None]) -> None:
    """RECORD lines (path,sha256=...,size) of the changed scripts: new hash and size, or gone. With --target,
    pip records a script relative to its staging lib/python directory (`../../bin/NAME`)."""
    for record in sorted(target.glob("*.dist-info/RECORD")):
        lines = record.read_text(encoding="utf-8").splitlines(keepends=True)
        out = []
        for line in lines:
            name = line.rsplit(",", 2)[0] if line.count(",") >= 2 else ""
            parts = posixpath.normpath(posixpath.join("lib/python", name)).split("/")
            script = parts[1] if len(parts) == 2 and parts[0] == "bin" else None
            if script is None or script not in changed:
                out.append(line)
                continue
            data = changed[script]
            if data is not None:
                digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                out.append(f"{name},sha256={digest},{len(data)}\n")
        if out != lines:
            fsutil.atomic_write(record, "".join(out).encode("utf-8"))


def platform_key(python: str | None, libc: str | None, base: Base) -> list[object]:
    """What stands for the target platform in the dependency layer's input hash, known without reading the
    base's layers (a reused layer never needs detection): image.python and image.libc with the machine when
    both are set, else the base's manifest digest (it names every layer detection reads) and the override
    given, if any."""
    _, manifest, config = base
    for value, parse in ((python, parse_python), (libc, parse_libc)):
        if value:
            parse(value)  # a bad override is refused before anything is built
    if python and libc:
        return ["platform", python, libc, config.get("architecture"), config.get("variant")]
    if manifest is None:
        raise ConfigError(["image.lock: the base is empty (scratch): it has no Python to install for; name a "
                          "base with Python in image.base, or set image.python and image.libc"])
    return ["base", manifest.digest, python, libc]
