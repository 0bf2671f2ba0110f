"""A verdict as SARIF 2.1.0 for GitHub code scanning and other SARIF viewers: one run of the tool `mlci` (trivy
as its extension), one rule per finding id, one result per finding.

GitHub reads `properties.security-severity` on a rule (with the `security` tag) for an alert's severity, and a
result needs a location: an image's findings point at the file inside the image (or trivy's target) and carry
the image as a logical location. A finding an exception suppresses carries an accepted external suppression
whose justification is the exception's reason; one whose exception expired, a rejected one (shown again). SARIF
viewers hide accepted suppressions; GitHub opens alerts for them unless the repository treats suppressed results
as dismissed: pass `suppressed=False` to leave them out of the document instead."""
from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from mlci import __version__
from mlci.scan.findings import Finding, Severity
from mlci.scan.reports.common import clean, cut, fingerprint, iso, optional, stable_ids, worst_first
from mlci.scan.verdict import Judged, Verdict

SCHEMA_URI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
LEVELS: dict[Severity, str] = {"CRITICAL": "error", "HIGH": "error", "MEDIUM": "warning", "LOW": "note",
                               "UNKNOWN": "note"}
# GitHub's bands: over 9.0 critical, 7.0-8.9 high, 4.0-6.9 medium, 0.1-3.9 low (trivy's own SARIF uses these).
SECURITY_SEVERITY: dict[Severity, str] = {"CRITICAL": "9.5", "HIGH": "8.0", "MEDIUM": "5.5", "LOW": "2.0",
                                          "UNKNOWN": "0.0"}
RULE_NAMES = {"vulnerability": "Vulnerability", "secret": "Secret", "misconfiguration": "Misconfiguration",
              "model": "UnsafeModelFile"}
SHORT, TEXT = 1000, 20000  # characters of a rule's short description, of other texts (a reviewer reads them)
TRIVY_URI = "https://github.com/aquasecurity/trivy"
_PCHAR = r"[A-Za-z0-9._~!$&'()*+,;=:@%-]"  # RFC 3986 pchar; userinfo (credentials) is not accepted in a link
_URL = re.compile(rf"https?://[A-Za-z0-9.-]+(:[0-9]{{1,5}})?(/({_PCHAR}|/)*)?(\?({_PCHAR}|[/?])*)?(#({_PCHAR}|[/?])*)?")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


MAX_RESULTS = 5000  # GitHub code scanning keeps the first 5,000 results of a run (and refuses over 25,000)


def sarif(verdict: Verdict, *, suppressed: bool = True, limit: int = MAX_RESULTS) -> dict[str, Any]:
    """The SARIF log of one target's verdict (results worst first, at most `limit`: the rest would be dropped
    by GitHub unseen, so the worst are kept and the run's properties say how many were left out; rules in the
    order they first occur)."""
    judged = [j for j in worst_first(verdict.judged) if suppressed or j.outcome != "suppressed"]
    left_out = max(0, len(judged) - limit)
    judged = judged[:limit]
    rules: dict[str, dict[str, Any]] = {}
    for item in judged:
        _rule(rules, item.finding)
    index = {rule_id: i for i, rule_id in enumerate(rules)}
    image = verdict.output.digest is not None
    ids = stable_ids(j.finding for j in judged)
    results = [_result(item, index, verdict, image, guid) for item, guid in zip(judged, ids, strict=True)]
    out = verdict.output
    extensions = [{"name": "trivy", "version": clean(out.trivy_version), "informationUri": TRIVY_URI}] \
        if out.trivy_version else [{"name": "trivy", "informationUri": TRIVY_URI}]
    return {
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {"name": "mlci", "version": __version__, "rules": list(rules.values()),
                           "properties": {"trivyVersion": optional(out.trivy_version)}},
                "extensions": extensions,
            },
            # no automationDetails: github/codeql-action/upload-sarif sets its `category` (default: per workflow
            # job and matrix) only where a run has none, and two scans must not share one category
            "invocations": [_invocation(verdict)],
            "results": results,
            "properties": {**_run_properties(verdict), **({"resultsLeftOut": left_out} if left_out else {})},
        }],
    }


def _rule(rules: dict[str, dict[str, Any]], f: Finding) -> None:
    """Add the finding's rule, or raise the rule's severity to the finding's if that is worse."""
    rule_id = _rule_id(f)
    known = rules.get(rule_id)
    if known is not None:
        if float(SECURITY_SEVERITY[f.severity]) > float(known["properties"]["security-severity"]):
            known["defaultConfiguration"]["level"] = LEVELS[f.severity]
            known["properties"]["security-severity"] = SECURITY_SEVERITY[f.severity]
        return
    title = clean(f.title) or rule_id
    rule: dict[str, Any] = {
        "id": rule_id, "name": RULE_NAMES[f.kind],
        "shortDescription": {"text": cut(title, SHORT)},
        "fullDescription": {"text": cut(title, TEXT)},
        "defaultConfiguration": {"level": LEVELS[f.severity]},
        "help": {"text": _help(f)},
        "properties": {"security-severity": SECURITY_SEVERITY[f.severity], "precision": "very-high",
                       "tags": ["security", f.kind]},
    }
    link = _link(f)
    if link:
        rule["helpUri"] = link
    rules[rule_id] = rule


def _rule_id(f: Finding) -> str:
    return clean(f.id) or f"mlci-{f.kind}-without-id"


def _help(f: Finding) -> str:
    lines = [f"{RULE_NAMES[f.kind]} {clean(f.id)}", f"Severity: {f.severity}"]
    if f.title:
        lines.append(clean(f.title))
    lines += [clean(r) for r in f.references]
    return cut("\n".join(lines), TEXT)


def _link(f: Finding) -> str | None:
    """The first reference that is a well-formed web address (a rule's helpUri); others are only listed."""
    for ref in f.references:
        text = clean(ref)
        if _URL.fullmatch(text) and not _BAD_ESCAPE.search(text):
            return text
    return None


def _result(item: Judged, index: dict[str, int], verdict: Verdict, image: bool, guid: str) -> dict[str, Any]:
    f = item.finding
    rule_id = _rule_id(f)
    informational = item.outcome == "informational"
    result: dict[str, Any] = {
        "ruleId": rule_id, "ruleIndex": index[rule_id],
        # SARIF: a result whose kind is not "fail" has level "none"
        "kind": "informational" if informational else "fail",
        "level": "none" if informational else LEVELS[f.severity],
        "message": {"text": cut(_message(item), TEXT)},
        "locations": [_location(f, verdict, image)],
        "correlationGuid": guid,
        "partialFingerprints": {"mlciFinding/v1": fingerprint(f)},
        # SARIF: suppressions on every result or none (mlci judges every one, so every result has the list)
        "suppressions": _suppressions(item),
        "properties": {
            "outcome": item.outcome, "severity": f.severity, "package": optional(f.package),
            "installedVersion": optional(f.version), "fixedVersion": optional(f.fixed_version),
            "status": optional(f.status), "purl": optional(f.purl), "dataSource": optional(f.data_source),
        },
    }
    return result


def _message(item: Judged) -> str:
    """One line a reviewer understands: what, where, how bad, what the gate made of it."""
    f = item.finding
    what = f"{clean(f.id) or f.kind} ({f.severity})"
    if f.package:
        what += f" in {clean(f.package)} {clean(f.version or '')}".rstrip()
    if f.title:
        what += f": {clean(f.title)}"
    if f.kind != "vulnerability" and f.detail:
        what += f" [{clean(f.detail)}]"  # a secret's masked match, a check's message, a model file's detail
    if f.fixed_version:
        what += f"; fixed in {clean(f.fixed_version)}"
    outcome = {"fails": "fails the gate", "unfixed": "no fix yet (scan.ignore_unfixed)",
               "below": "under the failing severities", "suppressed": "suppressed by an exception",
               "informational": "information only"}[item.outcome]
    if item.exception is not None and item.exception.expired:
        outcome += f"; exception {clean(item.exception.id)} ({clean(item.exception.source)}) expired"
    return f"{what} — {outcome}"


def _uri(place: str) -> str:
    """A relative URI reference for a path inside the target (percent-encoded: a `:` or space in a file name
    cannot turn it into a scheme or break it)."""
    return quote(clean(place).lstrip("/"), safe="/") or "."


def _location(f: Finding, verdict: Verdict, image: bool) -> dict[str, Any]:
    physical: dict[str, Any] = {"artifactLocation": {"uri": _uri(f.path or f.target or verdict.output.target)}}
    if f.line is not None and f.line >= 1:
        physical["region"] = {"startLine": f.line}
    location: dict[str, Any] = {"physicalLocation": physical}
    logical = []
    if image:
        out = verdict.output
        logical.append({"kind": "module", "name": clean(out.target),
                        "fullyQualifiedName": f"{clean(out.target)}@{clean(out.digest or '')}"})
    if f.package:
        package = clean(f.package)
        logical.append({"kind": "package", "name": package,
                        "fullyQualifiedName": clean(f.purl) if f.purl else f"{package}@{clean(f.version or '')}"})
    if logical:
        location["logicalLocations"] = logical
    return location


def _suppressions(item: Judged) -> list[dict[str, Any]]:
    state = item.exception
    if state is None:
        return []
    expires = None if state.expires is None else state.expires.isoformat()
    return [{"kind": "external", "status": "rejected" if state.expired else "accepted",
             "justification": (f"expired on {expires}: " if state.expired else "") + clean(state.reason),
             "properties": {"exception": clean(state.id), "source": clean(state.source), "expires": expires,
                            "daysLeft": state.days_left}}]


def _invocation(verdict: Verdict) -> dict[str, Any]:
    """The run went through (the gate's verdict is in the run's properties): files not scanned are the tool's
    warnings, each pointing at its file."""
    notes = [{"level": "warning", "message": {"text": f"not scanned: {clean(u.path)}: {clean(u.reason)}"},
              "locations": [{"physicalLocation": {"artifactLocation": {"uri": _uri(u.path)}}}]}
             for u in verdict.output.unscanned]
    return {"executionSuccessful": True, "endTimeUtc": iso(verdict.scanned_at), "toolExecutionNotifications": notes}


def _run_properties(verdict: Verdict) -> dict[str, Any]:
    out = verdict.output
    db = None if out.db is None else {
        "version": out.db.version, "updatedAt": iso(out.db.updated_at),
        "ageDays": None if verdict.db_age is None else verdict.db_age.age_days,
        "limitDays": None if verdict.db_age is None else verdict.db_age.limit_days,
        "status": None if verdict.db_age is None else verdict.db_age.status}
    return {"target": clean(out.target), "digest": optional(out.digest), "os": optional(out.os),
            "verdict": "pass" if verdict.passed else "fail", "reasons": [clean(r) for r in verdict.reasons],
            "warnings": [clean(w) for w in verdict.warnings], "policyHash": clean(verdict.policy_hash),
            "scanners": [clean(s) for s in out.scanners], "db": db}
