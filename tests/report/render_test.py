"""The report's template: the built-in one's new parts, and a repo's own that is missing, broken, or
hostile: always exit 2 naming the template and line, never an internal error."""
from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest

from mlci import cli
from mlci.core.errors import ConfigError
from mlci.report import sandbox
from mlci.report.baseline import Baseline
from mlci.report.diff import Change, Diff
from mlci.report.figures import Figure, Figures
from mlci.report.render import render
from mlci.report.settings import Gate, ReportSettings
from tests.testing import repos

DIFF = Diff([Change("m.json:auc", 0.5, 0.75)], [], [], ["`eval/m.json` at baseline (abc): missing\nsecond line"])
FIGURES = Figures([Figure("cm", "confusion", "| table |")], ["plot x: not drawn: because"])


def _render(template: Path | None, settings: ReportSettings | None = None) -> str:
    return render(DIFF, [], Baseline("a" * 40, "main"), "head123", settings or ReportSettings(), [], template,
                  FIGURES)


def test_builtin_template_shows_warnings_one_line_each_and_every_figure() -> None:
    body = _render(None)
    assert "> ⚠️ **Not everything could be shown:**\n> - `eval/m.json` at baseline (abc): missing second line\n" \
           "> - plot x: not drawn: because\n" in body
    assert "### Plots\n\n| table |\n" in body
    assert "| `m.json:auc` | 0.5 | 0.75 | +0.25 (+50.00%) | ⬆️ 🟢 |" in body


def test_own_template_gets_plots_charts_and_warnings(tmp_path: Path) -> None:
    template = tmp_path / "own.md.j2"
    template.write_text("{% for p in plots %}{{ p.name }}:{{ p.kind }}{% endfor %} {{ charts | join }} "
                        "{{ warnings | length }} {{ fmt(metrics[0].new) }}")
    assert _render(template, ReportSettings(precision=1)) == "cm:confusion | table | 2 0.8\n"


@pytest.mark.parametrize("text, expected", [
    ("ok\n{% if %}\n", r"own.md.j2:2: report.template: Jinja syntax error: Expected an expression"),
    ("line 1\nline 2\n{{ nope.attr }}\n", r"own.md.j2:3: report.template: UndefinedError: 'nope' is undefined"),
    ("{{ metrics[0].new / 0 }}", r"own.md.j2:1: report.template: ZeroDivisionError"),
    ("\n{{ cycler.__init__.__globals__.os.environ }}", r"own.md.j2:2: report.template: SecurityError"),
    ('{% include "part.j2" %}', r"part.j2:2: report.template: UndefinedError: 'gone' is undefined"),
    ('{% include "absent.j2" %}', r"own.md.j2:1: report.template: TemplateNotFound: 'absent.j2' not found"),
])
def test_a_broken_template_names_itself_and_the_line(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "part.j2").write_text("fine\n{{ gone }}\n")
    (tmp_path / "own.md.j2").write_text(text)
    with pytest.raises(ConfigError, match=expected):
        _render(tmp_path / "own.md.j2")


def test_an_include_that_links_out_of_the_templates_directory_is_not_found(tmp_path: Path) -> None:
    (tmp_path / "host").mkdir()
    (tmp_path / "host" / "shadow").write_text("root:$6$hash-of-a-password\n")
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "part.j2").symlink_to(tmp_path / "host" / "shadow")
    (tmp_path / "repo" / "own.md.j2").write_text('{% include "part.j2" %}')
    with pytest.raises(ConfigError, match=r"TemplateNotFound: 'part\.j2' leads out of the template's directory"):
        _render(tmp_path / "repo" / "own.md.j2")
    (tmp_path / "repo" / ".git").mkdir()
    (tmp_path / "repo" / ".git" / "config").write_text("[remote]\n  url = https://oauth2:tok@gitlab.bank/x\n")
    (tmp_path / "repo" / "own.md.j2").write_text('{% include ".git/config" %}')
    with pytest.raises(ConfigError, match=r"TemplateNotFound: '\.git/config' is in git's or DVC's own state"):
        _render(tmp_path / "repo" / "own.md.j2")


@pytest.mark.parametrize("make, expected", [
    (lambda p: None, "report.template: not found"),
    (lambda p: p.mkdir(), "report.template: not a file"),
    (lambda p: p.write_bytes(b"ok \xff\xfe"), r"report.template: not UTF-8 \(byte 3\)"),
])
def test_a_missing_or_unreadable_template(tmp_path: Path, make: object, expected: str) -> None:
    path = tmp_path / "own.md.j2"
    make(path)  # type: ignore[operator]
    with pytest.raises(ConfigError, match=f"^{path}: {expected}"):
        _render(path)


def test_the_command_exits_2_on_a_broken_template(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = {"mlci.yaml": "version: 1\nreport:\n  template: report.j2\n", "report.j2": "a\nb\n{{ nope }}\n",
             "metrics.json": '{"auc": 0.5}'}
    repo = repos.tiny_dvc_repo(tmp_path / "repo", "metrics:\n- metrics.json\n", files)
    code = cli.main(["report", "--repo", str(repo), "--base", "HEAD", "--dry-run", "--out", str(tmp_path / "o.md")])
    assert code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"{repo}/report.j2:3: report.template: UndefinedError: 'nope' is undefined")


def test_a_falling_loss_is_green_and_a_gate_that_says_otherwise_wins() -> None:
    falling = Diff([Change("m.json:val_loss", 0.4, 0.3), Change("m.json:auc", 0.8, 0.7)], [], [], [])
    body = render(falling, [], Baseline("a" * 40, "main"), "head123", ReportSettings(), [], None, Figures([], []))
    assert "| `m.json:val_loss` | 0.4 | 0.3 | -0.1 (-25.00%) | ⬇️ 🟢 |" in body
    assert "| `m.json:auc` | 0.8 | 0.7 | -0.1 (-12.50%) | ⬇️ 🔴 |" in body
    inverted = ReportSettings(gates={"m.json:val_loss": Gate(better="higher")})
    body = render(falling, [], Baseline("a" * 40, "main"), "head123", inverted, [], None, Figures([], []))
    assert "| `m.json:val_loss` | 0.4 | 0.3 | -0.1 (-25.00%) | ⬇️ 🔴 |" in body


def test_values_beyond_a_float_are_shown_short_and_without_a_change() -> None:
    from mlci.report.render import _change, _fmt
    assert _fmt(10**400, 4) == "1.000e+400" and _fmt(12345, 4) == "12345" and _fmt(True, 4) == "true"
    assert _change(Change("m:x", 10**400, 10**401), 4) == "changed"
    assert _change(Change("m:x", float("inf"), 1.0), 4) == "changed"


def test_a_long_value_is_one_short_cell() -> None:
    import json

    from mlci.report.render import MAX_VALUE, _fmt
    features = [f"feature_{i}" for i in range(2000)]
    shown = _fmt(features, 4)
    assert shown.startswith('`["feature_0", "feature_1",')
    assert shown.endswith(f"… ({len(json.dumps(features))} characters)`")
    assert len(shown) < MAX_VALUE + 40 and _fmt("x" * MAX_VALUE, 4) == f"`{'x' * MAX_VALUE}`"


@pytest.mark.parametrize("text, expected", [
    ("{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
     r"own.md.j2:1: report.template: it took longer than 0.5 s to render \(the bounds of docs/report.md\)$"),
    ('\n{{ "x" * 10**10 }}', r"own.md.j2:2: report.template: a repetition of 1 x 10000000000 is longer than 1000000"),
    ("{{ [0] * 10**9 }}", r"own.md.j2:1: report.template: a repetition of 1 x 1000000000 is longer"),
    ("{{ 7 ** 10000000 }}", r"own.md.j2:1: report.template: 7 \*\* 10000000 is longer than 4096 bits"),
    ('{{ "x".ljust(3 * 10**9) }}', r"own.md.j2:1: report.template: it needs more than 1 GiB of memory to render"),
    ('{% for i in range(99999) %}{{ "x" * 999 }}{% endfor %}', r"own.md.j2: report.template: it renders more than "
                                                               r"1000000 characters"),
])
def test_a_template_past_its_bounds_is_a_template_error_in_seconds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   text: str, expected: str) -> None:
    """The template comes with the MR: a loop of loops held the report job for hours, `"x" * 10**10` took
    10 GB."""
    monkeypatch.setattr(sandbox, "RENDER_SECONDS", 0.5)
    limit = resource.getrlimit(resource.RLIMIT_AS)
    (tmp_path / "own.md.j2").write_text(text)
    started = time.monotonic()
    with pytest.raises(ConfigError, match=expected):
        _render(tmp_path / "own.md.j2")
    assert time.monotonic() - started < 5
    assert _render(None)  # the bounds are lifted again: the next render runs
    assert resource.getrlimit(resource.RLIMIT_AS) == limit
