"""scripts/ci-templates: the generated GitLab templates are what ci/gitlab-templates.yml says (a drift test),
a hand edit is caught, and the source's own rules are enforced before anything is written."""
from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import mlci
from tests.ci.generator import COMPONENTS, PLAIN, SCRIPT, jobs_document, load_generator
from tests.testing.repos import ROOT

GEN = load_generator()
GENERATED = [*PLAIN, *COMPONENTS, ROOT / "docs" / "templates.md"]


def _run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(root / "scripts" / "ci-templates"), *args], cwd=root,
                          capture_output=True, text=True, check=False)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of what the generator reads and writes (mlci itself linked: the version and config sections)."""
    for path in [SCRIPT, GEN.SOURCE, *GENERATED]:
        target = tmp_path / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    (tmp_path / "mlci").symlink_to(ROOT / "mlci")
    return tmp_path


def test_the_generated_files_are_up_to_date() -> None:
    done = _run(ROOT, "--check")
    assert done.returncode == 0, done.stderr


def test_a_hand_edit_fails_the_check_and_regenerating_repairs_it(tree: Path) -> None:
    edited = tree / ".gitlab-ci" / "ml-pipeline.gitlab-ci.yml"
    edited.write_text(edited.read_text().replace("mlci config check", "mlci config check || true"))
    orphan = tree / "templates" / "old-stage.yml"  # a component the source no longer has
    orphan.write_text("spec: {}\n---\nx: {script: [mlci x]}\n")
    done = _run(tree, "--check")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "ci-templates: .gitlab-ci/ml-pipeline.gitlab-ci.yml is stale: run .venv/bin/python scripts/ci-templates",
        "ci-templates: templates/old-stage.yml is stale: run .venv/bin/python scripts/ci-templates"]
    assert "|| true" in edited.read_text() and orphan.exists()  # --check writes nothing
    assert _run(tree).returncode == 0
    assert _run(tree, "--check").returncode == 0 and not orphan.exists()
    assert edited.read_text() == (ROOT / ".gitlab-ci" / "ml-pipeline.gitlab-ci.yml").read_text()


def test_a_source_edit_changes_every_form_and_the_docs(tree: Path) -> None:
    source = tree / "ci" / "gitlab-templates.yml"
    source.write_text(source.read_text().replace("    default: prod\n", "    default: production\n"))
    done = _run(tree, "--check")
    assert done.returncode == 1
    stale = {line.split()[1] for line in done.stderr.splitlines()}
    assert stale == {".gitlab-ci/mlci.yml", ".gitlab-ci/ml-pipeline.gitlab-ci.yml", "templates/ml-pipeline.yml",
                     "templates/promote.yml", "templates/bundle-export.yml", "templates/bundle-import.yml",
                     "docs/templates.md"}


def _problems(mutate: Any) -> str:
    source = yaml.safe_load(GEN.SOURCE.read_text().replace("{version}", mlci.__version__))
    broken = copy.deepcopy(source)
    mutate(broken)
    with pytest.raises(GEN.SourceError) as caught:
        GEN.check_source(broken)
    return str(caught.value)


@pytest.mark.parametrize("mutate, expected", [
    (lambda s: s["inputs"]["ci-image"].update(variable="MLCI_SCAN_IMAGE"),
     "inputs.ci-image: variable MLCI_SCAN_IMAGE is not MLCI_* or reads as a config override"),
    (lambda s: s["inputs"]["prod-environment"].update(default="Prod Env"),
     "inputs.prod-environment: default 'Prod Env' does not match the regex"),
    (lambda s: s["inputs"]["prod-environment"].update(type="number"),
     "inputs.prod-environment: default 'prod' is not a number"),
    (lambda s: s["inputs"]["stage"].update(options=["a", "b"], default="c"),
     "inputs.stage: default 'c' is not one of the options"),
    (lambda s: s["inputs"]["stage"].update(type="boolean", options=[True]),
     "inputs.stage: options need type string or number, not boolean"),
    (lambda s: s["inputs"]["ci-image"].update(type="map"),
     "inputs.ci-image: type 'map' is not one of"),
    (lambda s: s["inputs"]["needs"].update(type="string"),
     "inputs.needs: keyword 'needs' is not one of stage (string), needs (array) with that type"),
    (lambda s: s["inputs"]["needs"].update(keyword="tags"),
     "inputs.needs: keyword 'tags' is not one of"),
    (lambda s: s["inputs"]["needs"].update(default=[]),
     "inputs.needs: a keyword input takes its default from the component's jobs"),
    (lambda s: s["inputs"]["ci-image"].pop("default"),
     "inputs.ci-image: an input with a variable needs a default"),
    (lambda s: s["inputs"].update({"Bad_Name": {"variable": "MLCI_X", "default": "", "description": "d"}}),
     "inputs.Bad_Name: not a lower-case-with-hyphens name"),
    (lambda s: s["hidden"][".mlci-train"].update(body="script:\n  - mlci repro\n  - dvc push\n"),
     "hidden..mlci-train: the script must be exactly one `mlci` command"),
    (lambda s: s["hidden"][".mlci-scan"].update(body="script: [mlci scan]\nafter_script: [echo]\n"),
     "hidden..mlci-scan: no after_script"),
    (lambda s: s["caches"]["mlci"]["files"].append("params.yaml"),
     "caches.mlci: GitLab takes 1 or 2 files per cache key"),
    (lambda s: s["jobs"]["mlci-promote-stage"].update(script=["mlci promote", "curl http://x"]),
     "jobs.mlci-promote-stage: the script must be exactly one `mlci` command"),
    (lambda s: s["jobs"]["mlci-train"].update(pipelines=["mr", "nightly"]),
     "jobs.mlci-train: unknown condition nightly"),
    (lambda s: s["components"].update({f"c{i}": {"description": "d"} for i in range(25)}),
     "components: 35 > GitLab's 30 per project"),
])
def test_the_source_rules_are_enforced(mutate: Any, expected: str) -> None:
    assert expected in _problems(mutate)


def test_a_broken_source_exits_2_with_one_line_per_problem_and_writes_nothing(tree: Path) -> None:
    source = tree / "ci" / "gitlab-templates.yml"
    source.write_text(source.read_text().replace("variable: MLCI_CI_IMAGE", "variable: MLCI_IMAGE_CI"))
    before = {p: p.read_text() for p in tree.rglob("*.yml") if p.is_file()}
    done = _run(tree)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert re.match(r"ci-templates: ci/gitlab-templates.yml: inputs.ci-image: variable MLCI_IMAGE_CI ", done.stderr)
    assert {p: p.read_text() for p in before} == before


def test_the_job_image_is_pinned_to_this_version_and_overridable() -> None:
    source = GEN.load()
    assert source["inputs"]["ci-image"]["default"] == f"$CI_REGISTRY/mlci/mlci/ci:{mlci.__version__}"
    for path in PLAIN:
        assert yaml.safe_load(path.read_text())["variables"]["MLCI_CI_IMAGE"] == source["inputs"]["ci-image"][
            "default"], path.name
    for path in [*PLAIN, *COMPONENTS]:
        images = {str(job["image"]) for job in jobs_document(path).values() if isinstance(job, dict) and "image" in job}
        assert images == {"${MLCI_CI_IMAGE}"}, path.name  # one image, from the variable (an input sets it)
        assert "latest" not in path.read_text(), path.name


def test_no_input_variable_reads_as_a_config_override() -> None:
    """Every job loads mlci.yaml with MLCI_<SECTION>_<KEY> overrides: a template variable named like one would
    be an unknown key (exit 2) or silently override the file."""
    from mlci import settings
    from mlci.core import config

    variables = {spec["variable"]: "x" for spec in GEN.load()["inputs"].values() if "variable" in spec}
    problems: list[str] = []
    assert config.apply_env({}, settings.Config, variables, problems) == [] and problems == []


def _job(jobs: dict[str, Any], name: str) -> dict[str, Any]:
    job = jobs[name]
    return {**(_job(jobs, job["extends"]) if "extends" in job else {}), **job}


def test_the_caches_are_keyed_on_the_lock_files_and_written_only_by_the_jobs_that_fill_them() -> None:
    jobs = jobs_document(ROOT / ".gitlab-ci" / "ml-pipeline.gitlab-ci.yml")
    variables = jobs["variables"]
    assert variables["MLCI_CACHE_DIR"] == "$CI_PROJECT_DIR/.cache/mlci"
    assert variables["PIP_CACHE_DIR"] == "$CI_PROJECT_DIR/.cache/pip"
    written, read = set(), set()
    for name in (n for n, j in jobs.items() if not n.startswith(".") and isinstance(j, dict) and "script" in _job(
            jobs, n)):
        caches = _job(jobs, name).get("cache", [])
        assert len(caches) <= 4, name  # GitLab's limit per job
        for cache in caches:
            files = cache["key"]["files"]
            assert 1 <= len(files) <= 2 and all((ROOT / "example-model-repo" / f).is_file() for f in files), name
            assert cache["key"]["prefix"].startswith("mlci-")  # two caches on the same lock never share a key
            (written if cache["policy"] == "pull-push" else read).add((name, cache["paths"][0]))
    assert written == {("mlci-train", ".dvc/cache"), ("mlci-build", ".cache/pip"), ("mlci-build", ".cache/mlci")}
    assert ("mlci-data-test", ".dvc/cache") in read and ("mlci-promote-prod", ".dvc/cache") in read
    assert all(name not in {"mlci-config-check", "mlci-scan", "mlci-bundle-import"} for name, _ in written | read)
