"""The scan record: its file, its artifact attached to the image in the real registry (and a layout) and found
again by digest, the SBOM beside it found by the real trivy through the fallback index, the re-scan skip, and
hostile stored records."""
from __future__ import annotations

import dataclasses
import datetime
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from mlci.core import log
from mlci.core.errors import UsageError
from mlci.image.cache import ARTIFACT_TYPE as BUILD_CACHE_TYPE
from mlci.oci import referrers
from mlci.oci.copy import LayoutEndpoint, RegistryEndpoint, copy
from mlci.oci.layout import Layout
from mlci.oci.referrers import Blob
from mlci.oci.registry import Registry as Client
from mlci.scan import policy, record
from mlci.scan.findings import DbInfo, Finding, ScanOutput, output_to_json
from mlci.scan.record import RECORD_TYPE, SBOM_TYPE, RecordError, ScanRecord
from mlci.scan.settings import ScanSettings
from tests.testing.registry import Registry, access_log, blob_upload_count, push_random_image

REPO = "team/model"
NOW = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)
DB = DbInfo(version=2, updated_at=NOW - datetime.timedelta(hours=6))
SECRET_MATCH = "aws_secret_access_key = ****************************"
VULN = Finding(kind="vulnerability", id="CVE-2026-0001", severity="HIGH", title="requests leaks headers",
               target="requirements.txt", package="requests", version="2.5.0", fixed_version="2.6.0")
SECRET = Finding(kind="secret", id="aws-secret-access-key", severity="CRITICAL", title="AWS Secret Access Key",
                 target="app/settings.py", path="app/settings.py", line=3, detail=SECRET_MATCH)
LOW = dataclasses.replace(VULN, id="CVE-2026-0003", severity="LOW", title="a low one")
TRIVY = Path(sys.executable).parent / "trivy"


def _record(digest: str, *findings: Finding, now: datetime.datetime = NOW, image: str = "docker://r/team/model:v1",
            settings: ScanSettings | None = None) -> tuple[ScanRecord, ScanOutput]:
    output = ScanOutput(target=image, digest=digest, findings=findings, trivy_version="0.76.0", db=DB,
                        scanners=("vuln", "secret"))
    return record.from_verdict(policy.judge(output, settings or ScanSettings(), None, now=now), image), output


def _endpoint(reg: Registry) -> RegistryEndpoint:
    return RegistryEndpoint(Client(reg.host, plain_http=True), REPO)


def test_a_record_holds_the_verdict_and_no_finding_text(tmp_path: Path) -> None:
    digest = "sha256:" + "a" * 64
    failing, _ = _record(digest, VULN, SECRET, LOW)
    assert (failing.verdict, dict(failing.counts)) == ("fail", {"UNKNOWN": 0, "LOW": 1, "MEDIUM": 0, "HIGH": 1,
                                                                "CRITICAL": 1})
    path = tmp_path / "scan-record.json"
    record.write(failing, path)
    written = json.loads(path.read_text())
    assert written == {
        "format": 1, "image": "docker://r/team/model:v1", "digest": digest, "verdict": "fail",
        "counts": {"UNKNOWN": 0, "LOW": 1, "MEDIUM": 0, "HIGH": 1, "CRITICAL": 1},
        "db": {"version": 2, "updated_at": "2026-12-01T06:00:00Z"}, "trivy_version": "0.76.0",
        "policy_hash": policy.policy_hash(ScanSettings(), None), "scanners": ["vuln", "secret"],
        "scanned_at": "2026-12-01T12:00:00Z", "mlci_version": failing.mlci_version}
    text = path.read_text() + failing.to_bytes().decode()
    assert all(s not in text for s in ("CVE-2026", "requests", "AWS", "****", "app/settings.py"))
    assert record.read(path) == failing and record.parse(failing.to_bytes(), "blob") == failing
    assert _record(digest, LOW)[0].passed
    with pytest.raises(UsageError, match="digest"):
        record.from_verdict(policy.judge(ScanOutput(target="repo"), ScanSettings(), None, now=NOW))


def test_a_registered_secret_never_reaches_the_record() -> None:
    log.add_secret("hunter2-registry-password")  # a value mlci knows to be secret, wherever it shows up
    leaky, _ = _record("sha256:" + "b" * 64, image="docker://r/team/model:hunter2-registry-password")
    assert b"hunter2" not in leaky.to_bytes()


@pytest.mark.parametrize(("data", "problem"), [
    (b"\xff\xfe", "not JSON"), (b"[]", "not a JSON object"), (b'{"format": 2}', "format"),
    (None, "digest"), (None, "counts"), (None, "scanned_at"), (None, "verdict"), (None, "image"),
])
def test_a_stored_record_that_is_not_one_is_refused_in_one_line(data: bytes | None, problem: str) -> None:
    if data is None:
        body = _record("sha256:" + "c" * 64)[0].to_json()
        broken = {"digest": "sha256:../../etc", "counts": {"HIGH": -1}, "scanned_at": "2026-12-01T12:00:00",
                  "verdict": "maybe", "image": "x" * 5000}[problem]
        data = json.dumps({**body, problem: broken}).encode()
    with pytest.raises(RecordError) as raised:
        record.parse(data, "stored")
    assert problem in str(raised.value) and "\n" not in str(raised.value)


def test_records_are_attached_to_their_image_and_found_newest_first(registry: Registry,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    image, other, bare = (push_random_image(registry, REPO, t) for t in ("v1", "v2", "v3"))
    endpoint = _endpoint(registry)
    older, _ = _record(image, LOW, now=NOW - datetime.timedelta(days=3))
    newer, output = _record(image, VULN, SECRET)
    theirs, _ = _record(other, LOW)
    record.attach(older, endpoint)
    attached = record.attach(newer, endpoint, output=output)
    record.attach(theirs, endpoint)

    manifest = json.loads(endpoint.get_manifest(attached[0].digest).data)
    assert manifest["artifactType"] == RECORD_TYPE != BUILD_CACHE_TYPE
    assert manifest["subject"]["digest"] == image  # a referrer of the image, unlike a build-cache record
    assert attached[0].annotations[referrers.CREATED] == "2026-12-01T12:00:00Z"
    assert attached[0].annotations[record.VERDICT] == "fail"

    found = record.find(endpoint, image)
    assert found == [newer, older] and [r.verdict for r in found] == ["fail", "pass"]
    assert record.find(endpoint, other) == [theirs]
    assert record.find(endpoint, bare) == []
    stored = record.load_output(endpoint, found[0])
    assert stored is not None and output_to_json(stored) == output_to_json(output)
    assert record.load_output(endpoint, found[1]) is None

    # a record of `other` attached to `image`, and an artifact of the record's type that is not one: skipped
    subject = referrers.subject_of(endpoint, image)
    referrers.attach(endpoint, subject, RECORD_TYPE, [Blob(RECORD_TYPE, theirs.to_bytes())])
    referrers.attach(endpoint, subject, RECORD_TYPE, [Blob(RECORD_TYPE, b"\x00junk")])
    assert record.find(endpoint, image) == [newer, older]
    assert sum("skipped" in r.getMessage() for r in caplog.records) == 2
    with pytest.raises(UsageError, match="attached to a record of"):
        record.attach(theirs, endpoint, output=output)


def test_attaching_the_same_record_and_sbom_again_uploads_nothing(registry: Registry) -> None:
    image = push_random_image(registry, REPO)
    endpoint = _endpoint(registry)
    scan, output = _record(image, VULN)
    first = record.attach(scan, endpoint, sbom=b'{"bomFormat": "CycloneDX"}', output=output)
    index = f"/v2/{REPO}/manifests/sha256-{image[7:]}"
    index_puts = [e for e in access_log(registry) if e.method == "PUT" and e.target == index]
    uploads = blob_upload_count(registry, REPO)
    assert uploads > 0 and len(index_puts) == 2  # record, then SBOM
    assert record.attach(scan, _endpoint(registry), sbom=b'{"bomFormat": "CycloneDX"}', output=output) == first
    assert blob_upload_count(registry, REPO) == uploads
    assert [e for e in access_log(registry) if e.method == "PUT" and e.target == index] == index_puts
    assert [d.artifact_type for d in referrers.referrers(endpoint, image)] == [RECORD_TYPE, SBOM_TYPE]
    rescan, _ = _record(image, VULN, now=NOW + datetime.timedelta(days=1))  # a new DB: a new record, the same SBOM
    again = record.attach(rescan, endpoint, sbom=b'{"bomFormat": "CycloneDX", "serialNumber": "urn:uuid:2"}')
    assert again[1] == first[1] and again[0] != first[0]
    assert [d.artifact_type for d in referrers.referrers(endpoint, image)] == [RECORD_TYPE, SBOM_TYPE, RECORD_TYPE]


def _tiny_image_layer(text: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("etc/motd")
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text.encode()))
    return buffer.getvalue()


def _trivy(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    offline = ("--cache-dir", str(cache), "--skip-db-update", "--skip-java-db-update", "--offline-scan",
               "--skip-check-update", "--disable-telemetry", "--skip-version-check", "--quiet")
    return subprocess.run([str(TRIVY), *args[:1], *offline, *args[1:]], capture_output=True, text=True, timeout=120,
                          check=False)


def test_trivy_finds_the_sbom_through_the_fallback_index(registry: Registry, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "requirements.txt").write_text("mlci-probe-package==1.2.3\n")
    made = _trivy("fs", "--format", "cyclonedx", str(tree), cache=tmp_path / "cache")
    assert made.returncode == 0 and "mlci-probe-package" in made.stdout, made.stderr
    with_sbom, without = (push_random_image(registry, REPO, t, layers=[_tiny_image_layer(t)]) for t in ("a", "b"))
    endpoint = _endpoint(registry)
    record.attach(_record(with_sbom)[0], endpoint, sbom=made.stdout.encode())
    record.attach(_record(without)[0], endpoint)  # a record, but no SBOM

    for digest, expected in ((with_sbom, True), (without, False)):
        scanned = _trivy("image", "--sbom-sources", "oci", "--format", "cyclonedx", "--insecure",
                         f"{registry.host}/{REPO}@{digest}", cache=tmp_path / "cache")
        assert scanned.returncode == 0, scanned.stderr
        components = [c.get("name") for c in json.loads(scanned.stdout).get("components", [])]
        assert ("mlci-probe-package" in components) is expected, (digest, components)


def test_a_layout_keeps_records_too(registry: Registry, tmp_path: Path) -> None:
    image = push_random_image(registry, REPO, "v1")
    endpoint = LayoutEndpoint(Layout(tmp_path / "layout"))
    copy(_endpoint(registry), "v1", endpoint, None)
    scan, output = _record(image, VULN, image=f"oci:{tmp_path / 'layout'}")
    record.attach(scan, endpoint, sbom=b"{}", output=output)
    assert record.find(endpoint, image) == [scan]
    assert endpoint.get_manifest(None).digest == image  # `oci:DIR` still names the image


def test_a_rescan_is_skipped_only_with_the_same_db_policy_and_trivy() -> None:
    digest = "sha256:" + "d" * 64
    old, _ = _record(digest, now=NOW - datetime.timedelta(days=2))
    new, _ = _record(digest, LOW)
    stricter = policy.policy_hash(ScanSettings(severities=("LOW", "MEDIUM", "HIGH", "CRITICAL")), None)
    records = [old, new]
    assert record.reusable(records, 2, DB.updated_at, new.policy_hash, digest=digest) == new
    assert record.reusable(records, 2, DB.updated_at, new.policy_hash, trivy_version="0.76.0",
                           scanners=["secret", "vuln"]) == new
    assert record.reusable(records, 2, DB.updated_at + datetime.timedelta(hours=1), new.policy_hash) is None
    assert record.reusable(records, 3, DB.updated_at, new.policy_hash) is None
    assert record.reusable(records, 2, DB.updated_at, stricter) is None
    assert record.reusable(records, 2, DB.updated_at, None) == new  # any policy: the output is judged again
    assert record.reusable(records, 2, DB.updated_at, new.policy_hash, trivy_version="0.77.0") is None
    assert record.reusable(records, 2, DB.updated_at, new.policy_hash, scanners=["vuln"]) is None
    assert record.reusable(records, 2, DB.updated_at, new.policy_hash, digest="sha256:" + "e" * 64) is None
    assert record.reusable([], 2, DB.updated_at, new.policy_hash) is None


def test_a_rescan_reads_the_records_newest_first_only_until_one_is_reusable(registry: Registry) -> None:
    image = push_random_image(registry, REPO)
    endpoint = _endpoint(registry)
    history = []  # a scan a day with that day's DB; then two with today's: trivy 0.76, and newest, 0.75
    for days in range(3, 0, -1):
        output = ScanOutput(target="t", digest=image, trivy_version="0.76.0", scanners=("vuln", "secret"),
                            db=DbInfo(2, DB.updated_at - datetime.timedelta(days=days)))
        history.append(record.from_verdict(policy.judge(output, ScanSettings(), None,
                                                        now=NOW - datetime.timedelta(days=days))))
    wanted, output = _record(image, VULN, now=NOW - datetime.timedelta(hours=2))
    older_trivy = dataclasses.replace(_record(image, now=NOW - datetime.timedelta(hours=1))[0], trivy_version="0.75.0")
    for scan in (*history, wanted, older_trivy):
        record.attach(scan, endpoint, output=output if scan is wanted else None)
    records = {r.referrer.digest: r for r in record.find(endpoint, image) if r.referrer is not None}
    assert len(records) == 5
    arguments = (endpoint, image, 2, DB.updated_at)
    mark = len(access_log(registry))
    found = record.find_reusable(*arguments, trivy_version="0.76.0", scanners=("secret", "vuln"))
    assert found == wanted == record.reusable(records.values(), 2, DB.updated_at, None, digest=image,
                                              trivy_version="0.76.0", scanners=("secret", "vuln"))
    read = {e.target.rsplit("/", 1)[1] for e in access_log(registry)[mark:] if "/manifests/sha256:" in e.target}
    assert {records[d].scanned_at for d in read & set(records)} == {older_trivy.scanned_at, wanted.scanned_at}
    assert record.find_reusable(*arguments, trivy_version="0.77.0") is None
    assert record.find_reusable(endpoint, image, 2, DB.updated_at + datetime.timedelta(hours=1)) is None
    assert record.find_reusable(*arguments, scanners=("vuln",)) is None
