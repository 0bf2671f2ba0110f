"""Where cosign keeps an image's signatures: the tag `sha256-<hex>.sig` in the image's repository (tag-based
discovery, sigstore's SIGNATURE_SPEC). A module of its own so that a copy which only looks for that tag
(promotion, bundles) imports none of the signing code."""
from __future__ import annotations

from mlci.core.errors import UsageError
from mlci.oci.manifest import is_digest

SUFFIX = ".sig"


def signature_tag(digest: str) -> str:
    """`sha256-<hex>.sig`: where the signatures of `digest` are found (a UsageError for what is no digest)."""
    if not is_digest(digest):
        raise UsageError(f"{str(digest)[:80]!r}: not an image digest (sha256:<64 hex>)")
    return digest.replace(":", "-") + SUFFIX
