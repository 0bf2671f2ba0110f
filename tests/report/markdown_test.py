"""Hostile names and values in the report, rendered by cmark-gfm (GitHub's own renderer; GitLab's is built on
it too): a metric name, value, param, branch, class label, plot title or DVC message can neither break a
table, nor add HTML (a comment hiding the rest of the report), links or images. And a comment cut to the
forge's limit keeps its marker, whole table rows and whole code fences, and ends with the pointer."""
from __future__ import annotations

import re
from html.parser import HTMLParser

import cmarkgfm
from cmarkgfm.cmark import Options
from hypothesis import given, settings
from hypothesis import strategies as st

from mlci.forge.sticky import fit, marker
from mlci.report.baseline import Baseline
from mlci.report.diff import Change, Diff
from mlci.report.figures import Figures
from mlci.report.gates import Verdict
from mlci.report.markdown import WORD_JOINER, flat
from mlci.report.plots import BarPlot, Series
from mlci.report.render import render
from mlci.report.settings import ReportSettings
from mlci.report.tables import bars

HOSTILE = ["a|b", "x<!--", "-->", "`tick`", "``two``", "![p](https://t.example/p.png)", "[l](https://e.example)",
           "<img src=x>", "<details>", "**b**", "line\nbreak", "\\|", "$x$", "~~s~~", "&lt;", "_u_", "\x00nul", "é👍🏽",
           "", " ", "`", "a\\", "| --- |", "@all", "cc @user", "#12", "!3", "~bug", "org/repo#1"]


class _Html(HTMLParser):
    """Tags, comments and the text of each table row's cells, as a browser would see them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.comments: list[str] = []
        self.rows: list[list[str]] = []
        self.links: list[tuple[str, str]] = []  # (href, text)
        self._cell: list[str] | None = None
        self._link: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "a":
            self.links.append((dict(attrs).get("href") or "", ""))
            self._link = []
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._link is not None:
            self.links[-1] = (self.links[-1][0], "".join(self._link))
            self._link = None
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._link is not None:
            self._link.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def handle_comment(self, data: str) -> None:
        self.comments.append(data)


def _html(markdown: str) -> _Html:
    """cmark-gfm with raw HTML let through (the forges sanitise later; here any HTML at all is a defect)."""
    page = _Html()
    page.feed(cmarkgfm.github_flavored_markdown_to_html(markdown, options=Options.CMARK_OPT_UNSAFE))
    return page


def _report(name: str, value: str, label: str, warning: str) -> str:
    diff = Diff([Change(f"metrics.json:{name}", value, value + "!"), Change("metrics.json:auc", 0.5, 0.6)],
                [Change(f"params.yaml:{name}", [value], {"k": value})], [], [warning])
    verdicts = [Verdict(f"metrics.json:{name}", False, "a number", f"not a float: {value[:40]}")]
    return render(diff, verdicts, Baseline("a" * 40, label), "b" * 12, ReportSettings(), [], None, Figures())


@settings(derandomize=True, max_examples=150, deadline=None)
@given(st.sampled_from(HOSTILE) | st.text(max_size=12), st.sampled_from(HOSTILE) | st.text(max_size=12),
       st.sampled_from(HOSTILE) | st.text(max_size=12))
def test_no_name_or_value_becomes_markdown_or_html(name: str, value: str, label: str) -> None:
    page = _html(_report(name, value, f"merge base with {label}", f"plot {name}: not drawn: {value}"))
    assert page.comments == []
    # GFM's autolinks (a bare URL, www., an e-mail address) show their own target: never a disguised link.
    assert all(href in (text, f"mailto:{text}", f"http://{text}") for href, text in page.links), page.links
    allowed = {"h2", "h3", "p", "code", "blockquote", "ul", "li", "strong", "table", "thead", "tbody", "tr", "th", "td",
               "a"}
    assert set(page.tags) <= allowed, set(page.tags) - allowed
    metrics, gates, params = (page.rows[i:j] for i, j in ((0, 3), (3, 5), (5, 7)))
    assert [len(row) for row in metrics + gates + params] == [5, 5, 5, 4, 4, 3, 3]
    assert metrics[1][:3] == [flat(f"metrics.json:{name}"), flat(value) or '""', flat(value + "!")]
    # A cell is trimmed; a forge reference in plain text (@all, #12, !3, ~label) is broken by a word joiner.
    assert gates[1][2].replace(WORD_JOINER, "") == flat(f"not a float: {value[:40]}").strip()
    assert not re.search(r"[@#!~%&$]\w", gates[1][2]), gates[1][2]
    assert params[1][0] == flat(f"params.yaml:{name}")


def test_a_hostile_value_is_shown_as_it_is_not_as_markup() -> None:
    body = _report("auc", "x|<!-- hidden", "merge base with feat<!--", "`dvc.yaml`: ![p](https://t.example/p)")
    page = _html(body)
    assert page.comments == [] and "img" not in page.tags
    assert page.links == [("https://t.example/p", "https://t.example/p")]  # GFM's autolink, its own text
    assert ["metrics.json:auc", "x|<!-- hidden", "x|<!-- hidden!", "changed", ""] in page.rows
    assert "(merge base with feat<!--)" in cmarkgfm.github_flavored_markdown_to_html(body).replace("&lt;", "<")
    assert "> - `dvc.yaml`: !\\[p\\](https://t.example/p)" in body  # mlci's own code span stays one


def test_bar_and_confusion_labels_stay_in_their_cells() -> None:
    plot = BarPlot("p", "t <b>", "cat|egory", "v", {Series("base", "f|1"): {"a|b": 1.0, "<!--": 2.0}})
    page = _html(bars(plot, ["base"], {"base": "baseline"}))
    assert page.comments == [] and "b" not in page.tags
    assert page.rows == [["cat|egory", "baseline"], ["<!--", "2"], ["a|b", "1"]]


# --- the cut to the forge's limit -------------------------------------------------------------------------

BLOCKS = st.sampled_from([
    "| a | b |\n|---|---|\n" + "| 1 | é👍🏽 |\n" * 40,
    "```mermaid\nxychart-beta\n  x-axis \"x\" 0 --> 1\n" + "  line [1, 2, 3]\n" * 30 + "```",
    "~~~~\nnot ``` closed by this\n~~~~",
    "a paragraph of text " * 20,
    "> - a warning\n> - another",
])
POINTER = "the full report is the job artifact mlci-report.md"


@settings(derandomize=True, max_examples=100, deadline=None)
@given(st.lists(BLOCKS, min_size=1, max_size=12), st.integers(min_value=300, max_value=6000))
def test_a_cut_report_keeps_its_marker_whole_rows_and_fences_and_ends_with_the_pointer(
        blocks: list[str], limit: int) -> None:
    body = f"{marker('metrics')}\n" + "\n\n".join(blocks)
    cut = fit(body, limit, POINTER)
    assert len(cut) <= limit and cut.startswith(marker("metrics") + "\n")
    if cut == body:
        return
    kept = cut[: cut.index("\n\n… truncated: ")]
    assert body.startswith(kept) and body[len(kept)] == "\n"  # whole lines only
    html = cmarkgfm.github_flavored_markdown_to_html(cut)
    assert html.rstrip().endswith(f"<p>… truncated: {POINTER}</p>")  # not inside a code block
    fences = [line for line in kept.split("\n") if line.startswith(("```", "~~~~"))]
    assert len(fences) % 2 == 0  # every fence kept is closed: a chart is whole or left out
