"""Member names as the archive layer judges them: normal (relative POSIX, no `..`, no empty or `.` component, no
backslash, control or invisible character, UTF-8, at most 4096 bytes), files only under the names a bundle may
hold, and a hostile name shown safely in a one-line message."""
from __future__ import annotations

from mlci.bundle.manifest import ENVELOPE, MANIFEST, MAX_NAME, check_member_name


def normal_problem(name: str) -> str | None:
    """Why `name` is not a normal relative POSIX name (None: it is)."""
    if not name:
        return "an empty name"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "a name that is not UTF-8"
    if size > MAX_NAME:
        return f"a name longer than {MAX_NAME} bytes"
    if name.startswith("/"):
        return "an absolute name"
    parts = name.split("/")
    if ".." in parts:
        return "a name with a '..' component"
    if "\\" in name:
        return "a name with a backslash"
    if not name.isprintable():
        return "a name with a control or invisible character"
    if "" in parts or "." in parts:
        return "not a normal name (an empty or '.' component)"
    return None


def file_problem(name: str) -> str | None:
    """Why a bundle may not hold a file called `name` (None: it may); bundle.json and its signature are the
    head, judged apart."""
    problem = normal_problem(name)
    if problem is None:
        try:
            check_member_name(name)
        except ValueError as exc:
            problem = str(exc)
    return problem


def is_head(name: str) -> bool:
    """bundle.json or bundle.dsse.json."""
    return name in (MANIFEST, ENVELOPE)


def show(name: str) -> str:
    """`name` fit for a one-line message: as it is if printable and short, else quoted with escapes, cut."""
    if len(name) <= 200 and name.isprintable():
        return name
    cut = name[:200]
    return ascii(cut) + ("..." if len(name) > 200 else "")
