"""Member names as the archive layer judges them: normal (relative POSIX, no `..`, no empty or `.` component, no
backslash, control or invisible character, UTF-8, at most 4096 bytes), files only under the names a bundle may
hold, and a hostile name shown safely in a one-line message."""
from __future__ import annotations

import re

from mlci.bundle.manifest import ENVELOPE, MANIFEST

MAX_NAME = 4096
# The allow-list of mlci.bundle.manifest.check_member_name's docstring (its body is the format helper's): used
# here until that body lands on main, then replaced by a call to it.
_ALLOWED = re.compile(r"oci-layout|index\.json|blobs/sha256/[0-9a-f]{64}|dvc/files/md5/[0-9a-f]{2}/[0-9a-f]{30}"
                      r"(?:\.dir)?|artifacts/.+|trivy/db/[^/]+", re.DOTALL)


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
    if problem is None and not _ALLOWED.fullmatch(name):
        problem = ("not a name a bundle holds (oci-layout, index.json, blobs/sha256/<hex>, dvc/files/md5/..., "
                   "artifacts/..., trivy/db/...)")
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
