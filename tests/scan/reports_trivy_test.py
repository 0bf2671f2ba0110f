"""The reports of a real scan: the real trivy 0.76 on a small repository (a Dockerfile running as root, a file
holding a GitHub token and an AWS key; secret and misconfig need no DB), judged by the real policy, in all four
formats against their schemas. trivy's CycloneDX SBOM of the same tree passes mlci's CycloneDX check, and
broken SBOMs each give a problem naming where."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from mlci.core.errors import EnvironmentProblem
from mlci.scan import policy
from mlci.scan.findings import ScanOutput
from mlci.scan.reports import gitlab, sarif, summary
from mlci.scan.reports.cyclonedx import validate_cyclonedx
from mlci.scan.reports.markdown import markdown
from mlci.scan.settings import ScanSettings
from tests.scan import reports_support as rs

TOKEN = "ghp_" + "A1b2C3d4" * 4 + "Zz99"  # GitHub's token format: trivy's github-pat rule
AWS_KEY = "AKIA" + "QWERTYUIOPASDFGH"


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scan") / "repo"  # trivy skips paths with "test" in them only inside the tree
    (root / "app").mkdir(parents=True)
    (root / "Dockerfile").write_text("FROM debian:12\nUSER root\nRUN apt-get update\n")
    (root / "app" / "settings.py").write_text(f'token = "{TOKEN}"\naws_access_key_id = {AWS_KEY}\n')
    (root / "requirements.txt").write_text("requests==2.32.4\n")
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("trivy-cache")


def test_a_real_trivy_scan_in_every_format(tree: Path, cache: Path) -> None:
    report = json.loads(rs.trivy_fs(tree, cache, "--scanners", "secret,misconfig", "--format", "json"))
    found = rs.trivy_findings(report)
    assert {f.id for f in found} >= {"github-pat", "aws-access-key-id", "DS-0002"}
    output = ScanOutput(target=str(tree), findings=tuple(found), trivy_version=report["Trivy"]["Version"],
                        scanners=("secret", "misconfig"))
    verdict = policy.judge(output, ScanSettings(), None, now=rs.NOW)
    assert not verdict.passed
    docs = {"summary": summary.summary(verdict), "sarif": sarif.sarif(verdict),
            "gitlab": gitlab.container_scanning(verdict, started=rs.NOW, finished=rs.NOW, image="repo")}
    assert rs.problems(rs.SUMMARY, docs["summary"]) == []
    assert rs.problems(rs.SARIF, docs["sarif"]) == []
    assert rs.problems(rs.GITLAB, docs["gitlab"]) == []
    assert docs["gitlab"]["vulnerabilities"] == []  # secrets and misconfigurations are not container scanning's
    text = markdown(verdict)
    page = rs.assert_inert(text)
    for shown in (text, *(json.dumps(d) for d in docs.values())):
        assert TOKEN not in shown and AWS_KEY not in shown and TOKEN[4:20] not in shown
    pat = next(r for r in docs["sarif"]["runs"][0]["results"] if r["ruleId"] == "github-pat")
    assert pat["locations"][0]["physicalLocation"] == {"artifactLocation": {"uri": "app/settings.py"},
                                                       "region": {"startLine": 1}}
    assert 'token = "****' in pat["message"]["text"]  # trivy's masked match
    assert any(c.startswith('token = "****') for c in page.codes)
    assert docs["summary"]["counts"]["failing"]["CRITICAL"] == 2 and docs["summary"]["trivy_version"] == "0.76.0"


def test_trivy_cyclonedx_sbom_passes_and_broken_ones_name_the_problem(tree: Path, cache: Path) -> None:
    text = rs.trivy_fs(tree, cache, "--format", "cyclonedx")
    sbom = json.loads(text)
    assert sbom["specVersion"] == "1.7" and validate_cyclonedx(text) == []
    assert any(c.get("name") == "requests" for c in sbom.get("components", []))
    broken = dict(sbom, version="one", components=[{"name": "x"}, *sbom["components"]])
    found = validate_cyclonedx(json.dumps(broken))
    assert "$.version: 'one' is not of type 'integer'" in found
    assert "$.components[0]: 'type' is a required property" in found
    assert validate_cyclonedx(json.dumps(dict(sbom, specVersion="9.9")))[0].startswith('specVersion "9.9" is not')
    assert validate_cyclonedx(text[:-40])[0].startswith("not JSON: ")
    assert validate_cyclonedx('{"bomFormat": "SPDX"}') == ['not a CycloneDX document: "bomFormat" is not "CycloneDX"']
    many = dict(sbom, components=[{"bad": i} for i in range(50)])
    listed = validate_cyclonedx(json.dumps(many))
    assert len(listed) == 21 and listed[-1].startswith("... and ")


def test_without_the_validator_the_check_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cyclonedx.validation.json", None)  # what an install without mlci[scan] has
    with pytest.raises(EnvironmentProblem, match=r"pip install 'mlci\[scan\]'"):
        validate_cyclonedx('{"bomFormat": "CycloneDX", "specVersion": "1.7"}')
