"""Writing files: atomically (temp file, fsync, rename) so a reader never sees half a file, with the
permissions a plain write would give (the umask), text redacted, and a bad path a one-line error."""
from __future__ import annotations

import errno
import fcntl
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from mlci.core import log
from mlci.core.errors import EnvironmentProblem, MlciError, UsageError

_SPECIAL_ROOTS = ("/dev/", "/proc/")  # /dev/stdout, /dev/null, /proc/self/fd/N: written in place
PRIVATE_DIRS = (".git", ".dvc")  # a checkout's own state, where credentials are kept (see private_state)
_fallback_umask: int | None = None


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write `data` to `path` atomically: a temp file beside it, fsync, then rename.

    Text is redacted (`log.redact`: no caller can leak a registered secret) and written as UTF-8;
    bytes are written as given (binary and content-addressed data such as image blobs). A new file
    gets 0666 minus the umask, a replaced regular file keeps its mode; a symlink is replaced, never
    followed (a repo's `mlci-report.md -> /etc/passwd` stays harmless). A device, FIFO or /dev/stdout
    is written in place. A path that cannot be written is an MlciError naming it (a directory: exit 2).
    """
    payload = log.redact(data).encode("utf-8") if isinstance(data, str) else data
    try:
        if is_special(path):
            _write_in_place(path, payload)
        else:
            _replace(path, payload)
    except OSError as exc:
        raise write_error(path, exc) from None


def atomic_write_json(path: Path, data: Any, *, indent: int | None = 2, sort_keys: bool = False) -> None:
    """Write `data` as JSON (secrets masked in its values, always valid JSON; see `log.dumps_json`)."""
    atomic_write(path, (log.dumps_json(data, indent=indent, sort_keys=sort_keys) + "\n").encode("utf-8"))


def append_text(path: Path, text: str) -> None:
    """Append redacted text to `path` (a log, GitHub's step summary), creating it per the umask. A symlink is
    never followed (a cache dir inside the checkout may hold a committed `mlci.log -> ~/.ssh/authorized_keys`);
    /dev/stderr and other paths under /dev and /proc are written as they are."""
    nofollow = 0 if is_special(path) else os.O_NOFOLLOW
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK | nofollow, 0o666)
        _write_fd(fd, log.redact(text).encode("utf-8"))
    except OSError as exc:
        raise write_error(path, exc) from None


def check_writable(path: Path, label: str | None = None) -> None:
    """Refuse before any work a path that can never be written: a directory, or below a file. `label`
    names where the path came from in the message (a flag such as `--out`)."""
    if is_special(path):
        return
    if os.path.isdir(path) and not os.path.islink(path):
        raise write_error(path, IsADirectoryError(errno.EISDIR, "is a directory"), label)
    check_not_linked_out(path, label)
    for parent in path.parents:
        if os.path.exists(parent):
            if not os.path.isdir(parent):
                raise write_error(path, NotADirectoryError(errno.ENOTDIR, "not a directory"), label)
            return


def check_not_linked_out(path: Path, label: str | None = None) -> None:
    """Refuse (exit 2) a file to write inside the working directory whose directory is a symlink out of it
    (a committed `out -> /etc`): nothing is written outside the checkout except where the user points.
    The file itself may be a symlink: it is replaced, never followed."""
    target = linked_out(Path.cwd(), path.parent)
    if target is not None:
        where = f"{label} {path}" if label else f"cannot write {path}"
        raise UsageError(f"{where}: {path.parent} is a symlink out of the working directory (to {target}); "
                         "mlci writes nothing there")


def write_error(path: Path, exc: OSError, label: str | None = None) -> MlciError:
    """A failed write as one line naming the path (and its flag): a path problem is a usage error, the rest
    environment."""
    reasons = {errno.EISDIR: "is a directory; give a file name", errno.ENOTDIR: "a parent is not a directory",
               errno.EEXIST: "a parent is not a directory", errno.EACCES: "permission denied",
               errno.EPERM: "permission denied", errno.EROFS: "read-only file system",
               errno.ENAMETOOLONG: "name too long", errno.ENXIO: "a FIFO with no reader",
               errno.ELOOP: "a symlink, which mlci does not write through"}
    where = f"{label} {path}" if label else f"cannot write {path}"
    if exc.errno in reasons:
        return UsageError(f"{where}: {reasons[exc.errno]}")
    return EnvironmentProblem(f"{where}: {exc.strerror or exc.__class__.__name__}")


def outside(root: Path, path: Path) -> Path | None:
    """Where `path` (relative to `root`, or absolute) leads once every symlink on the way is resolved, when
    that is outside `root` (a symlink loop counts as outside); None when it stays inside. mlci reads a file
    that the repository names only inside the repository: the content of a repo's `params.yaml ->
    ~/.docker/config.json` or `report.template: /etc/shadow` would end up in a report or an error."""
    try:
        base, target = root.resolve(), (root / path).resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python 3.11)
        return root / path
    return None if target.is_relative_to(base) else target


def files_within(root: Path, name: str, not_done: str) -> list[Path]:
    """The files at repository path `name` (the file, or every file below the directory), sorted; UsageError when
    it or one of them leads out of the repository through a symlink (`not_done`: what is then not done to it)."""
    path = root / name
    if outside(root, path) is not None:
        raise UsageError(f"{name}: a symlink out of the repository; not {not_done}")
    found = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    linked = [p for p in found if outside(root, p) is not None]
    if linked:
        raise UsageError(f"{linked[0].relative_to(root)}: a symlink out of the repository; not {not_done}")
    return [p for p in found if p.is_file()]


def private_state(root: Path, path: Path) -> bool:
    """Whether `path` (relative to `root`, or absolute) is inside git's or DVC's own state of the checkout
    `root` (`.git/config` with a remote's token, `.dvc/config.local` with a remote's password): not a file
    of the repository, and never shown in a report."""
    try:
        target = (root / path).resolve()
        return any(target.is_relative_to((root / name).resolve()) for name in PRIVATE_DIRS)
    except (OSError, RuntimeError):
        return False


def linked_out(root: Path, path: Path) -> Path | None:
    """Where `path` (as given: relative to the working directory, or absolute) leads when it lies inside
    `root` as written but leaves it through a symlink (a committed `mlci-data-test.md -> /etc/shadow`, an
    `out -> /etc` directory); None otherwise, also for a path that is named outside `root` to begin with
    (the user's own choice)."""
    written = Path(os.path.abspath(path))
    if not (written.is_relative_to(os.path.abspath(root)) or written.is_relative_to(root.resolve())):
        return None
    return outside(root, written)


def cache_dir() -> Path:
    """mlci's own cache directory (in CI, cache it between jobs): $MLCI_CACHE_DIR, else
    $XDG_CACHE_HOME/mlci, else ~/.cache/mlci."""
    if os.environ.get("MLCI_CACHE_DIR"):
        return Path(os.environ["MLCI_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlci"


def umask() -> int:
    """The process umask, read without changing it (/proc/self/status); elsewhere read once at first use."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    global _fallback_umask
    if _fallback_umask is None:  # os.umask can only be read by setting it: done once, not per write
        _fallback_umask = os.umask(0o022)
        os.umask(_fallback_umask)
    return _fallback_umask


def is_special(path: Path) -> bool:
    """A target that a rename must not replace: a device, FIFO or socket, or a path under /dev or /proc
    (/dev/stdout). Symlinks are never followed: a link is replaced, not the file it points to."""
    if os.path.abspath(path).startswith(_SPECIAL_ROOTS):
        return True
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode))


def _write_in_place(path: Path, payload: bytes) -> None:
    # O_NONBLOCK: a FIFO without a reader is an error (ENXIO), not a hang; O_APPEND: /dev/stdout redirected
    # to a file keeps what was already written there.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK | os.O_CLOEXEC)
    _write_fd(fd, payload)


def _write_fd(fd: int, payload: bytes) -> None:
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _replace(path: Path, payload: bytes) -> None:
    try:
        current = os.lstat(path)
    except FileNotFoundError:
        current = None
    if current is not None and stat.S_ISDIR(current.st_mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
    regular = current is not None and stat.S_ISREG(current.st_mode)
    mode = stat.S_IMODE(current.st_mode) if current is not None and regular else 0o666 & ~umask()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
