"""Reading a file that may be hostile (a config, an OCI layout's index.json, manifests and blobs): a regular
file only, opened without blocking (a FIFO is refused, never waited on; a device is never read), and a small
one read whole only up to a limit (a larger one is refused, not read into memory)."""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from mlci.core.errors import EnvironmentProblem


class Unreadable(EnvironmentProblem):
    """The file is absent, not a regular file, too large or unreadable; the message names it and why."""


def open_regular(path: Path, shown: str) -> BinaryIO:
    """`path` opened for reading, when it is a regular file (after symlinks); Unreadable, naming `shown`, else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        if os.path.islink(path):
            raise Unreadable(f"{shown}: a dangling symlink (to {os.readlink(path)})") from None
        raise Unreadable(f"{shown}: not found") from None
    except OSError as exc:
        raise Unreadable(f"{shown}: cannot read: {exc.strerror or exc.__class__.__name__}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        what = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a special file"
        raise Unreadable(f"{shown}: is {what}, not a regular file")
    return os.fdopen(fd, "rb")


def read_bounded(path: Path, limit: int, shown: str) -> bytes:
    """The whole content of the regular file `path` (shown as `shown`), at most `limit` bytes."""
    with open_regular(path, shown) as handle:
        try:
            data = handle.read(limit + 1)
        except OSError as exc:
            raise Unreadable(f"{shown}: cannot read: {exc.strerror or exc.__class__.__name__}") from None
    if len(data) > limit:
        raise Unreadable(f"{shown}: larger than {_size(limit)}; not read")
    return data


def _size(limit: int) -> str:
    return f"{limit >> 20} MB" if limit >= 1 << 20 else f"{limit} bytes"
