"""The gate: each finding judged against scan.severities, ignore_unfixed and the exceptions (mlci.yaml's and
the trivy ignore file's), the DB's age against max_db_age_days; one line per reason the gate fails."""
from __future__ import annotations

import dataclasses
import datetime
import fnmatch
import hashlib
import json
from collections.abc import Iterable

from mlci.scan.findings import SEVERITIES, Finding, ScanOutput
from mlci.scan.settings import ScanSettings
from mlci.scan.trivyignore import KIND_SECTIONS, IgnoreEntry, IgnoreFile
from mlci.scan.verdict import DbAge, ExceptionState, Judged, Outcome, Verdict

FUTURE_DB_DAYS = 1  # a DB built up to a day "ahead" is clock skew between its builder and this machine
SHOWN_IN_REASON = 5  # findings named in the one-line reason; the reports list them all
REFRESH = ("refresh the mirror: on a machine with internet `trivy image --download-db-only --cache-dir D`, "
           "carry D across, set scan.cache_dir (docs/scan.md)")


@dataclasses.dataclass(frozen=True)
class _Rule:
    """An exception of either origin, matched against findings."""

    state: ExceptionState
    kinds: tuple[str, ...]  # finding kinds it applies to (all for mlci.yaml's)
    paths: tuple[str, ...]
    purls: tuple[str, ...]

    def matches(self, finding: Finding) -> bool:
        if finding.kind not in self.kinds or finding.id.casefold() != self.state.id.casefold():
            return False
        if self.state.package is not None and finding.package != self.state.package:
            return False
        places = [p for p in (finding.path, finding.target) if p]
        if self.paths and not any(_glob(place, pattern) for place in places for pattern in self.paths):
            return False
        return not self.purls or (finding.purl is not None and any(_purl(finding.purl, p) for p in self.purls))


def judge(output: ScanOutput, settings: ScanSettings, ignore: IgnoreFile | None, *, now: datetime.datetime,
          config_shown: str = "mlci.yaml", ignore_shown: str = ".trivyignore.yaml") -> Verdict:
    """The verdict on one target's findings at time `now` (timezone-aware)."""
    today = now.date()
    rules = [*_config_rules(settings, today, config_shown), *_ignore_rules(ignore, today, ignore_shown)]
    hits = [next((i for i, rule in enumerate(rules) if rule.matches(f)), None) for f in output.findings]
    states = tuple(dataclasses.replace(rule.state, matched=hits.count(i)) for i, rule in enumerate(rules))
    judged = [Judged(f, _outcome(f, settings, None if i is None else rules[i]), None if i is None else states[i])
              for f, i in zip(output.findings, hits, strict=True)]
    db_age = _db_age(output, settings, now)
    reasons, warnings = _reasons(judged, states, db_age, settings)
    return Verdict(output=output, judged=tuple(judged), exceptions=states, db_age=db_age,
                   policy_hash=policy_hash(settings, ignore), scanned_at=now, reasons=tuple(reasons),
                   warnings=tuple(warnings))


def policy_hash(settings: ScanSettings, ignore: IgnoreFile | None) -> str:
    """sha256 over what decides a verdict (severities, unfixed, scanners, exceptions, the ignore file, DB age
    rule): a scan record made under another policy is not this policy's."""
    policy = {
        "severities": sorted(settings.severities), "ignore_unfixed": settings.ignore_unfixed,
        "scanners": sorted(settings.scanners), "max_db_age_days": settings.max_db_age_days,
        "db_age": settings.db_age, "model_max_mb": settings.model_max_mb,
        "exceptions": [_plain(e, "where") for e in settings.exceptions],
        "ignore": _plain(ignore, "where") if ignore is not None else None,
    }
    text = json.dumps(policy, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _plain(value: object, drop: str) -> object:
    """A dataclass as plain data without the field `drop` (where it was written does not change the policy)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name), drop) for f in dataclasses.fields(value) if f.name != drop}
    if isinstance(value, tuple):
        return [_plain(v, drop) for v in value]
    return value


def _outcome(finding: Finding, settings: ScanSettings, rule: _Rule | None) -> Outcome:
    if finding.informational:
        return "informational"
    if rule is not None and not rule.state.expired:
        return "suppressed"
    if finding.severity not in settings.severities:
        return "below"
    if settings.ignore_unfixed and finding.kind == "vulnerability" and not finding.fixed_version:
        return "unfixed"
    return "fails"


def _config_rules(settings: ScanSettings, today: datetime.date, shown: str) -> Iterable[_Rule]:
    for item in settings.exceptions:
        days = (item.expiry - today).days
        state = ExceptionState(id=item.id, reason=item.reason, expires=item.expiry, days_left=days,
                               expired=days < 0, matched=0, source=item.where or shown,
                               package=item.package, path=item.path)
        yield _Rule(state, ("vulnerability", "secret", "misconfiguration", "model"),
                    (item.path,) if item.path else (), ())


def _ignore_rules(ignore: IgnoreFile | None, today: datetime.date, shown: str) -> Iterable[_Rule]:
    if ignore is None:
        return
    for kind, section in KIND_SECTIONS.items():
        entry: IgnoreEntry
        for entry in getattr(ignore, section):
            expiry = entry.expiry
            days = (expiry - today).days if expiry is not None else None
            # trivy: an entry is ignored from its expired_at date on
            state = ExceptionState(id=entry.id, reason=entry.statement, expires=expiry, days_left=days,
                                   expired=days is not None and days <= 0, matched=0, source=entry.where or shown,
                                   path=", ".join(entry.paths) or None)
            yield _Rule(state, (kind,), entry.paths, entry.purls)


def _db_age(output: ScanOutput, settings: ScanSettings, now: datetime.datetime) -> DbAge | None:
    if output.db is None:
        return None
    age = (now - output.db.updated_at).total_seconds() / 86400
    limit = settings.max_db_age_days
    status = "ok" if limit is None or age <= limit else settings.db_age
    return DbAge(updated_at=output.db.updated_at, age_days=age, limit_days=limit, status=status)


def _reasons(judged: list[Judged], states: tuple[ExceptionState, ...], db_age: DbAge | None,
             settings: ScanSettings) -> tuple[list[str], list[str]]:
    reasons: list[str] = []
    warnings: list[str] = []
    failing = sorted((j.finding for j in judged if j.outcome == "fails"),
                     key=lambda f: (-SEVERITIES.index(f.severity), f.id))
    if failing:
        named = ", ".join(_name(f) for f in failing[:SHOWN_IN_REASON])
        more = f" and {len(failing) - SHOWN_IN_REASON} more" if len(failing) > SHOWN_IN_REASON else ""
        reasons.append(f"{len(failing)} finding{'s' if len(failing) != 1 else ''} at "
                       f"{'/'.join(settings.severities)}: {named}{more}")
    for state in states:
        if state.expired and state.expires is not None:
            warnings.append(f"exception {state.id} ({state.source}) expired on {state.expires.isoformat()}: "
                            f"it no longer suppresses ({state.matched} finding{'s' if state.matched != 1 else ''})")
    if db_age is not None and db_age.age_days < -FUTURE_DB_DAYS:
        warnings.append(f"the vulnerability DB's UpdatedAt {db_age.updated_at.isoformat()} is "
                        f"{-db_age.age_days:.1f} days in the future: check this machine's clock (the age gate "
                        "cannot judge a DB from the future)")
    if db_age is not None and db_age.status != "ok":
        line = (f"the vulnerability DB is {db_age.age_days:.1f} days old (UpdatedAt "
                f"{db_age.updated_at.isoformat()}), over scan.max_db_age_days {db_age.limit_days}: {REFRESH}")
        (reasons if db_age.status == "fail" else warnings).append(line)
    return reasons, warnings


def _name(finding: Finding) -> str:
    where = f"{finding.package} {finding.version}" if finding.package else (finding.path or finding.target)
    return f"{finding.id} ({finding.severity}, {where})"


def _glob(place: str, pattern: str) -> bool:
    """trivy's path globs (`**` any depth), matched on the path with or without a leading slash."""
    place = place.lstrip("/")
    pattern = pattern.lstrip("/")
    return fnmatch.fnmatchcase(place, pattern) or fnmatch.fnmatchcase(place, pattern.replace("**/", ""))


def _purl(purl: str, pattern: str) -> bool:
    """A package URL matched without its qualifiers unless the pattern has them (trivy's rule)."""
    return purl == pattern or ("?" not in pattern and purl.split("?", 1)[0] == pattern)
