"""The report's Markdown, from a Jinja2 template (built-in, or the repo's own)."""
from __future__ import annotations

import decimal
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlci.core.errors import ConfigError
from mlci.report import direction
from mlci.report.baseline import Baseline
from mlci.report.diff import Change, Diff
from mlci.report.figures import Figures
from mlci.report.gates import Verdict
from mlci.report.markdown import code, text
from mlci.report.settings import Gate, ReportSettings


def render(diff: Diff, verdicts: Sequence[Verdict], base: Baseline, head: str, settings: ReportSettings,
           sections: Sequence[str], template_path: Path | None, figures: Figures) -> str:
    """Render the report body (without the sticky marker). A repo's own template that is missing, not
    UTF-8, or fails to compile or render is exit 2 naming the template and line."""
    import jinja2

    from mlci.report import sandbox

    loader: jinja2.BaseLoader
    if template_path is not None:
        _check_template(template_path)
        loader = _repo_loader(template_path.parent)
        name = template_path.name
    else:
        loader = jinja2.PackageLoader("mlci.report", "templates")
        name = "report.md.j2"
    # Sandboxed: the template comes with the MR, and the job holds a forge token in its environment.
    env = sandbox.BoundedEnvironment(loader=loader, autoescape=False, keep_trailing_newline=True,
                                     undefined=jinja2.StrictUndefined)
    digits = settings.precision
    gates = settings.gates
    context: dict[str, Any] = {
        "metrics": diff.metrics, "params": diff.params,
        "changed_params": [p for p in diff.params if p.old != p.new],
        "gates": list(verdicts), "failed": [v for v in verdicts if not v.ok],
        "base": base, "head": head, "plots": list(figures.figures),
        "charts": [f.markdown for f in figures.figures],
        "warnings": [" ".join(w.split()) for w in (*diff.problems, *figures.warnings)],
        "sections": list(sections),
        "fmt": lambda v: _fmt(v, digits), "change": lambda m: _change(m, digits), "code": code, "text": text,
        "arrow": lambda m: _arrow(m, gates.get(m.address)),
    }
    try:
        template = env.get_template(name)
        body = template.render(**context) if template_path is None else sandbox.render(template, context)
        return body.strip() + "\n"
    except jinja2.TemplateSyntaxError as exc:
        if template_path is None:
            raise
        where = exc.filename or str(template_path)
        raise ConfigError([f"{where}:{exc.lineno}: report.template: Jinja syntax error: {exc.message}"]) from None
    except Exception as exc:  # the repo's own template: whatever it raises is its error, at its line
        if template_path is None:
            raise
        where = _template_frame(exc, template_path)
        if isinstance(exc, sandbox.OverBudget | MemoryError):
            bound = str(exc) or f"it needs more than {sandbox.MEMORY_HEADROOM >> 30} GiB of memory to render"
            raise ConfigError([f"{where}: report.template: {bound} (the bounds of docs/report.md)"]) from None
        raise ConfigError([f"{where}: report.template: {type(exc).__name__}: {exc}"]) from None


def _repo_loader(directory: Path) -> Any:
    """A FileSystemLoader for the repo's templates whose includes stay in `directory`: one that is a
    symlink out of it, or in git's or DVC's own state (`.git/config`), is not found (never read: its content
    would be rendered into the comment)."""
    import jinja2

    from mlci.core.fsutil import outside, private_state

    class RepoLoader(jinja2.FileSystemLoader):
        def get_source(self, environment: jinja2.Environment, template: str) -> Any:
            pieces = jinja2.loaders.split_template_path(template)
            if outside(directory, directory.joinpath(*pieces)) is not None:
                raise jinja2.TemplateNotFound(template, f"{template!r} leads out of the template's directory")
            if private_state(directory, directory.joinpath(*pieces)):
                raise jinja2.TemplateNotFound(template, f"{template!r} is in git's or DVC's own state (.git, .dvc)")
            return super().get_source(environment, template)

    return RepoLoader(str(directory))


def _check_template(path: Path) -> None:
    if not path.is_file():
        raise ConfigError([f"{path}: report.template: " + ("not a file" if path.exists() else "not found")])
    try:
        path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: report.template: not UTF-8 (byte {exc.start})"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: report.template: cannot read it ({exc.strerror})"]) from None


def _template_frame(exc: BaseException, path: Path) -> str:
    """`file:line` of the innermost template frame of a traceback (Jinja rewrites the frames of template
    code to template lines and marks them), so an error in an included template names that one."""
    found = str(path)
    tb = exc.__traceback__
    while tb is not None:
        if "__jinja_exception__" in tb.tb_frame.f_globals:
            found = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    return found


MAX_VALUE = 200  # characters of a non-numeric value shown in a table cell


def _fmt(value: Any, digits: int) -> str:
    """A metric or param value for a table cell: numbers as numbers, anything else (strings, lists, objects)
    as JSON in a code span, so no value can be Markdown or HTML."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    if isinstance(value, int):
        if abs(value) >= 10**16:
            return format(decimal.Decimal(value), f".{digits}g")  # beyond a float: no 400-digit cell
        return str(value)
    shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    if len(shown) > MAX_VALUE:  # a long feature list in params.yaml: one readable cell, not 50 KB of comment
        shown = f"{shown[:MAX_VALUE]}… ({len(shown)} characters)"
    return code(shown)


def _change(m: Change, digits: int) -> str:
    if m.old is None:
        return "new"
    d = m.diff
    if d is None:
        return "" if m.old == m.new else "changed"
    rel = m.relative
    return f"{d:+.{digits}g}" + (f" ({rel:+.2%})" if rel is not None else "")


def _arrow(m: Change, gate: Gate | None) -> str:
    d = m.diff
    if d is None or d == 0:
        return "🆕" if m.old is None else ""
    improved = (d > 0) == (direction.better(m.address, gate.better if gate else None) == "higher")
    return ("⬆️" if d > 0 else "⬇️") + (" 🟢" if improved else " 🔴")
