"""The scan's section of the MR report: the verdict and why, counts by severity, the worst findings, model-file
findings, files not scanned, the exceptions (days until each expires; expired ones), the DB's date and age.

Every value from a scan (ids, package names, titles, paths, reasons naming them) is attacker-controlled: it
is masked (registered secrets), cut, then shown as a code span (mlci.report.markdown.code), so it can neither
break a table nor become HTML, a link, an image, or a forge's @mention or #reference. A secret trivy found
appears only as trivy's masked match."""
from __future__ import annotations

import datetime

from mlci.report.markdown import code
from mlci.scan.findings import SEVERITIES
from mlci.scan.reports.common import clean, cut, utc, worst_first
from mlci.scan.verdict import ExceptionState, Judged, Outcome, Verdict

CELL = 120  # characters of a value in a table cell; the JSON summary and SARIF have them whole
GATE: dict[Outcome, str] = {"fails": "❌ fails", "unfixed": "no fix yet", "below": "below", "suppressed": "suppressed",
                            "informational": "info"}
DB_ICONS = {"ok": "✅", "warn": "⚠️", "fail": "❌"}


def markdown(verdict: Verdict, *, limit: int = 20) -> str:
    """The section (a `###` heading and what follows); at most `limit` rows in each list."""
    out = verdict.output
    head = "❌ failed" if not verdict.passed else "⚠️ passed with warnings" if verdict.warnings else "✅ passed"
    where = f"Target {_c(out.target)}"
    if out.digest:
        where += f" at {_c(out.digest)}"
    if out.os:
        where += f" ({_c(out.os)})"
    lines = [f"### Security scan: {head}", "", where + ".", ""]
    if verdict.reasons:
        lines += ["**The gate failed:**", *[f"- {_c(r, 1000)}" for r in verdict.reasons], ""]
    if verdict.warnings:
        lines += ["> ⚠️ **Warnings:**", *[f"> - {_c(w, 1000)}" for w in verdict.warnings], ""]
    lines += _counts(verdict)
    lines += _findings(verdict, limit)
    lines += _models(verdict, limit)
    lines += _unscanned(verdict, limit)
    lines += _exceptions(verdict.exceptions, limit)
    lines += _footer(verdict)
    return clean("\n".join(lines).rstrip("\n") + "\n")


def _c(value: object, limit: int = CELL) -> str:
    """A scan value as an inert code span: masked first (a cut or escape must not split a secret), then cut."""
    return code(cut(clean(value), limit))


def _counts(verdict: Verdict) -> list[str]:
    rows: tuple[tuple[str, tuple[Outcome, ...]], ...] = (
        ("fail the gate", ("fails",)), ("reported, not failing", ("unfixed", "below")),
        ("suppressed", ("suppressed",)), ("information", ("informational",)))
    severities = list(reversed(SEVERITIES))
    lines = ["| findings | " + " | ".join(severities) + " |", "|---|" + "---:|" * len(severities)]
    for label, outcomes in rows:
        counts = verdict.counts(outcomes)
        lines.append(f"| {label} | " + " | ".join(str(counts.get(s, 0)) for s in severities) + " |")
    return [*lines, ""]


def _where(item: Judged) -> str:
    f = item.finding
    place = f.path or f.target
    return f"{place}:{f.line}" if f.line is not None else place


def _what(item: Judged) -> str:
    f = item.finding
    shown = _c(f.title) if f.title else ""
    if f.kind != "vulnerability" and f.detail:  # a secret's masked match, a check's message
        shown = f"{shown} {_c(f.detail)}".strip()
    return shown


def _findings(verdict: Verdict, limit: int) -> list[str]:
    open_ = [j for j in worst_first(verdict.judged) if j.outcome in ("fails", "unfixed", "below")
             and j.finding.kind != "model"]
    if not open_:
        return ["No open findings.", ""]
    lines = [f"#### Top findings ({min(limit, len(open_))} of {len(open_)}, worst first)", "",
             "| gate | severity | id | package | installed | fixed | where | what |", "|---" * 8 + "|"]
    for item in open_[:limit]:
        f = item.finding
        cells = [GATE[item.outcome], f.severity, _c(f.id), _c(f.package) if f.package else "",
                 _c(f.version) if f.version else "", _c(f.fixed_version) if f.fixed_version else "",
                 _c(_where(item)), _what(item)]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, *_more(len(open_), limit), ""]


def _models(verdict: Verdict, limit: int) -> list[str]:
    models = [j for j in worst_first(verdict.judged) if j.finding.kind == "model"]
    if not models:
        return []
    lines = [f"#### Model files ({len(models)} finding{'s' if len(models) != 1 else ''})", "",
             "| gate | severity | id | file | what |", "|---|---|---|---|---|"]
    for item in models[:limit]:
        f = item.finding
        lines.append(f"| {GATE[item.outcome]} | {f.severity} | {_c(f.id)} | {_c(_where(item))} | {_what(item)} |")
    return [*lines, *_more(len(models), limit), ""]


def _unscanned(verdict: Verdict, limit: int) -> list[str]:
    files = verdict.output.unscanned
    if not files:
        return []
    lines = [f"#### Files not scanned ({len(files)})", ""]
    lines += [f"- {_c(u.path)}: {_c(u.reason)}" for u in files[:limit]]
    return [*lines, *_more(len(files), limit), ""]


def _exceptions(states: tuple[ExceptionState, ...], limit: int) -> list[str]:
    lines: list[str] = []
    active = sorted((s for s in states if not s.expired), key=lambda s: (s.days_left is None, s.days_left or 0))
    expired = [s for s in states if s.expired]
    if active:
        lines += [f"#### Exceptions in force ({len(active)})", "",
                  "| id | applies to | matched | expires | days left | reason | set in |",
                  "|---|---|---:|---|---:|---|---|"]
        lines += [f"| {_c(s.id)} | {_scope(s)} | {s.matched} | {_date(s.expires)} | "
                  f"{'' if s.days_left is None else s.days_left} | {_c(s.reason, 200)} | {_c(s.source)} |"
                  for s in active[:limit]]
        lines += [*_more(len(active), limit), ""]
    if expired:
        lines += [f"#### ❌ Expired exceptions ({len(expired)}): no longer suppressing", "",
                  "| id | applies to | matched | expired | reason | set in |", "|---|---|---:|---|---|---|"]
        lines += [f"| {_c(s.id)} | {_scope(s)} | {s.matched} | {_date(s.expires)} | {_c(s.reason, 200)} | "
                  f"{_c(s.source)} |" for s in expired[:limit]]
        lines += [*_more(len(expired), limit), ""]
    return lines


def _scope(state: ExceptionState) -> str:
    parts = [_c(p) for p in (state.package, state.path) if p]
    return " ".join(parts) or "any"


def _date(day: datetime.date | None) -> str:
    return "never" if day is None else day.isoformat()


def _more(total: int, limit: int) -> list[str]:
    return ["", f"… and {total - limit} more: see the JSON summary or the SARIF report."] if total > limit else []


def _footer(verdict: Verdict) -> list[str]:
    out = verdict.output
    if out.db is None:
        db = "Vulnerability DB: none (no vulnerability scan)."
    else:
        db = f"Vulnerability DB: version {out.db.version}, updated {_time(out.db.updated_at)}"
        age = verdict.db_age
        if age is not None:
            limit = f", limit {age.limit_days} days" if age.limit_days is not None else ""
            db += f", {age.age_days:.1f} days old{limit} {DB_ICONS[age.status]}"
        db += "."
    facts = [f"trivy {_c(out.trivy_version)}" if out.trivy_version else "trivy: not run"]
    if out.scanners:
        facts.append("scanners " + ", ".join(_c(s) for s in out.scanners))
    facts += [f"policy {_c(verdict.policy_hash[:19])}", f"scanned {_time(verdict.scanned_at)}"]
    return [db, "", " · ".join(facts) + "."]


def _time(moment: datetime.datetime) -> str:
    return utc(moment).strftime("%Y-%m-%d %H:%M UTC")
