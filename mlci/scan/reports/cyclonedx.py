"""trivy's CycloneDX SBOM checked against the published CycloneDX JSON schema of the version it declares
(trivy 0.76 writes 1.7), with cyclonedx-python-lib's strict validator, before it is uploaded or attached.

mlci writes every other report itself and proves them in its tests; the SBOM is written by whatever trivy
scan.trivy names (any version past the minimum), and GitLab's `reports:cyclonedx` and Dependency-Track refuse a
document off its schema only after the pipeline has moved on. So this runs in `mlci scan`, and the library
is a dependency of `mlci[scan]`. It is imported here, on first use: its JSON-schema format checkers cost about
a second to import."""
from __future__ import annotations

import json

from mlci.core import jsonsafe
from mlci.core.errors import EnvironmentProblem
from mlci.scan.reports.common import cut

SHOWN = 20  # problems listed; a broken generator can produce thousands of the same kind


def validate_cyclonedx(text: str) -> list[str]:
    """Why `text` is not a valid CycloneDX JSON document (`$.path: message` each; empty: valid)."""
    try:
        doc = jsonsafe.loads(text)
    except ValueError as exc:
        return [f"not JSON: {exc}"]
    if not isinstance(doc, dict) or doc.get("bomFormat") != "CycloneDX":
        return ['not a CycloneDX document: "bomFormat" is not "CycloneDX"']
    try:
        from cyclonedx.schema import SchemaVersion
        from cyclonedx.validation.json import JsonStrictValidator
    except ImportError:
        raise EnvironmentProblem("validating the CycloneDX SBOM needs cyclonedx-python-lib: "
                                 "pip install 'mlci[scan]'") from None
    declared = doc.get("specVersion")
    known = {v.to_version(): v for v in SchemaVersion if v >= SchemaVersion.V1_2}  # JSON exists from 1.2 on
    if not isinstance(declared, str) or declared not in known:
        return [f"specVersion {json.dumps(declared)} is not a CycloneDX version with a JSON schema "
                f"({', '.join(sorted(known))})"]
    errors = JsonStrictValidator(known[declared]).validate_str(text, all_errors=True)
    problems = [cut(f"{error.data.json_path}: {error.data.message}", 300) for error in errors or ()]
    if len(problems) > SHOWN:
        problems[SHOWN:] = [f"... and {len(problems) - SHOWN} more"]
    return problems
