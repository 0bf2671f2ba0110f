"""Image references in skopeo's transport syntax, parsed once into immutable values.

    docker://HOST[:PORT]/REPO[:TAG][@DIGEST]   a registry (Docker Hub names are expanded)
    oci:DIR[:TAG]                               an OCI image layout directory (no server needed)
    oci-archive:FILE[:TAG]                      a tar of an OCI image layout

`str(ref)` round-trips; errors list the known transports.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from mlci.core.errors import UsageError

TRANSPORTS = ("docker", "oci", "oci-archive")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
DOCKER_HUB = "docker.io"


@dataclass(frozen=True)
class DockerRef:
    """An image in a registry; `tag` and/or `digest` may be None."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What the registry API calls the reference: the digest if known, else the tag ("latest")."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        return (f"docker://{self.registry}/{self.repository}" + (f":{self.tag}" if self.tag else "")
                + (f"@{self.digest}" if self.digest else ""))


@dataclass(frozen=True)
class LayoutRef:
    """An OCI image layout directory (`oci:`) or an archive of one (`oci-archive:`)."""

    transport: str
    path: str
    tag: str | None = None

    def __str__(self) -> str:
        return f"{self.transport}:{self.path}" + (f":{self.tag}" if self.tag else "")


ImageRef = DockerRef | LayoutRef


def parse(text: str) -> ImageRef:
    """Parse `transport:rest`; UsageError (exit 2) naming the problem otherwise."""
    transport, sep, rest = text.partition(":")
    if not sep or transport not in TRANSPORTS:
        raise UsageError(f"{text!r}: unknown image transport; use one of {', '.join(t + ':' for t in TRANSPORTS)}")
    if transport == "docker":
        return _docker(text, rest)
    path, tag = rest, None
    head, colon, tail = rest.rpartition(":")
    if colon and head and "/" not in tail:
        path, tag = head, tail
    if not path:
        raise UsageError(f"{text!r}: {transport}: needs a path")
    if tag is not None and not _TAG.match(tag):
        raise UsageError(f"{text!r}: invalid tag {tag!r}")
    return LayoutRef(transport, path, tag)


def _docker(text: str, rest: str) -> DockerRef:
    if not rest.startswith("//"):
        raise UsageError(f"{text!r}: docker references start with docker://")
    name, digest = rest[2:], None
    if "@" in name:
        name, digest = name.split("@", 1)
        if not _DIGEST.match(digest):
            raise UsageError(f"{text!r}: invalid digest {digest!r} (expected sha256:<64 hex>)")
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
        if not _TAG.match(tag):
            raise UsageError(f"{text!r}: invalid tag {tag!r}")
    first, slash, remainder = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, remainder
    else:
        registry, repository = DOCKER_HUB, name if slash else f"library/{name}"
    if not _NAME.match(repository):
        raise UsageError(f"{text!r}: invalid repository name {repository!r} (lower-case, digits, . _ -)")
    return DockerRef(registry, repository, tag, digest)
