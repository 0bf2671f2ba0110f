"""The `bundle` section of mlci.yaml: how `mlci bundle export` writes a bundle and what the inside verifies it
with."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

MIN_PART = 1 << 20


@dataclass(frozen=True)
class BundleSettings:
    """`bundle` in mlci.yaml."""

    format: Literal["tar", "tar.zst", "dir"] = field(default="tar", metadata={"doc": (
        "tar (one uncompressed tar: members read in place, in parallel, on import), tar.zst (zstd-compressed: "
        "smaller when code and data compress, read as a stream) or dir (a directory, read in place).")})
    part_size: int | None = field(default=None, metadata={"doc": (
        "Split a tar bundle into parts of this many bytes (FILE.000, FILE.001, ...) for transfer media; at "
        "least 1 MiB.")})
    zstd_level: int = field(default=3, metadata={"doc": "The zstd level of format tar.zst (1-19)."})
    trivy_db: bool = field(default=False, metadata={"doc": (
        "Carry a snapshot of the trivy DB (scan.cache_dir) so the inside can re-scan offline; its date is in "
        "bundle.json.")})
    output: str = field(default="mlci-bundle", metadata={"doc": (
        "Where `mlci bundle export` writes, and `mlci bundle import` reads when given no BUNDLE (nor "
        "MLCI_BUNDLE), the format's suffix added (.tar, .tar.zst; none for dir): relative to the repository (a "
        "CI artifact), or absolute (a transfer directory that a data diode or removable medium takes it "
        "from).")})
    public_key: str | None = field(default=None, metadata={"doc": (
        "The PEM public key (cosign.pub) bundles are verified with inside (`mlci bundle verify|import` without "
        "--key); it matches promote.signing's key.")})
    public_key_env: str | None = field(default=None, metadata={"doc": (
        "The NAME of a variable holding that PEM public key, or the path of a file holding it.")})


def bundle_problems(settings: BundleSettings) -> list[str]:
    """Everything in `bundle` that cannot work, as `KEY: message`."""
    problems = []
    if settings.part_size is not None and settings.part_size < MIN_PART:
        problems.append(f"bundle.part_size: {settings.part_size}: at least {MIN_PART} bytes (1 MiB)")
    if settings.part_size is not None and settings.format == "dir":
        problems.append("bundle.part_size: only a tar bundle is split into parts (format tar or tar.zst)")
    if not 1 <= settings.zstd_level <= 19:
        problems.append(f"bundle.zstd_level: {settings.zstd_level}: must be 1..19")
    if settings.public_key and settings.public_key_env:
        problems.append("bundle: give public_key or public_key_env, not both")
    if not settings.output or (not settings.output.startswith("/") and ".." in settings.output.split("/")):
        problems.append(f"bundle.output: {settings.output!r}: a path inside the repository, or an absolute one (a "
                        "transfer directory)")
    return problems
