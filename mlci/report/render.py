"""The report's Markdown, from a Jinja2 template (built-in, or the repo's own)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlci.report import mermaid
from mlci.report.baseline import Baseline
from mlci.report.diff import Change, Diff
from mlci.report.gates import Verdict
from mlci.report.settings import Gate, ReportSettings


def render(diff: Diff, verdicts: Sequence[Verdict], base: Baseline, head: str, settings: ReportSettings,
           sections: Sequence[str], template_path: Path | None) -> str:
    """Render the report body (without the sticky marker)."""
    import jinja2

    loader: jinja2.BaseLoader
    if template_path is not None:
        loader = jinja2.FileSystemLoader(str(template_path.parent))
        name = template_path.name
    else:
        loader = jinja2.PackageLoader("mlci.report", "templates")
        name = "report.md.j2"
    env = jinja2.Environment(loader=loader, autoescape=False, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    digits = settings.precision
    gates = settings.gates
    charts = [c for c in (mermaid.chart(p, [base.sha, "workspace"], settings.plot_points) for p in diff.plots)
              if c] if settings.plots == "mermaid" else []
    context: dict[str, Any] = {
        "metrics": diff.metrics, "params": diff.params,
        "changed_params": [p for p in diff.params if p.old != p.new],
        "gates": list(verdicts), "failed": [v for v in verdicts if not v.ok],
        "base": base, "head": head, "charts": charts, "sections": list(sections),
        "fmt": lambda v: _fmt(v, digits), "change": lambda m: _change(m, digits),
        "arrow": lambda m: _arrow(m, gates.get(m.address)),
    }
    return env.get_template(name).render(**context).strip() + "\n"


def _fmt(value: Any, digits: int) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


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
    better = (gate.better if gate else "higher") == "higher"
    improved = (d > 0) == better
    return ("⬆️" if d > 0 else "⬇️") + (" 🟢" if improved else " 🔴")
