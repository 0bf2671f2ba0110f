"""A team's existing `.trivyignore.yaml` (trivy's YAML ignore file), read within yamlsafe's bounds with
`file:line` problems, so its entries are honoured as exceptions and shown in every report."""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from mlci.core import config as core_config
from mlci.core import schema
from mlci.core.errors import ConfigError
from mlci.scan.settings import calendar_date, shown_date


@dataclass(frozen=True)
class IgnoreEntry:
    """One entry: an id, optionally limited to paths (globs) or package URLs, until expired_at."""

    id: str
    paths: tuple[str, ...] = ()
    purls: tuple[str, ...] = ()
    expired_at: datetime.date | str | None = None
    statement: str = ""
    where: str = ""

    @property
    def expiry(self) -> datetime.date | None:
        """expired_at as a date (YAML reads an unquoted date or timestamp as one; a timestamp as its UTC date)."""
        return None if self.expired_at is None else calendar_date(self.expired_at, timestamps=True)


@dataclass(frozen=True)
class IgnoreFile:
    """trivy's sections; `licenses` entries are read (a team's file may have them) but mlci scans no licenses."""

    vulnerabilities: tuple[IgnoreEntry, ...] = ()
    misconfigurations: tuple[IgnoreEntry, ...] = ()
    secrets: tuple[IgnoreEntry, ...] = ()
    licenses: tuple[IgnoreEntry, ...] = ()


KIND_SECTIONS = {"vulnerability": "vulnerabilities", "misconfiguration": "misconfigurations", "secret": "secrets"}


def configured(name: str | None, config_dir: Path) -> IgnoreFile | None:
    """The ignore file scan.trivyignore names (relative to mlci.yaml's directory), None when unset or absent."""
    if not name:
        return None
    path = config_dir / name
    return load(path, name) if path.is_file() else None


def load(path: Path, shown: str) -> IgnoreFile:
    """The ignore file at `path` (shown as `shown` in problems); every problem at once, exit 2."""
    problems: list[str] = []
    text = core_config.read_text(path, shown, problems)
    raw = core_config.parse_mapping(text, shown, IgnoreFile, problems) if text is not None else None
    if problems:
        raise ConfigError(problems)
    result: IgnoreFile = schema.build(IgnoreFile, raw or {})
    for section in ("vulnerabilities", "misconfigurations", "secrets", "licenses"):
        for entry in getattr(result, section):
            try:
                entry.expiry  # noqa: B018 - parsed for its error
            except ValueError:
                problems.append(f"{entry.where}: {section}[{entry.id!r}].expired_at: a date YYYY-MM-DD (or an "
                                f"RFC 3339 time), got {shown_date(entry.expired_at)}")
    if problems:
        raise ConfigError(problems)
    return result
