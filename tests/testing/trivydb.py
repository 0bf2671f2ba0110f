"""A tiny trivy vulnerability DB written offline, in pure Python: a bbolt file (`CACHE/db/trivy.db`) and its
`CACHE/db/metadata.json`, in the layout trivy-db uses (../shared/TOOLCHAIN.md, "Trivy (scanner), offline").

The bbolt writer knows just enough of the format for a reader: two meta pages (magic, version 2, page size, the
root bucket, an empty freelist page, the high-water mark, an FNV-1a checksum), leaf pages (key/value elements,
bucket values flagged), branch pages above leaves that fill a page, overflow for an element larger than a page,
and nested buckets, each in pages of its own (never inline). Keys are sorted as bytes, as a cursor expects.

trivy-db's buckets:
    "<platform>" / "<package>" / "<vulnerability id>" -> the advisory as JSON
    "vulnerability" / "<vulnerability id>" -> {"Title", "Severity", "VendorSeverity": {source: 0..4}}
    "data-source" / "<platform>" -> {"ID", "Name", "URL"}
pip advisories sit under `pip::GitHub Security Advisory pip`, keyed by the normalised distribution name
({"VulnerableVersions": ["<1.1"], "PatchedVersions": ["1.1"]}); Debian ones under `debian 12`, keyed by the
SOURCE package ({"FixedVersion": "..."}; an unfixed one {"Status": 2}, "affected").

`trivy_db` (session-scoped) is such a DB with the advisories in SEEDED, and filler advisories enough that the
big buckets need branch pages (so every scan also reads those), and one description longer than a page. Use it
as scan.cache_dir: trivy opens the DB read-only, and with `--cache-backend memory` (as mlci runs it) writes nothing
there, so one DB serves every test of a session.
"""
from __future__ import annotations

import datetime
import json
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias, TypeVar

import pytest

PIP = "pip::GitHub Security Advisory pip"
DEBIAN_12 = "debian 12"
SCHEMA_VERSION = 2  # trivy-db's schema: metadata.json's Version must equal it

Severity = Literal["UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL"]
_SEVERITY_NUMBER = {"UNKNOWN": 0, "LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}
_SOURCES = {  # platform -> the data source trivy names in DataSource and VendorSeverity
    PIP: {"ID": "ghsa", "Name": "GitHub Security Advisory pip",
          "URL": "https://github.com/advisories?query=type%3Areviewed+ecosystem%3Apip"},
    DEBIAN_12: {"ID": "debian", "Name": "Debian Security Tracker",
                "URL": "https://salsa.debian.org/security-tracker-team/security-tracker"},
}
_STATUS_AFFECTED = 2  # trivy-db's Status enum: unknown, not_affected, affected, fixed, ...


@dataclass(frozen=True)
class Advisory:
    """One fake advisory. `package`: the pip distribution (normalised when written) or, for Debian, the SOURCE
    package. `vulnerable`: pip's affected range (e.g. "<1.1"; Debian: versions before `fixed`). `fixed`: the
    fixed version; None is an unfixed advisory (Debian: status affected; pip: no patched version)."""

    platform: str
    package: str
    id: str
    severity: Severity = "HIGH"
    title: str = ""
    vulnerable: str | None = None
    fixed: str | None = None
    description: str = ""

    def advisory_json(self) -> dict[str, object]:
        """The advisory's value in the platform's bucket."""
        if self.platform.startswith("pip::"):
            item: dict[str, object] = {"VulnerableVersions": [self.vulnerable or ">=0"]}
            if self.fixed:
                item["PatchedVersions"] = [self.fixed]
            return item
        return {"FixedVersion": self.fixed} if self.fixed else {"Status": _STATUS_AFFECTED}

    def vulnerability_json(self) -> dict[str, object]:
        """The value in the `vulnerability` bucket."""
        source = str(_SOURCES.get(self.platform, {"ID": "nvd"})["ID"])
        return {"Title": self.title or f"fake {self.severity.lower()} advisory for {self.package}",
                **({"Description": self.description} if self.description else {}), "Severity": self.severity,
                "VendorSeverity": {source: _SEVERITY_NUMBER[self.severity]},
                "References": [f"https://example.invalid/{self.id}"]}


def pip_name(name: str) -> str:
    """The key trivy-db files a pip package under (vulnerability.NormalizePkgName): lower case, `_` as `-`; dots
    are kept (not PEP 503's normal form), and trivy looks names up the same way."""
    return name.lower().replace("_", "-")


# The seeded advisories. tinydep 1.0 (tests/image/support.py's wheel) is in the test image and in requirements
# files; openssl (libssl3 3.0.20-1~deb12u2 in the base, its SOURCE is openssl) and zlib are in the Debian base.
TINYDEP = Advisory(PIP, "tinydep", "GHSA-test-tiny-dep1", "HIGH", "tinydep runs code it should not",
                   vulnerable="<1.1", fixed="1.1",  # a description longer than a page: an overflow page
                   description="".join(f"Line {n} of a long description. " for n in range(250)))
TINYDEP_UNFIXED = Advisory(PIP, "tinydep", "GHSA-test-tiny-unfx", "MEDIUM", "tinydep leaks, no fix yet",
                           vulnerable="<=9.9")
OPENSSL = Advisory(DEBIAN_12, "openssl", "CVE-2099-0001", "CRITICAL", "fake openssl hole", fixed="3.0.99-1~deb12u1")
OPENSSL_OLD = Advisory(DEBIAN_12, "openssl", "CVE-2099-0002", "HIGH", "fixed before the base's openssl",
                       fixed="3.0.1-1")  # the base has a newer openssl: never reported
ZLIB_UNFIXED = Advisory(DEBIAN_12, "zlib", "CVE-2099-0003", "HIGH", "fake zlib hole, no fix yet")
SEEDED: tuple[Advisory, ...] = (TINYDEP, TINYDEP_UNFIXED, OPENSSL, OPENSSL_OLD, ZLIB_UNFIXED)
FILLER = 300  # advisories for packages nobody has: the platform and vulnerability buckets span branch pages


def filler(count: int = FILLER) -> list[Advisory]:
    """Advisories for packages that exist nowhere (`zz-filler-N`), to make the buckets big."""
    return [Advisory(PIP if n % 2 else DEBIAN_12, f"zz-filler-{n:04d}", f"CVE-2098-{n:05d}", "LOW",
                     "filler " + "x" * 40, vulnerable="<1", fixed="1") for n in range(count)]


def write_db(cache_dir: Path, advisories: Sequence[Advisory], updated_at: datetime.datetime, *,
             next_update: datetime.datetime | None = None) -> Path:
    """Write CACHE_DIR/db/trivy.db with `advisories` and CACHE_DIR/db/metadata.json (UpdatedAt = `updated_at`,
    NextUpdate a day later unless given, DownloadedAt = UpdatedAt). Returns `cache_dir`."""
    platforms: dict[bytes, dict[bytes, dict[bytes, bytes]]] = {}
    vulnerabilities: dict[bytes, bytes] = {}
    for item in advisories:
        package = pip_name(item.package) if item.platform.startswith("pip::") else item.package
        platforms.setdefault(item.platform.encode(), {}).setdefault(package.encode(), {})[item.id.encode()] = \
            _json(item.advisory_json())
        vulnerabilities[item.id.encode()] = _json(item.vulnerability_json())
    sources = {name.encode(): _json(_SOURCES[name]) for name in {a.platform for a in advisories} if name in _SOURCES}
    tree: dict[bytes, Tree] = {**platforms, b"vulnerability": vulnerabilities, b"data-source": sources}
    db = cache_dir / "db"
    db.mkdir(parents=True, exist_ok=True)
    write_bolt(db / "trivy.db", tree)
    updated = updated_at.astimezone(datetime.UTC)
    metadata = {"Version": SCHEMA_VERSION, "NextUpdate": _rfc3339(next_update or updated + datetime.timedelta(days=1)),
                "UpdatedAt": _rfc3339(updated), "DownloadedAt": _rfc3339(updated)}
    (db / "metadata.json").write_text(json.dumps(metadata))
    return cache_dir


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _rfc3339(moment: datetime.datetime) -> str:
    """Go's time.Time JSON form (RFC 3339 with nanoseconds, UTC)."""
    utc = moment.astimezone(datetime.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond:06d}000Z"


# --- bbolt ------------------------------------------------------------------------------------------------------

Tree: TypeAlias = "bytes | Mapping[bytes, Tree]"  # a value, or a bucket of them
T = TypeVar("T")
PAGE_SIZE = 4096
_MAGIC, _VERSION = 0xED0CDAED, 2
_BRANCH, _LEAF, _META, _FREELIST = 0x01, 0x02, 0x04, 0x10
_BUCKET_LEAF = 0x01
_HEADER = struct.Struct("<QHHI")  # id, flags, count, overflow
_LEAF_ELEMENT = struct.Struct("<IIII")  # flags, pos (from the element to its key), ksize, vsize
_BRANCH_ELEMENT = struct.Struct("<IIQ")  # pos, ksize, child pgid
_BUCKET = struct.Struct("<QQ")  # root pgid, sequence
_META_BODY = struct.Struct("<IIIIQQQQQ")  # magic, version, page size, flags, root (pgid, seq), freelist, pgid, txid


class _Pages:
    """Pages after the two meta pages and the freelist (pgid 0-2), numbered as they are added."""

    def __init__(self, page_size: int) -> None:
        self.page_size, self.next, self.data = page_size, 3, bytearray()

    def add(self, flags: int, count: int, body: bytes) -> int:
        pgid = self.next
        pages = -(-(_HEADER.size + len(body)) // self.page_size)
        self.data += (_HEADER.pack(pgid, flags, count, pages - 1) + body).ljust(pages * self.page_size, b"\0")
        self.next += pages
        return pgid


def write_bolt(path: Path, tree: Mapping[bytes, Tree], page_size: int = PAGE_SIZE) -> None:
    """Write `tree` (top-level keys must be buckets, as in bbolt) as a bbolt database file at `path`."""
    if any(isinstance(value, bytes) for value in tree.values()):
        raise ValueError("bbolt's root holds buckets only")
    pages = _Pages(page_size)
    root = _bucket(pages, tree)
    metas = b"".join(_meta(txid, root, pages.next, page_size) for txid in (0, 1))
    freelist = _HEADER.pack(2, _FREELIST, 0, 0).ljust(page_size, b"\0")
    path.write_bytes(metas + freelist + bytes(pages.data))


def _meta(txid: int, root: int, high_water: int, page_size: int) -> bytes:
    body = _META_BODY.pack(_MAGIC, _VERSION, page_size, 0, root, 0, 2, high_water, txid)
    checksum = 0xCBF29CE484222325  # FNV-1a 64 of everything before the checksum
    for byte in body:
        checksum = ((checksum ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return (_HEADER.pack(txid, _META, 0, 0) + body + struct.pack("<Q", checksum)).ljust(page_size, b"\0")


def _bucket(pages: _Pages, bucket: Mapping[bytes, Tree]) -> int:
    """Write a bucket (its sub-buckets first); its root page's id."""
    items: list[tuple[int, bytes, bytes]] = []
    for key in sorted(bucket):
        value = bucket[key]
        if isinstance(value, bytes):
            items.append((0, key, value))
        else:
            items.append((_BUCKET_LEAF, key, _BUCKET.pack(_bucket(pages, value), 0)))
    level = [(group[0][1] if group else b"", pages.add(_LEAF, len(group), _leaf(group)))
             for group in _fill(items, lambda item: _LEAF_ELEMENT.size + len(item[1]) + len(item[2]), pages)]
    while len(level) > 1:  # branch pages over the pages below, until one page is the root
        level = [(group[0][0], pages.add(_BRANCH, len(group), _branch(group)))
                 for group in _fill(level, lambda child: _BRANCH_ELEMENT.size + len(child[0]), pages)]
    return level[0][1]


def _fill(items: list[T], size: Callable[[T], int], pages: _Pages) -> list[list[T]]:
    """`items` cut into runs that fit a page each (a single item too large for one gets overflow pages)."""
    groups: list[list[T]] = [[]]
    used = _HEADER.size
    for item in items:
        need = size(item)
        if groups[-1] and used + need > pages.page_size:
            groups.append([])
            used = _HEADER.size
        groups[-1].append(item)
        used += need
    return groups


def _leaf(items: list[tuple[int, bytes, bytes]]) -> bytes:
    elements, data = bytearray(), bytearray()
    for i, (flags, key, value) in enumerate(items):
        pos = _LEAF_ELEMENT.size * (len(items) - i) + len(data)
        elements += _LEAF_ELEMENT.pack(flags, pos, len(key), len(value))
        data += key + value
    return bytes(elements + data)


def _branch(children: list[tuple[bytes, int]]) -> bytes:
    elements, data = bytearray(), bytearray()
    for i, (key, pgid) in enumerate(children):
        pos = _BRANCH_ELEMENT.size * (len(children) - i) + len(data)
        elements += _BRANCH_ELEMENT.pack(pos, len(key), pgid)
        data += key
    return bytes(elements + data)


# --- fixture ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrivyDb:
    """A cache directory holding a test DB, and what it was seeded with."""

    cache_dir: Path
    advisories: tuple[Advisory, ...]
    updated_at: datetime.datetime


def make_db(cache_dir: Path, updated_at: datetime.datetime | None = None,
            advisories: Sequence[Advisory] = SEEDED) -> TrivyDb:
    """A test DB in `cache_dir` with `advisories` and the filler (UpdatedAt: an hour ago unless given)."""
    moment = updated_at or datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    write_db(cache_dir, [*advisories, *filler()], moment)
    return TrivyDb(cache_dir, tuple(advisories), moment)


@pytest.fixture(scope="session")
def trivy_db(tmp_path_factory: pytest.TempPathFactory) -> TrivyDb:
    """A fresh test DB (UpdatedAt an hour ago) seeded with SEEDED, shared by the session: do not write into it
    (make_db(tmp_path / "cache", updated_at=...) gives an old or a private one in a few milliseconds)."""
    return make_db(tmp_path_factory.mktemp("trivy-cache"))
