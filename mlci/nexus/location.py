"""Where a raw hosted repository is: `https://HOST[:PORT][/CONTEXT]/repository/REPO[/PREFIX]` (Nexus may sit under
a context path such as /nexus; its REST API is then at /nexus/service/rest), and the paths mlci puts in it."""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from mlci.oci.settings import HOST

# Nexus repository names: letters, digits, '.', '_' and '-', not starting with '.' or '_'
REPOSITORY = re.compile(r"[A-Za-z0-9-][A-Za-z0-9._-]{0,199}")
_SEGMENT_BAD = re.compile(r"[\x00-\x1f\x7f\\]")
MAX_PATH = 1024


@dataclass(frozen=True)
class RawLocation:
    """A raw hosted repository (and a directory in it that every path is under)."""

    scheme: str
    host: str  # HOST[:PORT]: the `registries` key with its credentials and CA bundle
    context: str  # '' or '/nexus'
    repository: str
    prefix: str  # '' or 'a/b' (no leading or trailing '/')

    @property
    def base(self) -> str:
        """The Nexus base URL (the REST API is under it at /service/rest)."""
        return f"{self.scheme}://{self.host}{self.context}"

    def __str__(self) -> str:
        return f"{self.base}/repository/{self.repository}" + (f"/{self.prefix}" if self.prefix else "")

    def asset_path(self, path: str) -> str:
        """`path` (a/b/file, checked) inside the repository: the prefix joined in front."""
        check_path(path)
        return f"{self.prefix}/{path}" if self.prefix else path

    def url(self, asset_path: str) -> str:
        """The content URL of an asset path (each segment percent-encoded)."""
        return f"{self.base}/repository/{self.repository}/" + "/".join(quote(s, safe="") for s in asset_path.split("/"))


def parse_location(text: str) -> RawLocation:
    """`text` as a RawLocation; ValueError with the reason (never echoing userinfo)."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https"):
        raise ValueError("not an http(s) URL of a raw hosted repository (https://HOST/repository/REPO)")
    if "@" in parts.netloc:
        raise ValueError("credentials never go in the URL: name them in `registries` for the host")
    if parts.query or parts.fragment:
        raise ValueError("a repository URL has no query or fragment")
    if not HOST.fullmatch(parts.netloc):
        raise ValueError("not HOST[:PORT]")
    segments = parts.path.split("/")
    try:
        at = len(segments) - 1 - segments[::-1].index("repository")
    except ValueError:
        raise ValueError("expected .../repository/REPO (Nexus's content path)") from None
    repository = segments[at + 1] if at + 1 < len(segments) else ""
    if not REPOSITORY.fullmatch(repository):
        raise ValueError("expected .../repository/REPO with a Nexus repository name after /repository/")
    context = "/".join(segments[:at]).rstrip("/")
    prefix = "/".join(s for s in segments[at + 2:] if s)
    if prefix:
        check_path(prefix)
    return RawLocation(parts.scheme, parts.netloc.lower(), context, repository, prefix)


def check_path(path: str) -> None:
    """ValueError unless `path` is a relative path of plain segments (no '', '.', '..', control characters)."""
    if not path or len(path) > MAX_PATH:
        raise ValueError(f"a path in the repository is 1..{MAX_PATH} characters")
    for segment in path.split("/"):
        if segment in ("", ".", "..") or _SEGMENT_BAD.search(segment):
            raise ValueError(f"{path!r}: a path in the repository is plain segments joined by '/' (no empty, "
                             "'.' or '..' segment, no control character or backslash)")
