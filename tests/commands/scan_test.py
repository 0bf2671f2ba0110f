"""`mlci scan` as CI runs it: the real trivy on the fixture DB, an image built by mlci (in a layout and in the
real registry), a repository with --fs; the gate's exit codes, every report against its published schema,
the scan record attached and found again by digest, an unchanged digest judged again without scanning."""
from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

from mlci.oci.copy import LayoutEndpoint, RegistryEndpoint, copy, open_endpoint
from mlci.oci.layout import Layout
from mlci.oci.reference import parse
from mlci.scan import record
from mlci.scan.reports.cyclonedx import validate_cyclonedx
from tests.scan.reports_support import GITLAB, SARIF, SUMMARY, problems
from tests.testing import repos
from tests.testing.gitlab_ci_local import make_git_repo
from tests.testing.registry import Registry, access_log, plain_http
from tests.testing.scanimage import BuiltImage
from tests.testing.trivydb import OPENSSL, TINYDEP, ZLIB_UNFIXED, TrivyDb

REPORTS = {"--json-out": "scan.json", "--sarif-out": "scan.sarif", "--gitlab-out": "gl-cs.json",
           "--sbom-out": "sbom.cdx.json", "--md": "scan.md", "--record-out": "record.json"}


class _Payload:
    """Unpickling this runs a shell command: what a planted model file does."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, ("echo owned > /tmp/mlci-owned",)


def _repo(path: Path, scan: dict[str, Any], files: dict[str, bytes] | None = None) -> Path:
    path.mkdir(parents=True)
    (path / "mlci.yaml").write_text(json.dumps({"version": 1, "scan": scan}))
    for name, data in (files or {}).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    return make_git_repo(path)


def _layout(image: BuiltImage, dest: Path) -> Path:
    """A private copy of the session's image layout (blobs hard-linked): attaching writes into index.json."""
    shutil.copytree(image.layout, dest, copy_function=os.link)
    return dest


def _scan(repo: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    flags = [x for flag, name in REPORTS.items() for x in (flag, str(repo / name))]
    done = repos.run_mlci(repo, "scan", *args, *flags, env=env)
    return done.returncode, done.stdout, done.stderr


def test_an_image_fails_the_gate_with_every_report_valid_and_a_record_bound_to_its_digest(
        tmp_path: Path, vulnerable_image: BuiltImage, trivy_db: TrivyDb) -> None:
    layout = _layout(vulnerable_image, tmp_path / "image")
    repo = _repo(tmp_path / "repo", {"cache_dir": str(trivy_db.cache_dir)})
    code, out, err = _scan(repo, f"oci:{layout}:{vulnerable_image.tag}")
    assert code == 1, err
    assert out.startswith(f"FAIL: oci:{layout}:{vulnerable_image.tag}@{vulnerable_image.digest}")
    assert f"{OPENSSL.id} (CRITICAL, openssl" in err and "Traceback" not in err
    summary = json.loads((repo / "scan.json").read_text())
    assert problems(SUMMARY, summary) == []
    assert {f["id"] for f in summary["findings"]} >= {OPENSSL.id, TINYDEP.id, ZLIB_UNFIXED.id}
    assert problems(SARIF, json.loads((repo / "scan.sarif").read_text())) == []
    gitlab = json.loads((repo / "gl-cs.json").read_text())
    assert problems(GITLAB, gitlab) == [] and any(v["name"] for v in gitlab["vulnerabilities"])
    assert validate_cyclonedx((repo / "sbom.cdx.json").read_text()) == []
    assert OPENSSL.id in (repo / "scan.md").read_text()
    written = record.read(repo / "record.json")
    assert (written.digest, written.verdict) == (vulnerable_image.digest, "fail")
    found = record.find(LayoutEndpoint(Layout(layout)), vulnerable_image.digest)
    assert [r.policy_hash for r in found] == [written.policy_hash] and not found[0].passed


def test_exceptions_pass_the_gate_and_a_rescan_judges_the_stored_output_under_todays_policy(
        tmp_path: Path, vulnerable_image: BuiltImage, trivy_db: TrivyDb) -> None:
    layout = _layout(vulnerable_image, tmp_path / "image")
    accepted = {"cache_dir": str(trivy_db.cache_dir), "ignore_unfixed": True, "exceptions": [
        {"id": OPENSSL.id, "reason": "not reachable in the model server", "expires": "2099-12-31"},
        {"id": TINYDEP.id, "reason": "patched in our fork", "expires": "2099-12-31"}]}
    repo = _repo(tmp_path / "repo", accepted)
    reference = f"oci:{layout}:{vulnerable_image.tag}"
    code, out, err = _scan(repo, reference)
    assert code == 0, err
    assert out.startswith("pass: ") and "judged again" not in err
    again, _, err = _scan(repo, reference)
    assert again == 0 and "judged again under today's policy" in err, err
    assert "the scan record of" in err and "stands (same verdict, same policy)" in err
    assert len(record.find(LayoutEndpoint(Layout(layout)), vulnerable_image.digest)) == 1  # nothing new attached
    strict = json.loads((repo / "mlci.yaml").read_text())
    del strict["scan"]["exceptions"][0]
    (repo / "mlci.yaml").write_text(json.dumps(strict))
    code, _, err = _scan(repo, reference)
    assert code == 1 and "judged again" in err and OPENSSL.id in err  # no rescan, yet the new policy decides
    records = record.find(LayoutEndpoint(Layout(layout)), vulnerable_image.digest)
    assert {r.verdict for r in records} == {"pass", "fail"}
    code, _, err = _scan(repo, reference, "--rescan")
    assert code == 1 and "judged again" not in err


def test_a_registry_image_gets_its_record_attached_and_a_rescan_pulls_no_layer(
        tmp_path: Path, vulnerable_image: BuiltImage, trivy_db: TrivyDb, registry: Registry) -> None:
    target = parse(f"docker://{registry.host}/ml/credit-model:1.0")
    source, _ = open_endpoint(parse(vulnerable_image.reference))
    destination, _ = open_endpoint(target, plain_http=(registry.host,))
    copy(source, vulnerable_image.tag, destination, "1.0")
    repo = _repo(tmp_path / "repo", {"cache_dir": str(trivy_db.cache_dir), "ignore_unfixed": True,
                                     "severities": ["CRITICAL"]})
    env = {**plain_http(registry.host), "MLCI_IMAGE": str(target), "MLCI_IMAGE_DIGEST": vulnerable_image.digest}
    code, out, err = _scan(repo, env=env)  # the image handed on by the build job's dotenv
    assert code == 1 and f"@{vulnerable_image.digest}" in out, err
    assert isinstance(destination, RegistryEndpoint)
    assert [r.verdict for r in record.find(destination, vulnerable_image.digest)] == ["fail"]
    layers = {d.digest for d in Layout(vulnerable_image.layout).get_manifest(vulnerable_image.tag).blobs()}
    mark = len(access_log(registry))
    code, _, err = _scan(repo, env=env)
    assert code == 1 and "judged again" in err, err
    pulled = [e.target for e in access_log(registry)[mark:] if e.method == "GET" and "/blobs/sha256:" in e.target]
    assert not [p for p in pulled if p.rsplit("/", 1)[1] in layers], pulled


def test_a_repository_scan_finds_vulnerable_requirements_and_planted_models_with_and_without_extension(
        tmp_path: Path, trivy_db: TrivyDb) -> None:
    payload = pickle.dumps(_Payload(), protocol=4)
    repo = _repo(tmp_path / "repo", {"cache_dir": str(trivy_db.cache_dir)}, {
        "requirements.txt": b"tinydep==1.0\n", "models/model.pkl": payload, "models/weights": payload,
        "data/table.csv": b"a,b\n1,2\n"})
    flags = ["--json-out", str(tmp_path / "fs.json"), "--md", str(tmp_path / "fs.md")]
    done = repos.run_mlci(repo, "scan", "--fs", ".", *flags)
    assert done.returncode == 1, done.stderr
    summary = json.loads((tmp_path / "fs.json").read_text())
    failing = {(f["kind"], f.get("path") or f["target"]) for f in summary["findings"] if f["outcome"] == "fails"}
    assert ("model", "models/model.pkl") in failing and ("model", "models/weights") in failing, failing
    assert any(f["id"] == TINYDEP.id for f in summary["findings"])
    assert not Path("/tmp/mlci-owned").exists()  # scanned, never loaded
    assert repos.run_mlci(repo, "scan", "--fs", ".", "--gitlab-out", "x.json").returncode == 2


def test_no_image_is_skipped_and_missing_db_or_bad_policy_are_one_line(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo", {"cache_dir": str(tmp_path / "empty")})
    done = repos.run_mlci(repo, "scan", env={"MLCI_IMAGE": ""})
    assert done.returncode == 0 and done.stdout.startswith("skipped: no image")
    done = repos.run_mlci(repo, "scan", "--fs", ".")
    assert done.returncode == 3 and "no trivy vulnerability DB in" in done.stderr
    assert "--download-db-only" in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    (repo / "mlci.yaml").write_text("version: 1\nscan:\n  severities: [HIGH, severe]\n")
    done = repos.run_mlci(repo, "scan", "--fs", ".")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("mlci.yaml:3: scan.severities: unknown severity"), done.stderr


def test_the_example_repo_passes_a_repository_scan_and_a_planted_model_in_its_dvc_cache_fails_it(
        tmp_path: Path, trivy_db: TrivyDb) -> None:
    """--fs on the example repo: its lock file, Dockerfile and code against the fixture DB (nothing seeded
    for its packages), then a malicious object planted in its DVC cache (no extension) fails the gate."""
    repo = repos.example_repo(tmp_path / "credit-model")
    (repo / "mlci.yaml").write_text((repo / "mlci.yaml").read_text() + f"scan:\n  cache_dir: {trivy_db.cache_dir}\n")
    done = repos.run_mlci(repo, "scan", "--fs", ".", "--json-out", str(tmp_path / "fs.json"))
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "fs.json").read_text())
    assert summary["verdict"] == "pass" and set(summary["scanners"]) >= {"vuln", "secret", "misconfig", "model"}
    planted = repo / ".dvc" / "cache" / "files" / "md5" / "ab" / "cdef0123456789abcdef0123456789"
    planted.parent.mkdir(parents=True)
    planted.write_bytes(pickle.dumps(_Payload(), protocol=2))
    done = repos.run_mlci(repo, "scan", "--fs", ".", "--json-out", str(tmp_path / "fs.json"))
    assert done.returncode == 1 and "pickle:posix.system" in done.stderr, done.stderr
