"""Where cosign keeps an image's signatures: the tag `sha256-<hex>.sig` in the image's repository (tag-based
discovery, sigstore's SIGNATURE_SPEC). A module of its own so that a copy which only looks for that tag
(promotion, bundles) imports none of the signing code."""
from __future__ import annotations

from mlci.core.errors import UsageError
from mlci.oci.manifest import is_digest

SUFFIX = ".sig"


def image_digest(value: str) -> str:
    """`value` if it is a sha256 digest; a UsageError otherwise (the caller named no image digest)."""
    if not is_digest(value):
        raise UsageError(f"{str(value)[:80]!r}: not an image digest (sha256:<64 hex>)")
    return value


def signature_tag(digest: str) -> str:
    """`sha256-<hex>.sig`: where the signatures of `digest` are found (a UsageError for what is no digest)."""
    return image_digest(digest).replace(":", "-") + SUFFIX
