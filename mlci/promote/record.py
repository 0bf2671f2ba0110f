"""The facts of one promotion, as the GitOps record, the audit log line and the GTO tag messages state them: the
image by digest, the model version and its commit, the metrics, the scan verdict, the signature, who approved, who
promoted and when, whether a tag move was forced, and what the environment ran before (a rollback shows as one)."""
from __future__ import annotations

import datetime
import math
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mlci.core import fsutil, jsonsafe, log, yamlsafe
from mlci.core.errors import UsageError

if TYPE_CHECKING:
    from mlci.scan.record import ScanRecord

FORMAT = 1
Scalar = int | float | str | bool
MAX_METRICS_FILE = 1 << 20  # a metrics file is a few hundred bytes; beyond this it is not one
MAX_METRICS = 200  # values kept per file (flattened); the rest are left out with a warning
_TEXT = 200  # longest metric text value kept


@dataclass(frozen=True)
class Approver:
    """One approval of the promotion: the approver's login, how mlci learnt it (`forge`: the forge's API;
    `variable`: a CI variable, the weaker mode) and when it was given, if known."""

    login: str
    mode: Literal["forge", "variable"] = "forge"
    at: datetime.datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {"login": self.login, "mode": self.mode, "at": _time(self.at)}


@dataclass(frozen=True)
class ScanFacts:
    """What the record says about the scan: the verdict, the vulnerability DB's date, when and how it ran."""

    verdict: str
    scanned_at: datetime.datetime
    policy_hash: str
    db_updated_at: datetime.datetime | None = None
    db_version: int | None = None
    trivy_version: str | None = None

    @classmethod
    def of(cls, record: ScanRecord) -> ScanFacts:
        """The facts of a scan record (mlci/scan/record.py)."""
        return cls(verdict=record.verdict, scanned_at=record.scanned_at, policy_hash=record.policy_hash,
                   db_updated_at=record.db_updated_at, db_version=record.db_version,
                   trivy_version=record.trivy_version)

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "db_updated_at": _time(self.db_updated_at), "db_version": self.db_version,
                "scanned_at": _time(self.scanned_at), "policy_hash": self.policy_hash,
                "trivy_version": self.trivy_version}


@dataclass(frozen=True)
class PromotionRecord:
    """One promotion of an image digest into an environment. `repository` is the destination repository
    without a tag (`HOST[:PORT]/PATH`, a `docker://` prefix is dropped); `previous_digest` and `rollback` are
    filled in by gitops.record_promotion from the environment's file (what ran there before). A promotion through
    an air-gap bundle names it (`bundle`, `bundle_signer`: `promotion.bundle` in the file, only then)."""

    environment: str
    repository: str
    digest: str
    model: str
    git_sha: str
    promoted_at: datetime.datetime
    promoted_by: str | None = None
    version: str | None = None
    git_ref: str | None = None
    tags: tuple[str, ...] = ()
    source: str | None = None
    metrics: Mapping[str, Mapping[str, Scalar]] = field(default_factory=dict)
    scan: ScanFacts | None = None
    signature: str | None = None
    approval_mode: Literal["none", "forge", "variable"] = "none"
    approvals: tuple[Approver, ...] = ()
    forced: bool = False
    job: str | None = None
    previous_digest: str | None = None
    rollback: bool = False
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    bundle: str | None = None  # the aggregate of the bundle it came through (`mlci bundle import`)
    bundle_signer: str | None = None  # the keyid of that bundle's signature

    @property
    def ref(self) -> str:
        """What to deploy: `repository@digest`."""
        return f"{self.repository.removeprefix('docker://')}@{self.digest}"

    def to_json(self) -> dict[str, Any]:
        """The record as plain data: the environment file's state (below `format` and `environment`) and the
        audit log line have exactly these keys."""
        return {
            "format": FORMAT,
            "environment": self.environment,
            "image": {"ref": self.ref, "repository": self.repository.removeprefix("docker://"),
                      "digest": self.digest, "tags": list(self.tags)},
            "model": {"name": self.model, "version": self.version, "git_sha": self.git_sha, "git_ref": self.git_ref,
                      "metrics": {name: dict(values) for name, values in sorted(self.metrics.items())}},
            "scan": None if self.scan is None else self.scan.to_json(),
            "signature": self.signature,
            "approvals": {"mode": self.approval_mode, "weak": self.approval_mode == "variable",
                          "by": [a.to_json() for a in self.approvals]},
            "promotion": {"id": self.id, "by": self.promoted_by, "at": _time(self.promoted_at),
                          "source": self.source, "forced": self.forced, "previous_digest": self.previous_digest,
                          "rollback": self.rollback, "job": self.job,
                          **({"bundle": {"aggregate": self.bundle, "signer": self.bundle_signer}}
                             if self.bundle else {})},
        }


def read_metrics(root: Path, files: Sequence[str]) -> dict[str, dict[str, Scalar]]:
    """The values of the metrics files (paths relative to the repo `root`, as dvc.yaml declares them: JSON or
    YAML), flattened as `dvc metrics show` does (`a.b` for nested keys, `a.0` for lists), numbers, booleans
    and short texts only. A file that is missing or not readable is left out with a warning (the promotion is
    recorded all the same); a file leading out of the repository through a symlink is refused (exit 2)."""
    found: dict[str, dict[str, Scalar]] = {}
    for name in files:
        if fsutil.outside(root, Path(name)) is not None:
            raise UsageError(f"metrics file {name}: leads out of the repository through a symlink; "
                             "mlci does not read it")
        values = _metrics_file(root / name, name)
        if values is not None:
            found[name] = values
    return found


def _metrics_file(path: Path, name: str) -> dict[str, Scalar] | None:
    try:
        if os.path.getsize(path) > MAX_METRICS_FILE:
            log.logger.warning("mlci: warning: metrics file %s is larger than %d bytes; not recorded",
                               name, MAX_METRICS_FILE)
            return None
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        log.logger.warning("mlci: warning: metrics file %s cannot be read (%s); not recorded", name,
                           getattr(exc, "strerror", None) or exc.__class__.__name__)
        return None
    try:
        data = jsonsafe.loads(text) if name.endswith(".json") else yamlsafe.load(text)
    except (ValueError, yamlsafe.YamlProblem) as exc:
        log.logger.warning("mlci: warning: metrics file %s is not valid %s (%s); not recorded", name,
                           "JSON" if name.endswith(".json") else "YAML", exc.__class__.__name__)
        return None
    flat: dict[str, Scalar] = {}
    _flatten(data, "", flat)
    if len(flat) > MAX_METRICS:
        log.logger.warning("mlci: warning: metrics file %s has more than %d values; the first %d are recorded",
                           name, MAX_METRICS, MAX_METRICS)
        flat = dict(list(flat.items())[:MAX_METRICS])
    return flat


def _flatten(value: Any, prefix: str, into: dict[str, Scalar]) -> None:
    if len(into) > MAX_METRICS:
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), into)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _flatten(item, f"{prefix}.{index}" if prefix else str(index), into)
    elif prefix and (isinstance(value, bool) or isinstance(value, int)
                     or (isinstance(value, float) and math.isfinite(value))):
        into[log.one_line(prefix)[:_TEXT]] = value
    elif prefix and isinstance(value, str):
        into[log.one_line(prefix)[:_TEXT]] = log.one_line(value)[:_TEXT]


def _time(moment: datetime.datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
