"""`mlci bundle import` as a library: the whole bundle verified first (signature, bundle.json, every member), then
the target environment's promotion policy (the source's ref, the scan record it carries under today's scan
policy, the image's signature, immutable tags, approvals), the incremental base checked at the destinations, and
only then the writes: blobs, manifests, referrers and signatures, the DVC objects, the Nexus raw artifacts, the
tags last, the GitOps record. Nothing is written to any destination before all of it has passed.

CONTRACT (issue 12 helpers): signatures fixed; filled in by the import helper."""
from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlci.settings import Config
    from mlci.sign.keys import PublicKey


@dataclass(frozen=True)
class ImportRequest:
    """What the release manager inside asked for."""

    bundle: Path
    public_key: PublicKey
    destination: str | None = None  # --to docker://HOST/REPO (default: the environment's image)
    environment: str | None = None  # default: the bundle's provenance.environment
    dvc_remote: str | None = None  # --dvc-remote NAME (default: the environment's dvc_remote)
    nexus_raw: str | None = None  # --nexus-raw URL (default: the environment's nexus_raw)
    force: bool = False


@dataclass
class Imported:
    """What an import did."""

    digest: str
    destination: str
    environment: str
    tags: list[str]
    copied: list[str] = field(default_factory=list)  # blob digests sent
    reused: list[str] = field(default_factory=list)  # already at the destination (a re-run)
    summary: dict[str, Any] = field(default_factory=dict)  # for --json


def import_bundle(request: ImportRequest, config: Config, root: Path, config_dir: Path, environ: Mapping[str, str],
                  now: datetime.datetime | None = None) -> Imported:
    """Verify everything, check the policy and the base, then write; BundleInvalid / GateFailed before any write."""
    raise NotImplementedError
