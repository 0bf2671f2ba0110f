"""What the policy made of a scan: each finding judged, the exceptions' state, the DB's age, the verdict."""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Literal

from mlci.scan.findings import Finding, ScanOutput, Severity

# fails: counts against the gate; below: under the failing severities; suppressed: an exception in force;
# unfixed: no fixed version and scan.ignore_unfixed; informational: never fails (a benign model global).
Outcome = Literal["fails", "below", "suppressed", "unfixed", "informational"]


@dataclass(frozen=True)
class ExceptionState:
    """One exception from mlci.yaml or the trivy ignore file, on the day of the scan."""

    id: str
    reason: str
    expires: datetime.date | None  # None: a trivyignore entry without expired_at
    days_left: int | None
    expired: bool
    matched: int  # findings it matches (suppressed when not expired)
    source: str  # "mlci.yaml:LINE" or ".trivyignore.yaml"
    package: str | None = None
    path: str | None = None


@dataclass(frozen=True)
class Judged:
    """A finding and what the policy made of it (`exception`: the one that matched it, if any)."""

    finding: Finding
    outcome: Outcome
    exception: ExceptionState | None = None


@dataclass(frozen=True)
class DbAge:
    """How old the vulnerability DB was (UpdatedAt to the scan's time) against scan.max_db_age_days."""

    updated_at: datetime.datetime
    age_days: float
    limit_days: int | None
    status: Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Verdict:
    """The gate's answer for one target: `reasons` says in one line each why it failed (empty: passed)."""

    output: ScanOutput
    judged: tuple[Judged, ...]
    exceptions: tuple[ExceptionState, ...]
    db_age: DbAge | None
    policy_hash: str
    scanned_at: datetime.datetime
    reasons: tuple[str, ...]
    warnings: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.reasons

    def counts(self, outcomes: tuple[Outcome, ...] = ("fails", "below", "unfixed")) -> dict[Severity, int]:
        """Findings by severity among those with one of `outcomes` (default: all not suppressed or informational)."""
        result: dict[Severity, int] = {}
        for item in self.judged:
            if item.outcome in outcomes:
                result[item.finding.severity] = result.get(item.finding.severity, 0) + 1
        return result
