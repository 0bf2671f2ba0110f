"""docs/report.md lists every CI variable the report's forge paths read, and nothing they do not."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The modules that read the CI environment for `mlci report`.
READERS = [*sorted((ROOT / "mlci" / "forge").glob("*.py")), ROOT / "mlci" / "report" / "baseline.py",
           ROOT / "mlci" / "commands" / "report.py"]
CI_NAME = re.compile(r"(CI|GITLAB|GITHUB|REQUESTS)_[A-Z0-9_]+|GITLAB_CI")


def _read_in_code() -> set[str]:
    """Whole string constants that name a CI variable (messages that merely mention one do not count)."""
    names = set()
    for path in READERS:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and CI_NAME.fullmatch(node.value):
                names.add(node.value)
    return names


def _listed_in_docs() -> set[str]:
    text = (ROOT / "docs" / "report.md").read_text()
    section = text.split("### CI variables", 1)[1].split("\n### ", 1)[0]
    table = re.search(r"(^\|.*\n)+", section, re.MULTILINE)
    assert table is not None
    return {name for row in table[0].splitlines() if row.startswith("| `")
            for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])}


def test_docs_list_exactly_the_ci_variables_the_code_reads() -> None:
    in_code, in_docs = _read_in_code(), _listed_in_docs()
    assert {"CI_MERGE_REQUEST_IID", "CI_PROJECT_ID", "CI_API_V4_URL", "CI_MERGE_REQUEST_DIFF_BASE_SHA",
            "CI_MERGE_REQUEST_TARGET_BRANCH_NAME", "GITHUB_REF", "GITHUB_EVENT_PATH", "GITHUB_BASE_REF",
            "GITLAB_TOKEN", "GITHUB_TOKEN"} <= in_code
    assert in_code - in_docs == set(), "read but not in docs/report.md's CI variables table"
    assert in_docs - in_code == set(), "in docs/report.md's table but not read"
