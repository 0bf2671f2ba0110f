"""mlci as a user gets it: the built wheel (contents, declared dependencies) and every command's main path
run from a fresh venv (tests/testing/installed.py) on a copy of the example repo, with no dev venv on PATH."""
from __future__ import annotations

import ast
import collections
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from tests.sign.support import p256
from tests.testing import installed, repos
from tests.testing.images import wheelhouse

pytestmark = pytest.mark.wheel
PACKAGE = repos.ROOT / "mlci"


def _tracked_package_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "mlci"],
                            cwd=repos.ROOT, capture_output=True, text=True, check=True).stdout.split()
    return [name for name in listed if (repos.ROOT / name).is_file()]


def test_the_wheel_holds_the_whole_package_and_nothing_else(
        installed_mlci: Path, record_property: Callable[[str, object], None]) -> None:
    for step, seconds in installed.timings(installed_mlci).items():
        record_property(f"installed_mlci_{step}_seconds", round(seconds, 1))
    names = zipfile.ZipFile(installed.wheel(installed_mlci)).namelist()
    assert "mlci/report/templates/report.md.j2" in names
    assert sorted(set(_tracked_package_files()) - set(names)) == []  # every module and data file
    strays = [n for n in names if not n.startswith(("mlci/", "mlci-0.1.0.dist-info/"))
              or "__pycache__" in n or n.endswith(".pyc")]
    assert strays == []  # no tests/, example-model-repo/, scripts/ or build leftovers


def _requirements(requires: list[str]) -> dict[str, set[str]]:
    """Requirement names by extra ('' for the unconditional ones), from Requires-Dist lines."""
    by_extra: dict[str, set[str]] = {}
    for line in requires:
        name = re.split(r"[\s\[<>=!~;(]", line, maxsplit=1)[0].lower().replace("_", "-")
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)", line)
        by_extra.setdefault(extra.group(1) if extra else "", set()).add(name)
    return by_extra


def _third_party_imports() -> dict[str, Path]:
    """Top-level modules outside the stdlib that mlci imports anywhere (lazily or not), with one importer."""
    found: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            for name in names:
                top = name.split(".")[0]
                if top != "mlci" and top not in sys.stdlib_module_names:
                    found.setdefault(top, path)
    return found


def test_every_third_party_import_is_declared_and_installs_with_the_package(installed_mlci: Path) -> None:
    """In `dependencies`, or in an extra (whose absence the case below turns into one line naming it)."""
    probe = "import importlib.metadata as m, json; print(json.dumps(m.distribution('mlci').requires or []))"
    declared = _requirements(json.loads(subprocess.run(
        [str(installed_mlci / "python"), "-c", probe], capture_output=True, text=True, check=True,
        env=installed.env(installed_mlci)).stdout))
    providers = metadata.packages_distributions()  # the dev venv has every extra installed
    unconditional, problems = [], []
    for module, importer in sorted(_third_party_imports().items()):
        dists = {d.lower().replace("_", "-") for d in providers.get(module, [])}
        if dists & declared.get("", set()):
            unconditional.append(module)
        elif not any(dists & names for extra, names in declared.items() if extra not in ("", "test")):
            problems.append(f"{module} (imported by {importer.relative_to(repos.ROOT)}): in no dependency or extra")
    assert problems == []
    done = subprocess.run([str(installed_mlci / "python"), "-c", "import " + ", ".join(unconditional)],
                          capture_output=True, text=True, env=installed.env(installed_mlci), check=False)
    assert done.returncode == 0, done.stderr


MISSING_EXTRA_CASES = {
    "postgres": {"name": "warehouse", "dsn_env": "WAREHOUSE_DSN", "table": "scoring.applications"},
    "s3": {"name": "lake", "path": "s3://bucket/applications.csv"},
    "scan": {},  # test_a_missing_scan_extra_is_one_line_naming_it
}


def test_every_extra_has_a_missing_extra_case(installed_mlci: Path) -> None:
    probe = "import importlib.metadata as m; print(*m.distribution('mlci').metadata.get_all('Provides-Extra'))"
    extras = subprocess.run([str(installed_mlci / "python"), "-I", "-c", probe], capture_output=True, text=True,
                            check=True, env=installed.env(installed_mlci)).stdout.split()
    assert set(extras) - {"test"} == set(MISSING_EXTRA_CASES)


@pytest.mark.parametrize("extra", ["postgres", "s3"])
def test_a_missing_extra_is_one_line_naming_it(installed_mlci: Path, tmp_path: Path, extra: str) -> None:
    """The installed venv has no extras: using one is exit 3 with the pip command, never a traceback."""
    (tmp_path / "mlci.yaml").write_text(json.dumps({"version": 1, "data_tests": {"datasets": [
        {**MISSING_EXTRA_CASES[extra], "checks": [{"row_count": {"min": 1}}]}]}}))
    done = installed.run(installed_mlci, tmp_path, "data-test",
                         env_extra={"WAREHOUSE_DSN": "host=127.0.0.1 port=1 dbname=x"})
    assert done.returncode == 3, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and f"pip install 'mlci[{extra}]'" in done.stderr


def test_a_missing_scan_extra_is_one_line_naming_it(installed_mlci: Path, tmp_path: Path) -> None:
    """Without mlci[scan], the model-file scanner meets a pickle: exit 3 naming the extra (trivy not asked for)."""
    (tmp_path / "mlci.yaml").write_text(json.dumps({"version": 1, "scan": {"scanners": ["model"]}}))
    (tmp_path / "model").write_bytes(pickle.dumps(collections.OrderedDict(weights=[1.0]), protocol=4))  # a global
    done = installed.run(installed_mlci, tmp_path, "scan", "--fs", ".")
    assert done.returncode == 3, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "pip install 'mlci[scan]'" in done.stderr


def test_every_command_runs_from_the_installed_package(installed_mlci: Path, tmp_path: Path) -> None:
    repo = repos.example_repo(tmp_path / "credit-model")
    base = repos.git(repo, "rev-parse", "HEAD").strip()

    def mlci(*args: str, env: dict[str, str] | None = None) -> str:
        done = installed.run(installed_mlci, repo, *args, env_extra=env)
        assert done.returncode == 0 and "Traceback" not in done.stderr, f"mlci {args}: {done.stderr[-3000:]}"
        return done.stdout

    path = installed.env(installed_mlci)["PATH"]
    assert [shutil.which(tool, path=path) for tool in ("mlci", "dvc", "python")] == [
        str(installed_mlci / tool) for tool in ("mlci", "dvc", "python")]  # the stages' python too
    assert str(Path(sys.executable).parent) not in path.split(os.pathsep)  # no dev venv
    where = subprocess.run([str(installed_mlci / "python"), "-c", "import mlci; print(mlci.__file__)"], cwd=repo,
                           capture_output=True, text=True, env=installed.env(installed_mlci), check=True).stdout.strip()
    assert Path(where).is_relative_to(installed_mlci.parent) and not Path(where).is_relative_to(repos.ROOT)
    assert mlci("--version").strip() == f"mlci {installed.wheel(installed_mlci).name.split('-')[1]}"
    assert "mlci.yaml: ok" in mlci("config", "check")

    mlci("repro", "--summary-out", "summary.json")
    summary = json.loads((repo / "summary.json").read_text())
    assert summary["ok"] and summary["stages"]["train"] == "ran"  # trained by the venv's python and dvc
    assert repos.git(repo, "status", "--porcelain", "dvc.lock") == ""

    tested = mlci("data-test", "--junit", "junit.xml")
    assert re.search(r"\n(\d+) checks: \1 passed, 0 warned, 0 failed", tested), tested
    assert "<testsuite" in (repo / "junit.xml").read_text()

    report = mlci("report", "--dry-run", "--base", base)
    assert "## ✅ Model report: all gates passed" in report and "| `metrics.json:roc_auc` | min 0.75 |" in report
    assert report.count("```mermaid") == 2  # the plots, through the packaged template

    layout = tmp_path / "image"
    built = mlci("build", "--tag", "t1", env={
        "MLCI_IMAGE_NAME": f"oci:{layout}", "MLCI_IMAGE_PIP_ARGS": f"--no-index,--find-links,{wheelhouse()}",
        "MLCI_IMAGE_PYTHON": "3.11", "MLCI_IMAGE_LIBC": "glibc 2.36",  # a scratch base: the platform is named
        "SOURCE_DATE_EPOCH": "1700000000"}).strip()
    match = re.fullmatch(rf"oci:{re.escape(str(layout))}:t1@(sha256:[0-9a-f]{{64}})", built)
    assert match, built
    assert match[1] in [m["digest"] for m in json.loads((layout / "index.json").read_text())["manifests"]]
    manifest = json.loads((layout / "blobs" / "sha256" / match[1].removeprefix("sha256:")).read_text())
    assert len(manifest["layers"]) == 3  # dependencies (the example's lock), code, model

    # Across an air gap: a bundle of that image and the model's DVC object, verified, imported into a layout.
    keys = p256(tmp_path / "keys")
    config = yaml.safe_load((repo / "mlci.yaml").read_text())
    config.pop("data_tests")  # its file is relative to mlci.yaml's directory; this config lives elsewhere
    config["promote"] = {**config["promote"], "signing": {"key_file": str(keys.private)}, "gitops": {"gto": False},
                         "audit_log": str(tmp_path / "audit.jsonl"), "environments": {"airgap": {
                             "image": f"oci:{tmp_path / 'inside'}", "branches": ["*"], "require_scan": False,
                             "sign": False, "via": "bundle"}}}
    (tmp_path / "airgap.yaml").write_text(json.dumps(config))
    airgap = ("--config", str(tmp_path / "airgap.yaml"))
    bundle = tmp_path / "bundle.tar"
    assert mlci(*airgap, "bundle", "export", f"oci:{layout}:t1", "--env", "airgap", "--out", str(bundle)).strip() == (
        str(bundle))
    assert "verified:" in mlci("bundle", "verify", str(bundle), "--key", str(keys.public))
    imported = mlci(*airgap, "bundle", "import", str(bundle), "--env", "airgap", "--key", str(keys.public)).strip()
    assert imported == f"oci:{tmp_path / 'inside'}:t1@{match[1]}"
