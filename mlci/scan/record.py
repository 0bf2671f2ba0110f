"""The scan record: what a scan of an image concluded, bound to the image manifest's digest, as a file and as
an OCI artifact attached to the image (a referrer: `subject` = the image manifest), so that promotion can ask
for "a passing record no older than N days made with the policy in force" and a re-scan can be skipped.

The record (`application/vnd.mlci.scan-record.v1+json`, one JSON object) holds the image reference and digest,
the verdict, counts by severity, the vulnerability DB's version and UpdatedAt, trivy's version, the policy hash,
the scanners, the scan time and mlci's version: no finding text, no secret. Its artifact may carry the scan's
output as a second layer (`application/vnd.mlci.scan-output.v1+json`: the findings as trivy reported them,
matches masked), so that an unchanged digest can be judged again under today's policy without scanning. The
CycloneDX SBOM is attached beside it as a referrer of its own (`application/vnd.cyclonedx+json`, config empty,
one layer of that media type: what `trivy image --sbom-sources oci` looks for).

A build-cache record (mlci/image/cache.py) is another thing: another artifactType, and no subject."""
from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlci import __version__
from mlci.core import jsonsafe, log
from mlci.core.errors import EnvironmentProblem, UsageError
from mlci.core.fsutil import atomic_write_json
from mlci.core.log import logger
from mlci.oci import referrers
from mlci.oci.copy import LayoutEndpoint, RegistryEndpoint
from mlci.oci.manifest import Descriptor, is_digest
from mlci.oci.referrers import Blob
from mlci.oci.smallblob import BlobInvalid, read_small
from mlci.scan.findings import SEVERITIES, ScanOutput, Severity, output_from_json, output_to_json
from mlci.scan.verdict import Verdict

RECORD_TYPE = "application/vnd.mlci.scan-record.v1+json"
OUTPUT_TYPE = "application/vnd.mlci.scan-output.v1+json"
SBOM_TYPE = "application/vnd.cyclonedx+json"  # trivy's CycloneDXArtifactType: the layer must have it too
FORMAT = 1
VERDICT = "io.mlci.scan.verdict"
POLICY = "io.mlci.scan.policy-hash"
DB_UPDATED = "io.mlci.scan.db-updated-at"
TRIVY = "io.mlci.scan.trivy-version"
MAX_RECORD = 64 << 10  # a record is under 1 KiB; anything larger is not one
MAX_OUTPUT = 64 << 20  # the findings of a large image
FIND_LIMIT = 64  # records read by find(), newest first by their `created` annotation
_TEXT_LIMIT = 2048  # any string field of a record

Endpoint = RegistryEndpoint | LayoutEndpoint


class RecordError(EnvironmentProblem):
    """A stored scan record that is not one (names where it was found and the field)."""


@dataclass(frozen=True)
class ScanRecord:
    """One scan's conclusion about one image digest. `referrer`: the artifact it was read from (find())."""

    image: str
    digest: str
    passed: bool
    counts: Mapping[Severity, int]
    policy_hash: str
    scanned_at: datetime.datetime
    db_version: int | None = None
    db_updated_at: datetime.datetime | None = None
    trivy_version: str | None = None
    scanners: tuple[str, ...] = ()
    mlci_version: str = __version__
    referrer: Descriptor | None = field(default=None, compare=False)

    @property
    def verdict(self) -> str:
        return "pass" if self.passed else "fail"

    def to_json(self) -> dict[str, Any]:
        """The record as JSON data (keys fixed, every severity counted)."""
        return {
            "format": FORMAT, "image": self.image, "digest": self.digest, "verdict": self.verdict,
            "counts": {s: int(self.counts.get(s, 0)) for s in SEVERITIES},
            "db": None if self.db_version is None or self.db_updated_at is None else
            {"version": self.db_version, "updated_at": _time(self.db_updated_at)},
            "trivy_version": self.trivy_version, "policy_hash": self.policy_hash, "scanners": list(self.scanners),
            "scanned_at": _time(self.scanned_at), "mlci_version": self.mlci_version,
        }

    def to_bytes(self) -> bytes:
        """The record's canonical bytes (sorted keys, no spaces; registered secrets masked): what is attached,
        the same record always the same blob."""
        return log.dumps_json(self.to_json(), indent=None, sort_keys=True).encode()

    def age(self, now: datetime.datetime) -> datetime.timedelta:
        """How long ago the scan ran."""
        return now - self.scanned_at


def from_verdict(verdict: Verdict, image: str | None = None) -> ScanRecord:
    """The record of a verdict on an image (`image`: the reference as the user named it; default the target)."""
    output = verdict.output
    if output.digest is None or not is_digest(output.digest):
        raise UsageError(f"{output.target}: a scan record needs the image manifest's digest (only images get one)")
    counts = verdict.counts()
    return ScanRecord(
        image=image or output.target, digest=output.digest, passed=verdict.passed,
        counts={s: counts.get(s, 0) for s in SEVERITIES}, policy_hash=verdict.policy_hash,
        scanned_at=verdict.scanned_at, db_version=output.db.version if output.db else None,
        db_updated_at=output.db.updated_at if output.db else None, trivy_version=output.trivy_version,
        scanners=tuple(output.scanners))


def parse(data: bytes, where: str) -> ScanRecord:
    """A record from its JSON; RecordError naming `where` and the field when it is not one."""
    try:
        body = jsonsafe.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise RecordError(f"{where}: not a scan record (not JSON)") from None
    if not isinstance(body, dict):
        raise RecordError(f"{where}: not a scan record (not a JSON object)")
    if body.get("format") != FORMAT:
        raise RecordError(f"{where}: format: {str(body.get('format'))[:20]!r} is not a scan record format mlci "
                          f"reads ({FORMAT})")
    try:
        db = body.get("db")
        if db is not None and not isinstance(db, dict):
            raise ValueError("db: not an object")
        counts = body.get("counts")
        if not isinstance(counts, dict) or not set(counts) <= set(SEVERITIES) \
                or not all(type(v) is int and v >= 0 for v in counts.values()):
            raise ValueError("counts: not a count per severity")
        if body.get("verdict") not in ("pass", "fail"):
            raise ValueError("verdict: neither pass nor fail")
        digest = _text(body.get("digest"), "digest")
        if not is_digest(digest):
            raise ValueError("digest: not a sha256 digest")
        scanners = body.get("scanners", [])
        if not isinstance(scanners, list):
            raise ValueError("scanners: not a list")
        return ScanRecord(
            image=_text(body.get("image"), "image"), digest=digest, passed=body["verdict"] == "pass",
            counts={s: counts.get(s, 0) for s in SEVERITIES}, policy_hash=_text(body.get("policy_hash"), "policy_hash"),
            scanned_at=_parse_time(body.get("scanned_at"), "scanned_at"),
            db_version=None if db is None else _int(db.get("version"), "db.version"),
            db_updated_at=None if db is None else _parse_time(db.get("updated_at"), "db.updated_at"),
            trivy_version=None if body.get("trivy_version") is None else _text(body["trivy_version"], "trivy_version"),
            scanners=tuple(_text(s, "scanners[]") for s in scanners),
            mlci_version=_text(body.get("mlci_version"), "mlci_version"))
    except ValueError as exc:
        raise RecordError(f"{where}: not a scan record ({exc})") from None


def write(record: ScanRecord, path: Path) -> None:
    """Write the record as a file (atomically, indented, secrets masked)."""
    atomic_write_json(path, record.to_json(), indent=2, sort_keys=True)


def read(path: Path) -> ScanRecord:
    """A record written by write()."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RecordError(f"{path}: cannot be read ({exc.strerror or exc.__class__.__name__})") from None
    if len(data) > MAX_RECORD:
        raise RecordError(f"{path}: not a scan record (larger than {MAX_RECORD} bytes)")
    return parse(data, str(path))


def attach(record: ScanRecord, endpoint: Endpoint, sbom: bytes | None = None,
           output: ScanOutput | None = None) -> list[Descriptor]:
    """Attach the record (with the scan's `output` as its second layer, if given) and the CycloneDX `sbom` (if
    given) to the image `record.digest` as referrers; returns their descriptors. Attaching the same record again
    uploads nothing and lists nothing twice. An image's SBOM depends on its content and trivy, not on the DB: one
    made by the same trivy version is attached once (later scans return the existing one)."""
    subject = referrers.subject_of(endpoint, record.digest)
    stamp = referrers.created(record.scanned_at)
    annotations = {referrers.CREATED: stamp, VERDICT: record.verdict, POLICY: record.policy_hash}
    if record.db_updated_at is not None:
        annotations[DB_UPDATED] = _time(record.db_updated_at)
    payloads = [Blob(RECORD_TYPE, record.to_bytes(), {referrers.TITLE: "scan-record.json"})]
    if output is not None:
        if output.digest not in (None, record.digest):
            raise UsageError(f"scan output of {output.digest} attached to a record of {record.digest}")
        data = log.dumps_json(output_to_json(output), indent=None, sort_keys=True).encode()
        if len(data) <= MAX_OUTPUT:
            payloads.append(Blob(OUTPUT_TYPE, data, {referrers.TITLE: "scan-output.json"}))
        else:
            logger.warning("mlci: warning: the scan output of %s is larger than %d bytes: the record is attached "
                           "without it (a re-scan of this digest scans again)", record.digest, MAX_OUTPUT)
    attached = [referrers.attach(endpoint, subject, RECORD_TYPE, payloads, annotations)]
    if sbom is not None:
        made_by = record.trivy_version or "unknown"
        existing = [d for d in referrers.referrers(endpoint, record.digest, SBOM_TYPE)
                    if d.annotations.get(TRIVY) == made_by]
        attached.append(existing[0] if existing else referrers.attach(
            endpoint, subject, SBOM_TYPE, [Blob(SBOM_TYPE, sbom, {referrers.TITLE: "sbom.cdx.json"})],
            {referrers.CREATED: stamp, TRIVY: made_by}))
    return attached


def find(source: Endpoint | referrers.ReferrerSource, digest: str, *, limit: int = FIND_LIMIT,
         listing: referrers.Listing | None = None) -> list[ScanRecord]:
    """The scan records attached to the image `digest`, newest scan first (at most `limit`, chosen by their
    `created` annotation; `listing`: the image's referrers, when the caller has listed them already). An artifact
    that is not a record of this digest is skipped with a warning."""
    if listing is not None and listing.subject != digest:
        raise ValueError(f"a listing of {listing.subject} for the records of {digest}")
    listed = listing.of_type(RECORD_TYPE) if listing is not None else referrers.referrers(source, digest, RECORD_TYPE)
    listed.sort(key=lambda d: d.annotations.get(referrers.CREATED, ""), reverse=True)
    found = []
    for descriptor in listed[:limit]:
        try:
            found.append(_load(source, digest, descriptor))
        except EnvironmentProblem as exc:  # not a record, or gone, or unreadable: the others still count
            logger.warning("mlci: warning: %s; skipped", exc)
    found.sort(key=lambda r: r.scanned_at, reverse=True)
    return found


def find_reusable(source: Endpoint, digest: str, db_version: int | None, db_updated_at: datetime.datetime | None,
                  *, trivy_version: str | None = None, scanners: Iterable[str] | None = None,
                  limit: int = FIND_LIMIT) -> ScanRecord | None:
    """What `reusable(find(...), ..., None, digest=digest, ...)` gives, reading the records newest first only until
    one is reusable: a re-scan reads one record however many earlier scans attached theirs. A record whose
    artifact names another DB (its db-updated-at annotation) is passed over unread: at worst it is scanned again."""
    listed = referrers.referrers(source, digest, RECORD_TYPE)
    listed.sort(key=lambda d: d.annotations.get(referrers.CREATED, ""), reverse=True)
    wanted = None if db_updated_at is None else _time(db_updated_at)
    for descriptor in listed[:limit]:
        if descriptor.annotations.get(DB_UPDATED) != wanted:
            continue
        try:
            found = _load(source, digest, descriptor)
        except EnvironmentProblem as exc:  # not a record, or gone, or unreadable: the others still count
            logger.warning("mlci: warning: %s; skipped", exc)
            continue
        if reusable([found], db_version, db_updated_at, None, digest=digest, trivy_version=trivy_version,
                    scanners=scanners):
            return found
    return None


def load_output(source: Endpoint, record: ScanRecord) -> ScanOutput | None:
    """The scan output stored with a record found by find() (None when it has none)."""
    if record.referrer is None:
        return None
    layers = source.get_manifest(record.referrer.digest).blobs()[1:]
    stored = next((layer for layer in layers if layer.media_type == OUTPUT_TYPE), None)
    if stored is None:
        return None
    where = f"scan output {stored.digest} of record {record.referrer.digest}"
    data = _blob(source, stored, MAX_OUTPUT, where)
    try:
        output = output_from_json(jsonsafe.loads(data))
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordError(f"{where}: {exc}") from None
    if output.digest not in (None, record.digest):
        raise RecordError(f"{where}: is the output of a scan of {output.digest}")
    return output


def reusable(records: Iterable[ScanRecord], db_version: int | None, db_updated_at: datetime.datetime | None,
             policy_hash: str | None, *, digest: str | None = None, trivy_version: str | None = None,
             scanners: Iterable[str] | None = None) -> ScanRecord | None:
    """The newest record a re-scan would repeat: the same digest (if given), DB version and UpdatedAt, policy hash
    (None: any policy, for a caller that judges the stored output again), trivy version and scanners (if given).
    Its verdict is as of its scan: an exception that expired or a DB that aged past the limit since is only seen
    by judging its output (load_output) again at today's date."""
    wanted = sorted(scanners) if scanners is not None else None
    for record in sorted(records, key=lambda r: r.scanned_at, reverse=True):
        if (digest is None or record.digest == digest) and record.db_version == db_version \
                and record.db_updated_at == db_updated_at \
                and (policy_hash is None or record.policy_hash == policy_hash) \
                and (trivy_version is None or record.trivy_version == trivy_version) \
                and (wanted is None or sorted(record.scanners) == wanted):
            return record
    return None


def _load(source: Endpoint | referrers.ReferrerSource, digest: str, descriptor: Descriptor) -> ScanRecord:
    where = f"scan record {descriptor.digest} of {digest}"
    manifest = source.get_manifest(descriptor.digest)
    subject = manifest.subject()
    layers = manifest.blobs()[1:]
    body = manifest.body()
    if subject is None or subject.digest != digest or body.get("artifactType") != RECORD_TYPE:
        raise RecordError(f"{where}: not a scan record of this image (subject or artifactType)")
    if not layers or layers[0].media_type != RECORD_TYPE:
        raise RecordError(f"{where}: its first layer is not a {RECORD_TYPE}")
    record = parse(_blob(source, layers[0], MAX_RECORD, where), where)
    if record.digest != digest:
        raise RecordError(f"{where}: records a scan of {record.digest}")
    return dataclasses.replace(record, referrer=descriptor)


def _blob(source: Endpoint | referrers.ReferrerSource, blob: Descriptor, limit: int, where: str) -> bytes:
    """A blob of at most `limit` bytes, checked against its descriptor (RecordError otherwise)."""
    try:
        return read_small(source, blob, limit, where)
    except BlobInvalid as exc:
        raise RecordError(str(exc)) from None


def _time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")


def _parse_time(value: object, name: str) -> datetime.datetime:
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError(f"{name}: not a time")
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name}: not an ISO time") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{name}: a time without its zone")
    return parsed


def _text(value: object, name: str) -> str:
    if not isinstance(value, str) or not value or len(value) > _TEXT_LIMIT:
        raise ValueError(f"{name}: not a text of 1 to {_TEXT_LIMIT} characters")
    return value


def _int(value: object, name: str) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"{name}: not a number")
    return value
