"""What every scanner produces and every report reads: findings, the DB a scan used, files not scanned."""
from __future__ import annotations

import dataclasses
import datetime
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL"]
SEVERITIES: tuple[Severity, ...] = ("UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL")
Kind = Literal["vulnerability", "secret", "misconfiguration", "model"]


@dataclass(frozen=True)
class Finding:
    """One problem found in a target. Never holds a secret's value: `detail` is trivy's masked match or
    a description. `path` is the file inside the target (image or repository), `target` trivy's Target
    (an OS, a lock file, a layer path) or the model file scanned."""

    kind: Kind
    id: str
    severity: Severity
    title: str
    target: str
    package: str | None = None
    version: str | None = None
    fixed_version: str | None = None
    status: str | None = None
    path: str | None = None
    line: int | None = None
    detail: str = ""
    purl: str | None = None
    data_source: str | None = None
    references: tuple[str, ...] = ()
    # A finding that is information only (a model file's "suspicious" but known-benign global): never fails.
    informational: bool = False


@dataclass(frozen=True)
class DbInfo:
    """The vulnerability DB a scan used, from CACHE/db/metadata.json."""

    version: int
    updated_at: datetime.datetime
    next_update: datetime.datetime | None = None
    downloaded_at: datetime.datetime | None = None


@dataclass(frozen=True)
class Unscanned:
    """A file the model-file scanner could not look into, and why (listed in every report)."""

    path: str
    reason: str


@dataclass(frozen=True)
class ScanOutput:
    """What the scanners found in one target, before the policy judges it."""

    target: str
    digest: str | None = None  # the image manifest's digest (images only)
    os: str | None = None  # the image's OS as trivy names it, e.g. "debian 12.5"
    findings: tuple[Finding, ...] = ()
    unscanned: tuple[Unscanned, ...] = ()
    trivy_version: str | None = None
    db: DbInfo | None = None
    scanners: tuple[str, ...] = field(default=())


def output_to_json(output: ScanOutput) -> dict[str, Any]:
    """A scan's output as plain JSON data (stored with the scan record, so an unchanged digest scanned with
    the same DB and trivy is judged again without scanning)."""
    data = dataclasses.asdict(output)
    if output.db is not None:
        data["db"] = {k: v.isoformat() if isinstance(v, datetime.datetime) else v for k, v in data["db"].items()}
    return data


def output_from_json(data: Any) -> ScanOutput:
    """The inverse of output_to_json; ValueError when `data` is not one (a stored record may be anything)."""
    try:
        db = data.get("db")
        return ScanOutput(
            target=_text(data["target"]), digest=_optional(data.get("digest")), os=_optional(data.get("os")),
            findings=tuple(_finding(f) for f in data.get("findings", ())),
            unscanned=tuple(Unscanned(_text(u["path"]), _text(u["reason"])) for u in data.get("unscanned", ())),
            trivy_version=_optional(data.get("trivy_version")),
            db=None if db is None else DbInfo(
                version=int(db["version"]), updated_at=_time(db["updated_at"]),
                next_update=None if db.get("next_update") is None else _time(db["next_update"]),
                downloaded_at=None if db.get("downloaded_at") is None else _time(db["downloaded_at"])),
            scanners=tuple(_text(s) for s in data.get("scanners", ())))
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"not a stored scan output ({type(exc).__name__}: {exc})") from None


def _finding(data: Any) -> Finding:
    names = {f.name: f for f in dataclasses.fields(Finding)}
    if not isinstance(data, dict) or not set(data) <= set(names):
        raise ValueError("a finding is a mapping of Finding's fields")
    values = dict(data)
    if values.get("kind") not in typing.get_args(Kind) or values.get("severity") not in SEVERITIES:
        raise ValueError("unknown finding kind or severity")
    values["references"] = tuple(_text(r) for r in values.get("references", ()))
    for name in ("id", "title", "target", "detail"):
        if name in values:
            values[name] = _text(values[name])
    for name in ("package", "version", "fixed_version", "status", "path", "purl", "data_source"):
        values[name] = _optional(values.get(name))
    if values.get("line") is not None and not isinstance(values["line"], int):
        raise ValueError("line is a number")
    values["informational"] = values.get("informational") is True
    return Finding(**values)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected text")
    return value


def _optional(value: Any) -> str | None:
    return None if value is None else _text(value)


def _time(value: Any) -> datetime.datetime:
    parsed = datetime.datetime.fromisoformat(_text(value))
    if parsed.tzinfo is None:
        raise ValueError("a time with its zone")
    return parsed
