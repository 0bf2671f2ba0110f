"""Data-test reports: a console table, JUnit XML (GitLab's MR widget), JSON, and a Markdown section.

Only the human-readable ones round numbers (6 significant digits); JSON keeps full precision. Names come
from the spec and the data's column names, so control characters are shown as escapes (`\\x1b`): a
terminal never runs them, and the XML stays XML 1.0, which forbids most of them.
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any
from xml.etree import ElementTree as ET

from mlci.core import log
from mlci.datatest.run import Result

ICONS = {"pass": "✅", "warn": "⚠️", "fail": "❌"}
# C0 and C1 controls, DEL, and what XML 1.0 excludes besides (surrogates, U+FFFE, U+FFFF).
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def printable(text: str) -> str:
    """Text with every control character (and XML-forbidden code point) written as an escape: `\\x07`."""
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", text)


def counts(results: Sequence[Result]) -> dict[str, int]:
    """How many checks passed, warned and failed."""
    return {status: sum(r.status == status for r in results) for status in ("pass", "warn", "fail")}


def observed_text(observed: Any) -> str:
    """Observed numbers as `key=value` text."""
    if isinstance(observed, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in observed.items())
    return _fmt(observed)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def console(results: Sequence[Result]) -> str:
    """A plain-text table, one check per line, then the totals."""
    rows: list[tuple[str, ...]] = [("dataset", "check", "status", "observed", "expected")]
    rows += [tuple(printable(cell) for cell in (r.dataset, r.name, r.status.upper(), observed_text(r.observed),
                                                r.expected)) for r in results]
    widths = [min(max(len(row[i]) for row in rows), 60) for i in range(4)]
    lines = ["  ".join(cell.ljust(widths[i]) if i < 4 else cell for i, cell in enumerate(row)) for row in rows]
    c = counts(results)
    lines.append(f"{len(results)} checks: {c['pass']} passed, {c['warn']} warned, {c['fail']} failed")
    return "\n".join(lines)


def junit(results: Sequence[Result]) -> str:
    """JUnit XML: one testsuite per dataset, one testcase per check; failures say observed vs expected."""
    root = ET.Element("testsuites", name="mlci data-test", tests=str(len(results)),
                      failures=str(counts(results)["fail"]))
    for dataset in dict.fromkeys(r.dataset for r in results):
        mine = [r for r in results if r.dataset == dataset]
        suite = ET.SubElement(root, "testsuite", name=printable(dataset), tests=str(len(mine)),
                              failures=str(counts(mine)["fail"]), skipped="0")
        for r in mine:
            case = ET.SubElement(suite, "testcase", classname=printable(f"data-test.{dataset}"), name=printable(r.name),
                                 file=printable(r.where))
            text = printable(f"observed {observed_text(r.observed)}; expected {r.expected} ({r.where})")
            if r.status == "fail":
                ET.SubElement(case, "failure", message=text, type=r.check).text = text
            elif r.status == "warn":
                ET.SubElement(case, "system-out").text = f"WARNING: {text}"
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def as_json(results: Sequence[Result]) -> str:
    """Machine-readable results with totals."""
    return log.dumps_json({"ok": counts(results)["fail"] == 0, "counts": counts(results),
                           "results": [asdict(r) for r in results]}) + "\n"


def markdown(results: Sequence[Result]) -> str:
    """The section the MR report embeds: a summary line, then failed/warned checks first."""
    c = counts(results)
    head = "❌ failed" if c["fail"] else "⚠️ passed with warnings" if c["warn"] else "✅ passed"
    lines = [f"### Data tests: {head}", "",
             f"{len(results)} checks: {c['pass']} passed, {c['warn']} warned, {c['fail']} failed.", "",
             "| | dataset | check | observed | expected |", "|---|---|---|---|---|"]
    order = {"fail": 0, "warn": 1, "pass": 2}
    for r in sorted(results, key=lambda r: order[r.status]):
        cells = [ICONS[r.status], r.dataset, r.name, observed_text(r.observed), r.expected]
        lines.append("| " + " | ".join(printable(cell).replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"
