"""What every scanner produces and every report reads: findings, the DB a scan used, files not scanned."""
from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL"]
SEVERITIES: tuple[Severity, ...] = ("UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL")
Kind = Literal["vulnerability", "secret", "misconfiguration", "model"]


@dataclass(frozen=True)
class Finding:
    """One problem found in a target. Never holds a secret's value: `detail` is trivy's masked match or
    a description. `path` is the file inside the target (image or repository), `target` trivy's Target
    (an OS, a lock file, a layer path) or the model file scanned."""

    kind: Kind
    id: str
    severity: Severity
    title: str
    target: str
    package: str | None = None
    version: str | None = None
    fixed_version: str | None = None
    status: str | None = None
    path: str | None = None
    line: int | None = None
    detail: str = ""
    purl: str | None = None
    data_source: str | None = None
    references: tuple[str, ...] = ()
    # A finding that is information only (a model file's "suspicious" but known-benign global): never fails.
    informational: bool = False


@dataclass(frozen=True)
class DbInfo:
    """The vulnerability DB a scan used, from CACHE/db/metadata.json."""

    version: int
    updated_at: datetime.datetime
    next_update: datetime.datetime | None = None
    downloaded_at: datetime.datetime | None = None


@dataclass(frozen=True)
class Unscanned:
    """A file the model-file scanner could not look into, and why (listed in every report)."""

    path: str
    reason: str


@dataclass(frozen=True)
class ScanOutput:
    """What the scanners found in one target, before the policy judges it."""

    target: str
    digest: str | None = None  # the image manifest's digest (images only)
    os: str | None = None  # the image's OS as trivy names it, e.g. "debian 12.5"
    findings: tuple[Finding, ...] = ()
    unscanned: tuple[Unscanned, ...] = ()
    trivy_version: str | None = None
    db: DbInfo | None = None
    scanners: tuple[str, ...] = field(default=())
