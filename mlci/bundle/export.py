"""`mlci bundle export` as a library: the promotion policy of the target environment on the connected side (the
source's ref, the image built from this commit, a passing scan record), then the plan (every file, its size and
sha256: image blobs by their digests, DVC objects and artifacts hashed in one read), bundle.json and its signature,
and one streamed write into the sink: the image read once, from its source into the bundle.

CONTRACT (issue 12 helpers): signatures fixed; filled in by the export helper."""
from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlci.bundle.archive import Format
    from mlci.bundle.manifest import BundleManifest
    from mlci.settings import Config


@dataclass(frozen=True)
class ExportRequest:
    """What the release manager (or the tag pipeline's export job) asked for."""

    source: str  # the image, any transport (docker://HOST/REPO:TAG, oci:DIR:TAG)
    environment: str  # the target environment inside (promote.environments NAME)
    output: Path  # the bundle's path (a directory, FILE.tar, FILE.tar.zst; split: FILE.tar.000, ...)
    format: Format = "tar"
    part_size: int | None = None
    zstd_level: int = 3
    since: Path | None = None  # a previous bundle's bundle.json: carry only what it did not
    trivy_db: bool = False
    tag: str | None = None  # the tag to promote under inside (default: the release tag, else the source's)


@dataclass
class Exported:
    """What an export wrote."""

    manifest: BundleManifest
    paths: list[Path]
    files: int
    bytes: int  # bytes of the files carried
    omitted_blobs: int = 0  # left to the base (incremental)
    omitted_objects: int = 0
    summary: dict[str, Any] = field(default_factory=dict)  # for --json


def export(request: ExportRequest, config: Config, root: Path, config_dir: Path, environ: Mapping[str, str],
           now: datetime.datetime | None = None) -> Exported:
    """Check, plan, sign and write the bundle; nothing is left at `output` when anything fails."""
    raise NotImplementedError
