"""The scaffold's files from the Jinja2 templates of `ci_templates/` (sandboxed, every name defined)."""
from __future__ import annotations

import math
import shlex
from pathlib import Path
from typing import Any

import yaml

from mlci.core.errors import EnvironmentProblem

_LINE_BREAKS = "\n\r\x85\u2028\u2029"


def templates_dir() -> Path:
    """`ci_templates/`: in the installed package (mlci/ci_templates, package data), else beside the package in a
    checkout of mlci."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "ci_templates", package.parent / "ci_templates"):
        if candidate.is_dir():
            return candidate
    raise EnvironmentProblem(f"ci_templates: not in {package} nor beside it; reinstall mlci")


class _Dumper(yaml.SafeDumper):
    """Strings with a line break or a character that is not printable go double-quoted (escaped), so that
    every value renders on one line."""


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = '"' if any(c in _LINE_BREAKS for c in data) or not data.isprintable() else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def yaml_value(value: Any) -> str:
    """A value as one line of YAML flow style (a scalar quoted when it must be: `'yes'`, `'1.0'`, `": "`)."""
    text = yaml.dump([value], Dumper=_Dumper, default_flow_style=True, width=math.inf, allow_unicode=True,
                     sort_keys=False).strip()
    if not (text.startswith("[") and text.endswith("]")) or "\n" in text:
        raise ValueError(f"{value!r} does not render as one line of YAML")
    return text[1:-1]


def render(template: str, /, **context: Any) -> str:
    """Render one template of ci_templates/ with `context`; a name the template uses but the context lacks is an
    error (StrictUndefined), never an empty string in a committed file."""
    import jinja2
    import jinja2.sandbox

    env = jinja2.sandbox.SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(templates_dir()), autoescape=False, keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["yaml"] = yaml_value
    env.filters["shell"] = shlex.quote
    return env.get_template(template).render(**context)
