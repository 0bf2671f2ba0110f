"""Image references in skopeo's transport syntax, parsed once into immutable values.

    docker://HOST[:PORT]/REPO[:TAG][@DIGEST]   a registry, always named: no short names
    oci:DIR[:TAG]                               an OCI image layout directory (no server needed)
    oci-archive:FILE[:TAG]                      a tar of an OCI image layout

`str(ref)` round-trips; errors list the known transports.

Short names (`docker://python:3.11`, `docker://bank/model`) are refused rather than expanded to Docker
Hub: in an air gap a guessed docker.io is a hang, elsewhere it leaks the image name and may pull a
look-alike public image instead of the bank's own (podman's `short-name-mode=enforcing` for the same
reason). Nothing is rewritten either: Docker Hub is a registry like any other, named by its API host
and full repository (`docker://registry-1.docker.io/library/python:3.11`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from mlci.core.errors import UsageError
from mlci.oci.manifest import is_digest

TRANSPORTS = ("docker", "oci", "oci-archive")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")  # the distribution spec's tag grammar, ASCII only
# Tags that name something other than an image of the repository: cosign's `sha256-<hex>.sig` (and .att, .sbom), the
# OCI referrers tag schema's `sha256-<hex>`, mlci's build-cache tags (image/build.py KEY_PREFIX and REVISION_PREFIX,
# image/cache.py).
RESERVED_TAG = re.compile(r"sha256-|mlci-key-|mlci-cache-|mlci-rev-")
_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
                   r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")


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


def check_tag(tag: str, what: str) -> str:
    """`tag` if an image may be written under it, else UsageError naming `what` (e.g. `--tag`): a valid tag, and
    none of the names that mean something else in a repository (RESERVED_TAG)."""
    if not _TAG.match(tag):
        raise UsageError(f"{what}: {tag!r} is not a valid image tag (letters, digits, _ . -; at most 128; "
                         "not starting with . or -)")
    if RESERVED_TAG.match(tag):
        raise UsageError(f"{what}: {tag!r} is a reserved tag: sha256-* names an image's cosign signature or "
                         "attachments (or its referrers where the registry has no referrers API), mlci-key-*, "
                         "mlci-cache-* and mlci-rev-* mlci's build cache; writing an image there would replace them")
    return tag


def _docker(text: str, rest: str) -> DockerRef:
    if not rest.startswith("//"):
        raise UsageError(f"{text!r}: docker references start with docker://")
    host, slash, name = rest[2:].partition("/")
    if "@" in host and not is_digest(host.rpartition("@")[2]):  # USER:PASSWORD@HOST: never echoed, never sent
        raise UsageError(f"'docker://...@{host.rpartition('@')[2]}/{name}': a reference holds no credentials; name "
                         "their variables in registries.HOST (username_env, password_env) or an auth file")
    port = host.rpartition(":")[2] if not host.endswith("]") else ""
    if port.isdigit() and not 0 < int(port) < 65536:
        raise UsageError(f"{text!r}: port {port} of {host!r} is not 1-65535")
    named_host = "." in host or ":" in host or host == "localhost"
    if not slash or not name.partition("@")[0].partition(":")[0]:
        raise UsageError(f"{text!r}: names no repository in a registry; write docker://HOST[:PORT]/REPO[:TAG]")
    if not named_host:
        raise UsageError(f"{text!r}: names no registry host; write docker://HOST[:PORT]/REPO[:TAG] "
                         "(mlci never guesses Docker Hub)")
    if not _HOST.match(host):
        raise UsageError(f"{text!r}: invalid registry host {host!r}")
    digest = None
    if "@" in name:
        name, digest = name.split("@", 1)
        if not is_digest(digest):
            raise UsageError(f"{text!r}: invalid digest {digest!r} (expected sha256:<64 hex>)")
    tag = None
    if ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
        if not _TAG.match(tag):
            raise UsageError(f"{text!r}: invalid tag {tag!r}")
    if not _NAME.match(name):
        raise UsageError(f"{text!r}: invalid repository name {name!r} (lower-case, digits, . _ -)")
    return DockerRef(host, name, tag, digest)
