"""GitLab's container-scanning report (schema 15.2.4, `artifacts:reports:container_scanning`), written by mlci
from the judged findings, never through trivy's contrib/gitlab.tpl (which drifted from GitLab's schema
several times).

What goes in, and why:
- Vulnerabilities only. The schema is for dependency vulnerabilities: every entry must name a package and its
  version inside an image. Secrets and misconfigurations belong to GitLab's secret-detection and SAST report
  types, which locate a finding in a file; a model file is not a package either. Squeezed into this report
  they would be mis-tracked (GitLab fingerprints a container-scanning finding by image and package name).
  They stay in the SARIF log, the JSON summary and the MR section; this report's `scan.messages` says how
  many were left out.
- Suppressed findings are left out, as GitLab's own container scanning does with its vulnerability allowlist
  (vulnerability-allowlist.yml); `scan.messages` counts them. A finding whose exception expired is reported.
- Findings the gate does not fail on (below the failing severities, unfixed) are reported: they are still
  vulnerabilities. Informational ones have GitLab's severity `Info`.
"""
from __future__ import annotations

import datetime
import re
from typing import Any

from mlci import __version__
from mlci.scan.findings import Finding, Severity
from mlci.scan.reports.common import clean, cut, stable_ids, utc, worst_first
from mlci.scan.verdict import Judged, Verdict

VERSION = "15.2.4"
SCHEMA_URI = ("https://gitlab.com/gitlab-org/security-products/security-report-schemas/-/raw/v15.2.4/dist/"
              "container-scanning-report-format.json")
SEVERITIES: dict[Severity, str] = {"UNKNOWN": "Unknown", "LOW": "Low", "MEDIUM": "Medium", "HIGH": "High",
                                   "CRITICAL": "Critical"}
# The schema's limits (characters): name 255, solution 7000, description 1 MiB.
NAME, SOLUTION, DESCRIPTION = 255, 7000, 1_048_576
_LINK = re.compile(r"(https?|ftp)://\S+")
# Identifier types and where each is documented; any other id is typed by its prefix (PYSEC, GO, RUSTSEC, ...).
_KNOWN = (
    (re.compile(r"^CVE-\d{4}-\d{4,}$"), "cve", "https://www.cve.org/CVERecord?id={}"),
    (re.compile(r"^GHSA(-[23456789cfghjmpqrvwx]{4}){3}$"), "ghsa", "https://github.com/advisories/{}"),
    (re.compile(r"^(DSA|DLA)-\d+(-\d+)?$"), "debian", "https://security-tracker.debian.org/tracker/{}"),
)
_PREFIX = re.compile(r"^([A-Za-z]{2,20})-")


def container_scanning(verdict: Verdict, *, started: datetime.datetime, finished: datetime.datetime,
                       image: str) -> dict[str, Any]:
    """The report for `image` (the name GitLab shows; the scan's target when empty), scanned from `started`
    to `finished`. `scan.status` is `success` whenever the scan ran: a failed gate is in the findings."""
    image = clean(image) or clean(verdict.output.target) or "unknown"
    shown = [j for j in worst_first(verdict.judged)
             if j.finding.kind == "vulnerability" and j.outcome != "suppressed"]
    ids = stable_ids(j.finding for j in shown)
    vulnerabilities = [_vulnerability(j, verdict, image, i) for j, i in zip(shown, ids, strict=True)]
    out = verdict.output
    scan: dict[str, Any] = {
        "analyzer": {"id": "mlci", "name": "mlci", "version": __version__, "vendor": {"name": "mlci"}},
        "scanner": {"id": "trivy", "name": "Trivy", "version": clean(out.trivy_version or "") or "unknown",
                    "vendor": {"name": "Aqua Security"}, "url": "https://github.com/aquasecurity/trivy"},
        "type": "container_scanning",
        "start_time": _time(started),
        "end_time": _time(finished),
        "status": "success",
    }
    messages = _messages(verdict)
    if messages:
        scan["messages"] = messages
    return {"version": VERSION, "schema": SCHEMA_URI, "scan": scan, "vulnerabilities": vulnerabilities}


def _time(moment: datetime.datetime) -> str:
    """The schema's `yyyy-mm-ddThh:mm:ss`, in UTC."""
    return utc(moment).replace(microsecond=0, tzinfo=None).isoformat()  # four-digit years, unlike strftime


def _vulnerability(item: Judged, verdict: Verdict, image: str, uid: str) -> dict[str, Any]:
    f = item.finding
    name = clean(f.title) or clean(f.id) or "vulnerability"
    entry: dict[str, Any] = {
        "id": uid,
        "name": cut(name, NAME),
        "description": cut(clean(f.detail) or name, DESCRIPTION),
        "severity": "Info" if item.outcome == "informational" else SEVERITIES[f.severity],
        "identifiers": [_identifier(f)],
        "location": {
            "dependency": {"package": {"name": clean(f.package or "") or clean(f.target)},
                           "version": clean(f.version or "")},
            "operating_system": clean(verdict.output.os or "") or "Unknown",
            "image": image,
        },
    }
    if f.fixed_version:
        entry["solution"] = cut(f"Upgrade {clean(f.package or f.target)} to {clean(f.fixed_version)}", SOLUTION)
    links = [{"url": url} for url in dict.fromkeys(clean(r) for r in f.references) if _LINK.fullmatch(url)]
    if links:
        entry["links"] = links
    return entry


def _identifier(f: Finding) -> dict[str, str]:
    value = clean(f.id) or "unknown"
    for pattern, kind, url in _KNOWN:
        if pattern.match(value):
            return {"type": kind, "name": value, "value": value, "url": url.format(value)}
    prefix = _PREFIX.match(value)
    return {"type": prefix[1].lower() if prefix else "trivy", "name": value, "value": value}


def _messages(verdict: Verdict) -> list[dict[str, str]]:
    """What a reader of this report needs to know it does not show, and the gate's warnings."""
    left_out = {kind: sum(j.finding.kind == kind for j in verdict.judged)
                for kind in ("secret", "misconfiguration", "model")}
    suppressed = sum(j.outcome == "suppressed" and j.finding.kind == "vulnerability" for j in verdict.judged)
    messages = [{"level": "warn", "value": clean(w)} for w in verdict.warnings]
    if any(left_out.values()):
        what = ", ".join(f"{n} {kind}" for kind, n in left_out.items() if n)
        messages.append({"level": "info", "value": f"not in this report (not dependency vulnerabilities): {what} "
                                                   "finding(s); see mlci's SARIF report and the MR section"})
    if suppressed:
        plural = "ies" if suppressed != 1 else "y"
        messages.append({"level": "info", "value": f"{suppressed} vulnerabilit{plural} suppressed by exceptions "
                                                   "(mlci.yaml, .trivyignore.yaml) not listed"})
    messages += [{"level": "warn", "value": f"not scanned: {clean(u.path)}: {clean(u.reason)}"}
                 for u in verdict.output.unscanned]
    return [m for m in messages if m["value"]]
