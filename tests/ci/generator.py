"""scripts/ci-templates as a module (it is a script without a .py suffix), and the files it generates."""
from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from tests.testing.repos import ROOT

SCRIPT = ROOT / "scripts" / "ci-templates"
COMPONENTS = sorted((ROOT / "templates").glob("*.yml"))
PLAIN = [ROOT / ".gitlab-ci" / "mlci.yml", ROOT / ".gitlab-ci" / "ml-pipeline.gitlab-ci.yml"]


def load_generator() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("mlci_ci_templates", str(SCRIPT))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def documents(path: Path) -> list[Any]:
    """The YAML documents of a template: one for a plain include, `spec:` then the jobs for a component."""
    return list(yaml.safe_load_all(path.read_text(encoding="utf-8")))


def jobs_document(path: Path) -> dict[str, Any]:
    docs = documents(path)
    body: dict[str, Any] = docs[-1]
    return body
