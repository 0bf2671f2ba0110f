"""Whatever text a scan carries (trivy's JSON and model files are attacker-controlled: control characters,
Markdown, HTML, surrogates, URLs with credentials, huge titles, odd times and line numbers), the SARIF log, the
GitLab report and the summary stay valid against their schemas, and the MR section stays inert."""
from __future__ import annotations

import datetime
import typing

from hypothesis import given, seed, settings
from hypothesis import strategies as st

from mlci.scan.findings import SEVERITIES, DbInfo, Finding, Kind, ScanOutput, Unscanned
from mlci.scan.reports import gitlab, sarif, summary
from mlci.scan.reports.markdown import markdown
from mlci.scan.verdict import DbAge, ExceptionState, Judged, Outcome, Verdict
from tests.scan import reports_support as rs

HOSTILE = ["", " ", "`", "a|b", "<!--", "<img src=x>", "[l](https://e.example)", "@all", "#1", "\ud800", "\x00\x1b[31m",
           "https://user:pass@h.example/x", "https://h.example/%zz", "http://h/a b", "javascript:alert(1)", "C:\\x",
           "../../etc/passwd", "/abs/path", "ftp://f.example/p", "é👍🏽", "\u2028", "CVE-2026-1", "GHSA-x"]
# long texts too: GitLab's limits (name 255, solution 7000 characters) and the Markdown cells' cut
text = st.sampled_from(HOSTILE) | st.text(max_size=20) | st.text(alphabet="a|<`\n", min_size=250, max_size=7100)
optional = st.none() | text
offsets = st.builds(datetime.timezone, st.timedeltas(min_value=datetime.timedelta(hours=-23),
                                                     max_value=datetime.timedelta(hours=23)))
times = st.datetimes(timezones=st.none() | st.just(datetime.UTC) | offsets)
findings = st.builds(
    Finding, kind=st.sampled_from(typing.get_args(Kind)), id=text, severity=st.sampled_from(SEVERITIES), title=text,
    target=text, package=optional, version=optional, fixed_version=optional, status=optional, path=optional,
    line=st.none() | st.integers(-3, 10**12), detail=text, purl=optional, data_source=optional,
    references=st.lists(text, max_size=3).map(tuple), informational=st.booleans())
states = st.builds(ExceptionState, id=text, reason=text, expires=st.none() | st.dates(),
                   days_left=st.none() | st.integers(-10**6, 10**6), expired=st.booleans(), matched=st.integers(0, 9),
                   source=text, package=optional, path=optional)
judged = st.builds(Judged, finding=findings, outcome=st.sampled_from(typing.get_args(Outcome)),
                   exception=st.none() | states)


@st.composite
def verdicts(draw: st.DrawFn) -> Verdict:
    items = draw(st.lists(judged, max_size=6))
    output = ScanOutput(target=draw(text), digest=draw(optional), os=draw(optional),
                        findings=tuple(j.finding for j in items),
                        unscanned=tuple(draw(st.lists(st.builds(Unscanned, text, text), max_size=2))),
                        trivy_version=draw(optional),
                        db=draw(st.none() | st.builds(DbInfo, version=st.integers(0, 9), updated_at=times,
                                                      next_update=st.none() | times, downloaded_at=st.none() | times)),
                        scanners=tuple(draw(st.lists(text, max_size=3))))
    age = draw(st.none() | st.builds(DbAge, updated_at=times, age_days=st.floats(allow_nan=False, allow_infinity=False),
                                     limit_days=st.none() | st.integers(0, 10**4),
                                     status=st.sampled_from(["ok", "warn", "fail"])))
    return Verdict(output=output, judged=tuple(items), exceptions=tuple(draw(st.lists(states, max_size=3))),
                   db_age=age, policy_hash=draw(text), scanned_at=draw(times),
                   reasons=tuple(draw(st.lists(text, max_size=2))), warnings=tuple(draw(st.lists(text, max_size=2))))


@seed(20261201)
@settings(max_examples=120, deadline=None)
@given(verdicts(), times, st.sampled_from(["", "img", "<x>"]) | text)
def test_any_scan_text_gives_schema_valid_reports_and_an_inert_section(verdict: Verdict, moment: datetime.datetime,
                                                                        image: str) -> None:
    assert rs.problems(rs.SUMMARY, summary.summary(verdict)) == []
    assert rs.problems(rs.SARIF, sarif.sarif(verdict)) == []
    report = gitlab.container_scanning(verdict, started=moment, finished=moment, image=image)
    assert rs.problems(rs.GITLAB, report) == []
    rs.assert_inert(markdown(verdict, limit=4))
