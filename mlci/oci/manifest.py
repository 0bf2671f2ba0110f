"""OCI and Docker v2 manifests as data: media types, descriptors (digest, size, media type, annotations,
platform, artifactType), `subject`, and what a manifest or an index points at (its children and blobs).
No transport here: layouts, archives and the registry client all read manifests through this module."""
from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlci.core import jsonsafe
from mlci.core.errors import EnvironmentProblem

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
REF_NAME = "org.opencontainers.image.ref.name"
MAX_MANIFEST = 4 << 20  # what containerd and distribution 3 accept; a larger one is refused, not read

_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")


class ManifestError(EnvironmentProblem):
    """A manifest or descriptor that is not what the image-spec says (names the manifest and the field)."""


class NotFound(EnvironmentProblem):
    """The manifest (tag or digest) is not there: the one answer that means "not built yet"."""


def sha256_digest(data: bytes) -> str:
    """The OCI digest of bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_digest(value: object) -> bool:
    """Whether `value` is a sha256 digest in canonical form (the only algorithm mlci writes or trusts)."""
    return isinstance(value, str) and _DIGEST.fullmatch(value) is not None


def check_digest(value: object, what: str) -> str:
    """`value` if it is a canonical sha256 digest, else a ManifestError naming `what` (no path can hide in it)."""
    if not is_digest(value):
        raise ManifestError(f"{what}: not a sha256 digest ({str(value)[:80]!r})")
    return str(value)


def is_index(media_type: str) -> bool:
    """Whether a media type is an OCI index or a Docker manifest list."""
    return media_type in INDEX_TYPES


@dataclass(frozen=True)
class Platform:
    """The platform of an index entry (`os`, `architecture`, optional `variant`, `os.version`)."""

    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None

    def __str__(self) -> str:
        return "/".join(x for x in (self.os, self.architecture, self.variant) if x)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            data["variant"] = self.variant
        if self.os_version:
            data["os.version"] = self.os_version
        return data


@dataclass(frozen=True)
class Descriptor:
    """What a manifest says about one thing it points at."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Platform | None = None
    artifact_type: str | None = None

    @classmethod
    def from_json(cls, data: object, what: str) -> Descriptor:
        """A descriptor from its JSON; ManifestError naming `what` when a field is missing or wrong."""
        if not isinstance(data, dict):
            raise ManifestError(f"{what}: not a descriptor (expected an object)")
        digest = check_digest(data.get("digest"), f"{what}.digest")
        size = data.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ManifestError(f"{what}.size: not a size ({size!r})")
        media_type = data.get("mediaType")
        if not isinstance(media_type, str) or not media_type:
            raise ManifestError(f"{what}.mediaType: missing")
        raw_annotations = data.get("annotations") or {}
        if not isinstance(raw_annotations, dict) or not all(isinstance(v, str) for v in raw_annotations.values()):
            raise ManifestError(f"{what}.annotations: not a string map")
        platform = None
        if isinstance(data.get("platform"), dict):
            p = data["platform"]
            platform = Platform(str(p.get("os", "")), str(p.get("architecture", "")),
                                p.get("variant") if isinstance(p.get("variant"), str) else None,
                                p.get("os.version") if isinstance(p.get("os.version"), str) else None)
        artifact = data.get("artifactType")
        return cls(media_type, digest, size, dict(raw_annotations), platform,
                   artifact if isinstance(artifact, str) else None)

    def to_json(self) -> dict[str, Any]:
        """The descriptor as image-spec JSON (keys in the spec's order)."""
        data: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            data["annotations"] = dict(self.annotations)
        if self.platform:
            data["platform"] = self.platform.to_json()
        if self.artifact_type:
            data["artifactType"] = self.artifact_type
        return data

    @property
    def ref_name(self) -> str | None:
        """The tag an index.json entry carries (`org.opencontainers.image.ref.name`)."""
        return self.annotations.get(REF_NAME)


@dataclass(frozen=True)
class Manifest:
    """A manifest's exact bytes, media type and digest."""

    data: bytes
    media_type: str
    digest: str

    @classmethod
    def of(cls, data: bytes, media_type: str) -> Manifest:
        """A manifest from its bytes (the digest computed)."""
        return cls(data, media_type, sha256_digest(data))

    def body(self) -> dict[str, Any]:
        """The parsed JSON object (ManifestError when it is not one)."""
        try:
            body = jsonsafe.loads(self.data)
        except (ValueError, UnicodeDecodeError):
            raise ManifestError(f"manifest {self.digest}: not valid JSON") from None
        if not isinstance(body, dict):
            raise ManifestError(f"manifest {self.digest}: not a JSON object")
        return body

    @property
    def is_index(self) -> bool:
        return is_index(self.media_type)

    def children(self) -> list[Descriptor]:
        """An index's manifests (empty for an image manifest)."""
        if not self.is_index:
            return []
        entries = self.body().get("manifests")
        if not isinstance(entries, list):
            raise ManifestError(f"manifest {self.digest}: `manifests` is not a list")
        return [Descriptor.from_json(e, f"manifest {self.digest}: manifests[{i}]") for i, e in enumerate(entries)]

    def blobs(self) -> list[Descriptor]:
        """An image manifest's config, then its layers, in order (empty for an index)."""
        if self.is_index:
            return []
        body = self.body()
        layers = body.get("layers", [])
        if not isinstance(layers, list):
            raise ManifestError(f"manifest {self.digest}: `layers` is not a list")
        return [Descriptor.from_json(body.get("config"), f"manifest {self.digest}: config"),
                *(Descriptor.from_json(e, f"manifest {self.digest}: layers[{i}]") for i, e in enumerate(layers))]

    def subject(self) -> Descriptor | None:
        """The manifest this one refers to (a referrer: signature, SBOM), if any."""
        body = self.body()
        if body.get("subject") is None:
            return None
        return Descriptor.from_json(body["subject"], f"manifest {self.digest}: subject")

    def descriptor(self, annotations: Mapping[str, str] | None = None) -> Descriptor:
        """A descriptor of this manifest (for an index entry)."""
        return Descriptor(self.media_type, self.digest, len(self.data), dict(annotations or {}))


def media_type_of(data: bytes, fallback: str = OCI_MANIFEST) -> str:
    """The `mediaType` a manifest declares in its JSON, else `fallback`."""
    try:
        declared = jsonsafe.loads(data).get("mediaType")
    except (ValueError, UnicodeDecodeError, AttributeError):
        return fallback
    return declared if isinstance(declared, str) and declared else fallback
