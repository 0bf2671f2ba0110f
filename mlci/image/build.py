"""`mlci build` as a library: the content-addressed skip around any builder.

The build key hashes every input; the image is tagged `mlci-key-<key>` as well as with its own tag.
When the destination already has that key tag, the image is reused (re-tagged), not rebuilt.
Promotion never copies `mlci-key-*` tags."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mlci.core.errors import EnvironmentProblem, UsageError
from mlci.image import cache
from mlci.image.dockerfile import BUILDERS
from mlci.image.native import base_image, build_key, build_native, open_endpoint
from mlci.image.settings import ImageSettings
from mlci.oci.copy import Endpoint
from mlci.oci.reference import parse
from mlci.oci.registry import Manifest

KEY_PREFIX = "mlci-key-"


@dataclass
class BuildResult:
    """What `mlci build` made (or reused)."""

    reference: str
    digest: str
    key: str
    reused: bool
    uploaded: list[str] = field(default_factory=list)


def build(settings: ImageSettings, root: Path, tag: str, mtime: int, labels: dict[str, str]) -> BuildResult:
    """Reuse the image whose key tag exists, else build it with the configured builder and tag it."""
    if not settings.name:
        raise UsageError("image.name: set where the image goes (docker://HOST/REPO or oci:DIR)")
    ref = parse(settings.name)
    dest, _ = open_endpoint(ref, settings)
    base = base_image(settings) if settings.builder == "native" else (None, None, {})
    base_digest = base[1].digest if base[1] else None
    try:
        key = build_key(settings, root, base_digest, labels)
    finally:
        cache.save_file_hashes()
    key_tag = KEY_PREFIX + key[:40]
    reference = f"{settings.name}:{tag}"
    existing = _existing(dest, key_tag)
    if existing is not None:
        dest.put_manifest(existing, tag)
        return BuildResult(reference, existing.digest, key, reused=True)
    uploaded: list[str] = []
    if settings.builder == "native":
        try:
            manifest, uploaded = build_native(settings, root, dest, tag, mtime, labels, base)
        finally:
            cache.save_file_hashes()
    else:
        digest = BUILDERS[settings.builder](settings, root, ref, tag, labels, mtime)
        manifest = dest.get_manifest(digest)
    dest.put_manifest(manifest, key_tag)
    return BuildResult(reference, manifest.digest, key, reused=False, uploaded=uploaded)


def _existing(dest: Endpoint, key_tag: str) -> Manifest | None:
    try:
        return dest.get_manifest(key_tag)
    except EnvironmentProblem:  # RegistryError (404) or a layout without that tag
        return None
