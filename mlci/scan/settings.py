"""The `scan` section of mlci.yaml: which scanners run, where trivy and its DB are, and the policy."""
from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field
from typing import Literal

from mlci.scan.findings import SEVERITIES

Scanner = Literal["vuln", "secret", "misconfig", "model"]
ID = re.compile(r"[\w.:/+-]{1,200}")


@dataclass(frozen=True)
class Exception_:
    """One accepted finding: suppressed until `expires` (a date, YYYY-MM-DD); expired, it fails again."""

    id: str
    reason: str
    expires: datetime.date | str
    package: str | None = None
    path: str | None = None
    where: str = ""

    @property
    def expiry(self) -> datetime.date:
        """`expires` as a date (valid once scan_problems found nothing; YAML reads an unquoted one as a date)."""
        return calendar_date(self.expires)


def calendar_date(value: datetime.date | str, *, timestamps: bool = False) -> datetime.date:
    """A YYYY-MM-DD date, as YAML read it or as text; ValueError for anything else. A timestamp (a datetime is
    a date to Python, but compared with today's date it stopped the scan) is refused, or with `timestamps`
    (trivy's expired_at is a time) taken as its UTC date: it expires at the start of that day, never later."""
    if isinstance(value, str) and timestamps and "T" in value.upper():
        value = datetime.datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    if isinstance(value, datetime.datetime):
        if not timestamps:
            raise ValueError(f"{value.isoformat()} is a timestamp")
        return (value.astimezone(datetime.UTC) if value.tzinfo else value).date()
    if isinstance(value, datetime.date):
        return value
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError(value)
    return datetime.date.fromisoformat(value)


def shown_date(value: object) -> str:
    """A date field's value as a problem line quotes it."""
    return repr(value.isoformat()) if isinstance(value, datetime.date) else repr(value)


@dataclass(frozen=True)
class ScanSettings:
    """`scan` in mlci.yaml: `mlci scan`'s scanners, trivy's binary and DB, and the gate's policy."""

    trivy: str | None = field(default=None, metadata={"doc": (
        "The trivy binary (a path or a name on PATH); default: MLCI_TRIVY, else `trivy` beside mlci's Python "
        "(`pip install mlci[scan]`), else on PATH.")})
    cache_dir: str | None = field(default=None, metadata={"doc": (
        "trivy's cache directory holding db/trivy.db and db/metadata.json (--cache-dir); default: trivy's own "
        "($TRIVY_CACHE_DIR, else $XDG_CACHE_HOME/trivy or ~/.cache/trivy).")})
    offline: bool = field(default=True, metadata={"doc": (
        "Never let trivy download anything (--skip-db-update --skip-java-db-update --offline-scan "
        "--skip-check-update): the DB comes from cache_dir (docs/scan.md: mirroring the DB for an air gap). "
        "false: trivy updates the DB from db_repository.")})
    db_repository: str | None = field(default=None, metadata={"doc": (
        "An internal mirror of the vulnerability DB (--db-repository), used when offline is false; there is "
        "no default: nothing is downloaded from the internet unless configured.")})
    java_db_repository: str | None = field(default=None, metadata={"doc": (
        "An internal mirror of the Java DB (--java-db-repository), used when offline is false.")})
    timeout_seconds: int = field(default=1800, metadata={"doc": (
        "Limit on each trivy call (a hung DB download or registry must not hang the job).")})
    scanners: tuple[Scanner, ...] = field(default=("vuln", "secret", "misconfig", "model"), metadata={"doc": (
        "Which scanners run: vuln, secret, misconfig (trivy) and model (unsafe deserialization in model "
        "files, detected by content).")})
    severities: tuple[str, ...] = field(default=("HIGH", "CRITICAL"), metadata={"doc": (
        "Severities that fail the gate (of UNKNOWN, LOW, MEDIUM, HIGH, CRITICAL).")})
    ignore_unfixed: bool = field(default=False, metadata={"doc": (
        "Vulnerabilities without a fixed version never fail the gate (they are still reported).")})
    exceptions: tuple[Exception_, ...] = field(default=(), metadata={"doc": (
        "Accepted findings: {id, package?, path?, reason, expires: YYYY-MM-DD}; an expired one stops "
        "suppressing and every report says so.")})
    trivyignore: str | None = field(default=".trivyignore.yaml", metadata={"doc": (
        "A trivy ignore file (YAML: id, paths, purls, expired_at, statement) honoured as exceptions when it "
        "exists (relative to mlci.yaml); empty: none.")})
    max_db_age_days: int | None = field(default=7, metadata={"doc": (
        "Oldest vulnerability DB accepted, by its UpdatedAt; empty: no limit.")})
    db_age: Literal["fail", "warn"] = field(default="fail", metadata={"doc": (
        "What an older DB does: fail (exit 1, reports written) or warn.")})
    sbom: bool = field(default=True, metadata={"doc": "Write a CycloneDX SBOM of each target."})
    attach: bool = field(default=True, metadata={"doc": (
        "Attach the scan record (and the SBOM) to a registry image as OCI referrers (docs/scan.md).")})
    model_max_mb: int = field(default=8192, metadata={"doc": (
        "Model files larger than this are listed as not scanned instead of read.")})


def scan_problems(settings: ScanSettings) -> list[str]:
    """Everything in `scan` that cannot work, as `KEY: message` (the caller adds where it was set)."""
    problems = []
    for severity in settings.severities:
        if severity not in SEVERITIES:
            problems.append(f"scan.severities: unknown severity {severity!r} (of {', '.join(SEVERITIES)})")
    for name in ("timeout_seconds", "max_db_age_days", "model_max_mb"):
        value = getattr(settings, name)
        if value is not None and value < 1:
            problems.append(f"scan.{name}: must be at least 1, got {value}")
    if not settings.offline and not settings.db_repository:
        problems.append("scan.db_repository: scan.offline is false, so trivy updates its DB, but from where? Name "
                        "the DB mirror (e.g. registry.bank/mirror/trivy-db:2), or set scan.offline: true")
    for item in settings.exceptions:
        at = f"{item.where}: scan.exceptions[{item.id!r}]" if item.where else f"scan.exceptions[{item.id!r}]"
        if not ID.fullmatch(item.id):
            problems.append(f"{at}.id: a vulnerability, rule or check id (letters, digits, . : / + - _)")
        if not item.reason.strip():
            problems.append(f"{at}.reason: say why the finding is accepted")
        try:
            item.expiry  # noqa: B018 - parsed for its error
        except ValueError:
            problems.append(f"{at}.expires: a date YYYY-MM-DD, got {shown_date(item.expires)}")
    return problems
