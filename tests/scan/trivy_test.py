"""mlci.scan.trivy against the real trivy 0.76 on the fixture DB (tests/testing/trivydb.py): what it finds in an
image mlci built and in a repository, that a secret only ever appears masked, that nothing from the working
directory or TRIVY_* changes what is reported, and that every way trivy can be missing, old, hung or broken
is exit 3 with one line."""
from __future__ import annotations

import datetime
import json
import os
import secrets
import string
import sys
import time
from pathlib import Path

import pytest

from mlci.core import proc
from mlci.core.errors import EnvironmentProblem, ExitCode
from mlci.scan import trivy
from mlci.scan.findings import Finding
from mlci.scan.settings import ScanSettings, scan_problems
from mlci.scan.targets import prepare_image
from tests.testing.scanimage import TAG, BuiltImage, tiny_image
from tests.testing.trivydb import DEBIAN_12, PIP, TINYDEP, Advisory, TrivyDb, make_db, write_db


def _settings(db: TrivyDb | Path, **changes: object) -> ScanSettings:
    cache = db.cache_dir if isinstance(db, TrivyDb) else db
    return ScanSettings(**{"cache_dir": str(cache), "scanners": ("vuln",), **changes})  # type: ignore[arg-type]


def _keys(findings: tuple[Finding, ...], kind: str = "vulnerability") -> set[tuple[object, ...]]:
    return {(f.id, f.package, f.version, f.fixed_version, f.status, f.severity, f.path)
            for f in findings if f.kind == kind}


def _aws_key() -> str:
    return "AKIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))


def _fake_trivy(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_an_image_mlci_built_reports_the_seeded_debian_and_pip_advisories(
        trivy_db: TrivyDb, vulnerable_image: BuiltImage, tmp_path: Path) -> None:
    scanner = trivy.find_trivy(_settings(trivy_db))
    with prepare_image(vulnerable_image.reference) as image:
        output = trivy.scan_image(scanner, image, sbom=tmp_path / "sbom.json", report=tmp_path / "trivy.json")
    openssl = "3.0.20-1~deb12u2"  # libssl3 and openssl in the base, both of SOURCE openssl
    site = "opt/mlci/site-packages/tinydep-1.0.dist-info/METADATA"
    assert _keys(output.findings) == {
        ("CVE-2099-0001", "libssl3", openssl, "3.0.99-1~deb12u1", "fixed", "CRITICAL", None),
        ("CVE-2099-0001", "openssl", openssl, "3.0.99-1~deb12u1", "fixed", "CRITICAL", None),
        ("CVE-2099-0003", "zlib1g", "1:1.2.13.dfsg-1", None, "affected", "HIGH", None),  # unfixed
        ("GHSA-test-tiny-dep1", "tinydep", "1.0", "1.1", "fixed", "HIGH", site),
        ("GHSA-test-tiny-unfx", "tinydep", "1.0", None, "affected", "MEDIUM", site),  # unfixed
    }  # CVE-2099-0002 was fixed before the base's openssl; no filler package exists
    assert (output.target, output.digest, output.os, output.trivy_version) == (
        vulnerable_image.reference, vulnerable_image.digest, vulnerable_image.os, "0.76.0")
    assert output.db is not None and output.db.updated_at == trivy_db.updated_at
    assert output.scanners == ("vuln",)
    os_targets = {f.target for f in output.findings if f.package == "zlib1g"}
    assert os_targets == {f"{vulnerable_image.reference} ({vulnerable_image.os})"}  # never the scratch path
    tinydep = next(f for f in output.findings if f.id == "GHSA-test-tiny-dep1")
    assert (tinydep.purl, tinydep.data_source, tinydep.title) == ("pkg:pypi/tinydep@1.0", "ghsa",
                                                                  "tinydep runs code it should not")
    assert len(TINYDEP.description) > 4096 and tinydep.detail == TINYDEP.description[:1000]  # from an overflow page
    sbom = json.loads((tmp_path / "sbom.json").read_text())
    assert sbom["bomFormat"] == "CycloneDX" and sbom["specVersion"] == "1.7"
    assert sbom["metadata"]["component"]["name"] == vulnerable_image.reference
    purls = {c.get("purl") for c in sbom["components"]}
    assert "pkg:pypi/tinydep@1.0" in purls
    assert f"pkg:deb/debian/libssl3@{openssl}?arch=amd64&distro={vulnerable_image.os.replace(' ', '-')}" in purls
    labels = {p["name"] for p in sbom["metadata"]["component"]["properties"]}
    assert "aquasecurity:trivy:Labels:org.opencontainers.image.revision" in labels  # mlci's labels kept
    kept = (tmp_path / "trivy.json").read_text()
    assert json.loads(kept)["ArtifactName"] == vulnerable_image.reference
    for scratch in ("mlci-scan-", "mlci-trivy-", "debootstrap"):  # no scratch path; no history (nor ENV) kept
        assert scratch not in kept and scratch not in (tmp_path / "sbom.json").read_text()


def test_a_requirements_file_in_a_repo_reports_its_advisories_with_their_lines(trivy_db: TrivyDb,
                                                                              tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    # zz-filler-0299 sorts last among 150 pip packages: found only through the DB's branch pages
    (repo / "requirements.txt").write_text("# pinned\ntinydep==1.0\nzz-filler-0299==0.5\nnot-in-the-db==1.0\n")
    output = trivy.scan_fs(trivy.find_trivy(_settings(trivy_db)), repo, sbom=tmp_path / "sbom.json")
    assert {(f.id, f.package, f.path, f.line, f.severity, f.fixed_version) for f in output.findings} == {
        ("GHSA-test-tiny-dep1", "tinydep", "requirements.txt", 2, "HIGH", "1.1"),
        ("GHSA-test-tiny-unfx", "tinydep", "requirements.txt", 2, "MEDIUM", None),
        ("CVE-2098-00299", "zz-filler-0299", "requirements.txt", 3, "LOW", "1"),
    }
    assert (output.target, output.digest, output.os) == ("repo", None, None)
    sbom = json.loads((tmp_path / "sbom.json").read_text())
    assert sbom["metadata"]["component"]["name"] == "repo"
    assert {c.get("purl") for c in sbom["components"]} >= {"pkg:pypi/tinydep@1.0", "pkg:pypi/not-in-the-db@1.0"}


def test_a_clean_repo_has_no_findings_and_a_fresh_db_is_no_condition(trivy_db: TrivyDb, tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "requirements.txt").write_text("tinydep==9.9.9\n")  # past every range
    output = trivy.scan_fs(trivy.find_trivy(_settings(trivy_db, scanners=("vuln", "secret"))), tmp_path / "repo")
    assert output.findings == () and output.scanners == ("vuln", "secret")


def test_a_secret_is_found_and_only_its_masked_match_is_kept(trivy_db: TrivyDb, tmp_path: Path) -> None:
    key = _aws_key()
    repo = tmp_path / "repo"  # trivy's allow-rules see `config/settings.py`, not tmp_path's test_* directory
    (repo / "config").mkdir(parents=True)
    (repo / "config" / "settings.py").write_text(f'aws_access_key_id = "{key}"\nregion = "eu-west-1"\n')
    (repo / "tests").mkdir()
    (repo / "tests" / "conf.py").write_text(f'aws_access_key_id = "{key}"\n')  # allow-rule "tests": not reported
    (repo / "Dockerfile").write_text("FROM debian:12\nRUN apt-get update\n")
    settings = _settings(trivy_db, scanners=("secret", "misconfig", "model"))
    output = trivy.scan_fs(trivy.find_trivy(settings), repo, report=tmp_path / "trivy.json",
                           sbom=tmp_path / "sbom.json")
    found = [f for f in output.findings if f.kind == "secret"]
    assert [(f.id, f.severity, f.path, f.line) for f in found] == [
        ("aws-access-key-id", "CRITICAL", "config/settings.py", 1)]
    assert found[0].detail == 'aws_access_key_id = "' + "*" * 20 + '"'
    assert key not in repr(output)
    for written in ("trivy.json", "sbom.json"):
        assert key not in (tmp_path / written).read_text()
    misconfigurations = {f.id.replace("-", ""): f for f in output.findings if f.kind == "misconfiguration"}
    assert {"DS0002", "DS0017"} <= set(misconfigurations)  # root user; `RUN apt-get update` alone (line 2)
    assert misconfigurations["DS0017"].line == 2 and misconfigurations["DS0017"].path == "Dockerfile"
    assert {f.status for f in misconfigurations.values()} == {"FAIL"}  # passed checks are not findings
    assert output.db is None and output.scanners == ("secret", "misconfig")


def test_secrets_in_an_images_layers_and_config_stay_masked_in_every_output(trivy_db: TrivyDb,
                                                                          tmp_path: Path) -> None:
    in_layer, in_env = _aws_key(), _aws_key()
    tiny_image(tmp_path / "image", {"app/settings.py": f'key = "{in_layer}"\n'.encode()},
               config={"Env": [f"AWS_ACCESS_KEY_ID={in_env}"], "Labels": {"org.opencontainers.image.title": "t"}})
    scanner = trivy.find_trivy(_settings(trivy_db, scanners=("secret", "misconfig")))
    with prepare_image(f"oci:{tmp_path / 'image'}:{TAG}") as image:
        output = trivy.scan_image(scanner, image, report=tmp_path / "trivy.json", sbom=tmp_path / "sbom.json")
    reference = f"oci:{tmp_path / 'image'}:{TAG}"
    assert sorted((f.id, f.target, f.path, f.detail) for f in output.findings if f.kind == "secret") == [
        ("aws-access-key-id", "/app/settings.py", "/app/settings.py", 'key = "' + "*" * 20 + '"'),
        ("aws-access-key-id", f"{reference} (image config)", None, '  "AWS_ACCESS_KEY_ID=' + "*" * 20 + '"')]
    written = (tmp_path / "trivy.json").read_text() + (tmp_path / "sbom.json").read_text() + repr(output)
    assert in_layer not in written and in_env not in written
    assert "org.opencontainers.image.title" not in written  # the config had a secret: its labels are not kept


def test_symlinks_out_of_a_repo_are_never_read(trivy_db: TrivyDb, tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "creds.py").write_text(f'aws_access_key_id = "{_aws_key()}"\n')
    (tmp_path / "outside" / "requirements.txt").write_text("tinydep==1.0\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "creds.py").symlink_to("../outside/creds.py")
    (repo / "requirements.txt").symlink_to(tmp_path / "outside" / "requirements.txt")
    (repo / "config").symlink_to("../outside")
    output = trivy.scan_fs(trivy.find_trivy(_settings(trivy_db, scanners=("vuln", "secret"))), repo)
    assert output.findings == ()


def test_neither_the_working_directory_nor_trivy_variables_change_what_is_reported(
        trivy_db: TrivyDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "requirements.txt").write_text("tinydep==1.0\n")
    (repo / "trivy.yaml").write_text("severity: [CRITICAL]\nvulnerability:\n  ignore-unfixed: true\n")
    (repo / ".trivyignore").write_text("GHSA-test-tiny-dep1\n")
    monkeypatch.chdir(repo)  # where a CI job runs mlci scan
    for name, value in {"TRIVY_SEVERITY": "CRITICAL", "TRIVY_IGNORE_UNFIXED": "true", "TRIVY_EXIT_CODE": "7",
                        "TRIVY_IGNOREFILE": str(repo / ".trivyignore"), "TRIVY_SKIP_FILES": "requirements.txt"}.items():
        monkeypatch.setenv(name, value)
    output = trivy.scan_fs(trivy.find_trivy(_settings(trivy_db)), repo)
    assert {f.id for f in output.findings} == {"GHSA-test-tiny-dep1", "GHSA-test-tiny-unfx"}


def test_an_old_db_is_used_offline_as_it_is_and_its_date_reported(vulnerable_image: BuiltImage,
                                                                   tmp_path: Path) -> None:
    old = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    db = make_db(tmp_path / "cache", updated_at=old)
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "requirements.txt").write_text("tinydep==1.0\n")
    output = trivy.scan_fs(trivy.find_trivy(_settings(db)), tmp_path / "repo")
    assert "GHSA-test-tiny-dep1" in {f.id for f in output.findings}
    assert output.db is not None and (output.db.version, output.db.updated_at) == (2, old)
    assert trivy.db_info(db.cache_dir).next_update == old + datetime.timedelta(days=1)


def test_a_db_seeded_otherwise_reports_otherwise(tmp_path: Path) -> None:
    write_db(tmp_path / "cache", [Advisory(PIP, "Tiny_Dep", "GHSA-only-this", "LOW", vulnerable="<2"),
                                  Advisory(DEBIAN_12, "zlib", "CVE-2099-7777", "CRITICAL", fixed="1:9")],
             datetime.datetime.now(datetime.UTC))
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "requirements.txt").write_text("TINY_DEP==1.0\ntinydep==1.0\n")  # names normalised
    output = trivy.scan_fs(trivy.find_trivy(_settings(tmp_path / "cache")), tmp_path / "repo")
    assert {(f.id, f.package, f.severity) for f in output.findings} == {("GHSA-only-this", "TINY_DEP", "LOW")}


# --- exit 3, one line ------------------------------------------------------------------------------------

def _one_line_exit_3(error: pytest.ExceptionInfo[EnvironmentProblem]) -> str:
    message = str(error.value)
    assert error.value.exit_code == ExitCode.ENVIRONMENT
    assert "\n" not in message and "Traceback" not in message and len(message) < 600, message
    return message


def test_a_missing_binary_names_where_it_was_looked_for(trivy_db: TrivyDb, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EnvironmentProblem) as error:
        trivy.find_trivy(_settings(trivy_db, trivy=str(tmp_path / "bin" / "trivy")))
    assert _one_line_exit_3(error).startswith(f"trivy not found: scan.trivy is '{tmp_path}/bin/trivy'")
    monkeypatch.setenv("MLCI_TRIVY", "no-such-trivy")
    with pytest.raises(EnvironmentProblem) as error:
        trivy.find_trivy(_settings(trivy_db))
    assert "MLCI_TRIVY is 'no-such-trivy'" in _one_line_exit_3(error)  # no fallback to another trivy


def test_mlci_trivy_and_the_setting_choose_the_binary(trivy_db: TrivyDb, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_trivy(tmp_path / "trivy", 'echo "Version: 0.99.1"\n')
    monkeypatch.setenv("MLCI_TRIVY", str(fake))
    found = trivy.find_trivy(_settings(trivy_db))
    assert (found.path, found.version) == (str(fake), "0.99.1")
    real = Path(sys.executable).parent / "trivy"
    assert trivy.find_trivy(_settings(trivy_db, trivy=str(real))).version == "0.76.0"  # the setting beats the env
    monkeypatch.delenv("MLCI_TRIVY")
    assert trivy.find_trivy(_settings(trivy_db)).path == str(real)  # beside mlci's Python


def test_a_too_old_or_foreign_binary_is_refused_at_start(trivy_db: TrivyDb, tmp_path: Path) -> None:
    old = _fake_trivy(tmp_path / "trivy-old", 'echo "Version: 0.49.1"\n')
    with pytest.raises(EnvironmentProblem) as error:
        trivy.find_trivy(_settings(trivy_db, trivy=str(old)))
    assert _one_line_exit_3(error) == (f"{old} is trivy 0.49.1; mlci needs 0.53.0 or later (`pip install "
                                       "mlci[scan]` pins 0.76, or set scan.trivy)")
    foreign = _fake_trivy(tmp_path / "not-trivy", 'echo "hello"\n')
    with pytest.raises(EnvironmentProblem) as error:
        trivy.find_trivy(_settings(trivy_db, trivy=str(foreign)))
    assert "named no version ('hello'): is it trivy?" in _one_line_exit_3(error)


def test_offline_without_a_db_says_how_to_mirror_one(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    scanner = trivy.find_trivy(_settings(tmp_path / "empty"))
    with pytest.raises(EnvironmentProblem) as error:
        trivy.scan_fs(scanner, tmp_path / "repo")
    message = _one_line_exit_3(error)
    assert message.startswith(f"no trivy vulnerability DB in {tmp_path / 'empty'} (metadata.json missing)")
    assert "`trivy image --download-db-only --cache-dir D`" in message and "scan.cache_dir" in message
    write_db(tmp_path / "v1", [], datetime.datetime.now(datetime.UTC))
    metadata = tmp_path / "v1" / "db" / "metadata.json"
    metadata.write_text(metadata.read_text().replace('"Version": 2', '"Version": 1'))
    with pytest.raises(EnvironmentProblem) as error:
        trivy.scan_fs(trivy.find_trivy(_settings(tmp_path / "v1")), tmp_path / "repo")
    assert "DB schema version 1, trivy reads 2" in _one_line_exit_3(error)
    # secrets and misconfigurations need no DB
    assert trivy.scan_fs(trivy.find_trivy(_settings(tmp_path / "empty", scanners=("secret",))),
                         tmp_path / "repo").findings == ()


def test_a_cut_short_or_foreign_db_is_named_before_trivy_runs(tmp_path: Path) -> None:
    db = make_db(tmp_path / "cache")
    database = db.cache_dir / "db" / "trivy.db"
    whole = database.read_bytes()
    (tmp_path / "repo").mkdir()
    scanner = trivy.find_trivy(_settings(db))
    for data, problem in ((whole[:40000], f"truncated (40000 of {len(whole)} bytes)"),
                          (b"not a bolt file" * 1000, "not a bbolt database (no valid meta page)")):
        database.write_bytes(data)
        with pytest.raises(EnvironmentProblem) as error:
            trivy.scan_fs(scanner, tmp_path / "repo")
        assert _one_line_exit_3(error).startswith(f"{database}: {problem}: on a machine with internet run `trivy")
    meta = bytearray(whole)
    meta[20:24] = b"\0\0\0\0"  # meta page 0's version: bbolt takes meta page 1
    database.write_bytes(bytes(meta))
    assert trivy.db_info(db.cache_dir).updated_at == db.updated_at


def test_a_damaged_db_that_crashes_trivy_is_one_line_not_its_stack(tmp_path: Path) -> None:
    db = make_db(tmp_path / "cache")
    database = db.cache_dir / "db" / "trivy.db"
    data = bytearray(database.read_bytes())
    data[3 * 4096:] = bytes(len(data) - 3 * 4096)  # every page after the freelist zeroed: the size still fits
    database.write_bytes(bytes(data))
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "requirements.txt").write_text("tinydep==1.0\n")
    with pytest.raises(EnvironmentProblem) as error:
        trivy.scan_fs(trivy.find_trivy(_settings(db)), tmp_path / "repo")
    message = _one_line_exit_3(error)
    assert message.startswith("trivy fs repo failed (exit 2): trivy crashed: "), message  # a panic or a fault


def test_a_hung_trivy_is_stopped_at_the_timeout(trivy_db: TrivyDb, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    hung = _fake_trivy(tmp_path / "trivy", f'case "$1" in --version) echo "Version: 0.76.0"; exit 0;; esac\n'
                                           f'echo $$ > {pid_file}\nexec sleep 60\n')
    (tmp_path / "repo").mkdir()
    scanner = trivy.find_trivy(_settings(trivy_db, trivy=str(hung), timeout_seconds=1))
    started = time.monotonic()
    with pytest.raises(EnvironmentProblem) as error:
        trivy.scan_fs(scanner, tmp_path / "repo")
    assert time.monotonic() - started < 10
    assert _one_line_exit_3(error) == ("trivy fs repo: did not finish within 1 s (scan.timeout_seconds); raise it "
                                       "for a large image")
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


def test_trivys_own_deadline_is_the_same_one_line(trivy_db: TrivyDb, tmp_path: Path) -> None:
    # what trivy 0.76 prints when its --timeout passes (seen with --timeout 1s on the base image's secrets)
    fatal = ("2026-12-01T17:17:26Z\tFATAL\tFatal error\trun error: image scan error: scan error: scan failed: failed "
             "analysis: analyze error: pipeline error: failed to analyze layer (sha256:cc5a): walk error: failed to "
             "analyze var/lib/dpkg/info/libgpg-error0:amd64.shlibs: semaphore acquire: context deadline exceeded")
    late = _fake_trivy(tmp_path / "trivy", f'case "$1" in --version) echo "Version: 0.76.0"; exit 0;; esac\n'
                                           f"printf '%s\\n' '{fatal}' >&2\nexit 1\n")
    (tmp_path / "repo").mkdir()
    with pytest.raises(EnvironmentProblem) as error:
        trivy.scan_fs(trivy.find_trivy(_settings(trivy_db, trivy=str(late), timeout_seconds=60)), tmp_path / "repo")
    assert _one_line_exit_3(error) == ("trivy fs repo: did not finish within 60 s (scan.timeout_seconds); raise it "
                                       "for a large image")


def test_what_trivy_prints_when_it_fails_becomes_one_line(tmp_path: Path) -> None:
    real = str(Path(sys.executable).parent / "trivy")
    flag = proc.run([real, "fs", "--bogus", str(tmp_path)], check=False)
    assert flag.returncode != 0 and trivy.trivy_error(flag.stderr) == "unknown flag: --bogus"
    missing = proc.run([real, "image", "--input", str(tmp_path / "none"), "--cache-dir", str(tmp_path),
                        "--scanners", "secret", "--quiet"], check=False, cwd=tmp_path)
    problem = trivy.trivy_error(missing.stderr)
    assert missing.returncode != 0 and "\n" not in problem and len(problem) <= trivy.ERROR_CHARS
    assert problem.startswith("run error: image scan error:") and problem.endswith(
        f"unable to open {tmp_path}/none as an OCI Image: stat {tmp_path}/none/index.json: no such file or directory")


def test_offline_false_needs_a_mirror_and_passes_it(trivy_db: TrivyDb) -> None:
    refused = scan_problems(_settings(trivy_db, offline=False))
    assert [p for p in refused if p.startswith("scan.db_repository: scan.offline is false")], refused
    scanner = trivy.find_trivy(_settings(trivy_db, offline=False, db_repository="127.0.0.1:9/mirror/trivy-db:2"))
    flags = trivy.base_flags(scanner)
    assert flags[flags.index("--db-repository") + 1] == "127.0.0.1:9/mirror/trivy-db:2"
    assert "--skip-db-update" not in flags and "--skip-java-db-update" in flags  # no Java DB mirror named
    assert {"--offline-scan", "--skip-check-update", "--disable-telemetry", "--skip-version-check"} <= set(flags)


# --- trivy's JSON, hostile -------------------------------------------------------------------------------

def test_a_report_missing_or_mistyping_fields_is_read_as_far_as_it_goes() -> None:
    assert trivy.parse_report({}, "x").findings == ()  # a clean scan has no Results
    assert trivy.parse_report({"Results": "nope", "Metadata": []}, "x").os is None
    output = trivy.parse_report({"Metadata": {"OS": {"Family": "debian"}}, "Results": [
        None, "x", {"Target": 7, "Vulnerabilities": [{}, {"VulnerabilityID": "CVE-1", "Severity": "SEVERE",
                                                          "References": ["a", 3], "PkgIdentifier": []}]},
        {"Target": "a.env", "Class": "secret", "Secrets": [{"RuleID": "r", "Match": "TOKEN=abcdef", "Severity": "HIGH"},
                                                            {"Match": "TOKEN=******", "StartLine": "1"}]},
        {"Target": "main.tf", "Misconfigurations": [{"ID": "AVD-1", "Status": "PASS"},
                                                    {"AVDID": "AVD-2", "Status": "FAIL", "Severity": "low"}]},
    ]}, "x")
    assert output.os == "debian"
    assert [(f.kind, f.id, f.severity, f.target, f.detail, f.references, f.line) for f in output.findings] == [
        ("vulnerability", "unknown", "UNKNOWN", "x", "", (), None),
        ("vulnerability", "CVE-1", "UNKNOWN", "x", "", ("a",), None),
        ("secret", "r", "HIGH", "a.env", "(match withheld: not masked)", (), None),  # never an unmasked match
        ("secret", "unknown", "UNKNOWN", "a.env", "TOKEN=******", (), None),
        ("misconfiguration", "AVD-2", "LOW", "main.tf", "", (), None),
    ]
