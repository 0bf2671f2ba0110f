"""The bundle on disk: every sink (directory; tar and tar.zst, whole or in parts) round-trips through its reader,
byte for byte reproducibly, as standard tars GNU tar and Python's tarfile list; every hostile member, truncation,
missing part and trailing byte is refused in one line naming the bundle and the member; memory stays flat."""
from __future__ import annotations

import hashlib
import os
import random
import socket
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from mlci.bundle.archive import BundleReader, Format, open_bundle, open_sink
from mlci.bundle.errors import BundleInvalid
from mlci.core.errors import EnvironmentProblem, UsageError
from tests.testing.bundles import HEAD, info, tar_bytes, write_bundle, zstd_bytes

MIB = 1 << 20
BLOB = "blobs/sha256/" + "ab" * 32
LAYOUTS: list[tuple[Format, int | None]] = [("dir", None), ("tar", None), ("tar", MIB), ("tar.zst", None),
                                            ("tar.zst", MIB)]


def _suffix(fmt: Format) -> str:
    return "" if fmt == "dir" else "." + fmt


def _read_all(reader: BundleReader) -> dict[str, bytes]:
    """Every member in the order the reader gives them, read in small pieces."""
    out = {}
    for member, stream in reader.members():
        data = b"".join(_pieces(stream))
        assert len(data) == member.size
        out[member.name] = data
    return out


def _pieces(stream: BinaryIO, size: int = 70001) -> Iterator[bytes]:
    while piece := stream.read(size):
        yield piece


def _refusal(path: Path, match: str) -> str:
    """The one-line BundleInvalid reading the bundle at `path` gives (its head, then every member)."""
    with pytest.raises(BundleInvalid, match=match) as caught:
        reader = open_bundle(path)
        reader.head()
        _read_all(reader)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


# ---- round trips ----------------------------------------------------------------------------------------------

segment = st.text(st.characters(codec="utf-8", categories=("L", "M", "N", "P", "S"), include_characters=" ",
                                exclude_characters="/\\"), min_size=1, max_size=90).filter(
    lambda s: s not in (".", "..") and len(s.encode()) <= 255)
names = st.one_of(
    st.just("index.json"),
    st.binary(min_size=32, max_size=32).map(lambda b: "blobs/sha256/" + b.hex()),
    st.tuples(st.binary(min_size=16, max_size=16), st.booleans()).map(
        lambda t: f"dvc/files/md5/{t[0].hex()[:2]}/{t[0].hex()[2:]}" + (".dir" if t[1] else "")),
    st.lists(segment, min_size=1, max_size=4).map(lambda parts: "artifacts/" + "/".join(parts)),
    segment.map(lambda s: "trivy/db/" + s))
sizes = st.sampled_from([0, 1, 511, 512, 513, 1024, MIB - 1536, MIB - 512, MIB, MIB + 1]) | st.integers(0, 2 * MIB)


def _no_prefix_clash(files: list[tuple[str, int]]) -> bool:
    """No name is a directory of another (a tree of files cannot hold both `a` and `a/b`)."""
    paths = {name for name, _ in files}
    return not any(name.rsplit("/", 1)[0] in paths or any(p.startswith(name + "/") for p in paths)
                   for name in paths)


@pytest.mark.parametrize(("fmt", "part_size"), LAYOUTS)
def test_every_layout_round_trips_its_members_in_order(fmt: Format, part_size: int | None) -> None:
    @seed(12)
    @settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(files=st.lists(st.tuples(names, sizes), max_size=4, unique_by=lambda t: t[0]).filter(_no_prefix_clash),
           filler=st.integers(MIB - 4096, 2 * MIB), seed_=st.integers(0, 2**32),
           chunk=st.sampled_from([1, 511, 4096, MIB]))
    def round_trip(files: list[tuple[str, int]], filler: int, seed_: int, chunk: int) -> None:
        """A filler member of about 1-2 MiB first: the others land anywhere around the part boundaries."""
        rng = random.Random(seed_)
        content = {"oci-layout": rng.randbytes(filler)}
        content.update({name: rng.randbytes(size) for name, size in files})
        with tempfile.TemporaryDirectory() as tmp:
            paths = write_bundle(Path(tmp) / ("b" + _suffix(fmt)), fmt, content, part_size=part_size,
                                 chunk=max(chunk, 65536) if len(content["oci-layout"]) > 65536 else chunk)
            if part_size:
                assert all(p.stat().st_size == part_size for p in paths[:-1]) and 0 < paths[-1].stat().st_size
            reader = open_bundle(paths[0])
            assert reader.head() == HEAD
            got = _read_all(reader)
            assert got == content
            assert list(got) == (sorted(content) if fmt == "dir" else list(content))
            assert _read_all(reader) == content  # a second pass (a compressed bundle is read twice, as a stream)
            if reader.random_access:
                assert {name: reader.open(name).read() for name in content} == content
            reader.close()
            assert sorted(os.listdir(tmp)) == sorted(p.name for p in paths)  # no .partial left

    round_trip()


def test_a_directory_walk_is_sorted_by_full_name(tmp_path: Path) -> None:
    files = {"artifacts/x/z": b"1", "artifacts/x.y": b"2", "artifacts/x-y/a": b"3", "oci-layout": b"4"}
    write_bundle(tmp_path / "b", "dir", files)
    assert list(_read_all(open_bundle(tmp_path / "b"))) == sorted(files)


def _boundary_files() -> dict[str, bytes]:
    """With HEAD (2 KiB of headers and data): the first member's data ends exactly at 1 MiB, the next header
    starts there, and the end-of-archive blocks end exactly at 2 MiB (no short last part)."""
    rng = random.Random(7)
    return {BLOB: rng.randbytes(MIB - 2560), "oci-layout": rng.randbytes(MIB - 1536)}


@pytest.mark.parametrize("fmt", ["tar", "tar.zst"])
def test_a_split_bundle_is_the_whole_tar_cut_into_parts(tmp_path: Path, fmt: Format) -> None:
    files = {**_boundary_files(), "index.json": b"{}", "artifacts/" + "long/" * 40 + "name": b"x" * 513}
    whole = write_bundle(tmp_path / "whole" / ("b" + _suffix(fmt)), fmt, files)
    again = write_bundle(tmp_path / "again" / ("b" + _suffix(fmt)), fmt, files)
    parts = write_bundle(tmp_path / "parts" / ("b" + _suffix(fmt)), fmt, files, part_size=MIB)
    assert whole[0].read_bytes() == again[0].read_bytes()  # the same content gives the same bytes
    assert b"".join(p.read_bytes() for p in parts) == whole[0].read_bytes()
    assert [p.name for p in parts] == [f"b{_suffix(fmt)}.{i:03d}" for i in range(len(parts))]


def test_the_archive_can_end_exactly_at_a_part_boundary(tmp_path: Path) -> None:
    files = _boundary_files()
    parts = write_bundle(tmp_path / "b.tar", "tar", files, part_size=MIB)
    assert [p.stat().st_size for p in parts] == [MIB, MIB]  # no empty third part
    assert _read_all(open_bundle(parts[0])) == files
    parts[1].unlink()
    _refusal(parts[0], r"b\.tar\.000: at byte 1048576 of the tar: truncated: the archive ends without its "
                       r"end-of-archive blocks \(the last part, b\.tar\.000, is cut short, or a part after it is "
                       r"missing\)")


def test_a_directory_bundle_is_reproducible_and_its_head_is_written_last(tmp_path: Path) -> None:
    files = {"oci-layout": b"a", BLOB: b"b" * 3000}
    write_bundle(tmp_path / "one", "dir", files)
    write_bundle(tmp_path / "two", "dir", files)
    for name in (*files, "bundle.json", "bundle.dsse.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    sink = open_sink(tmp_path / "three", "dir", HEAD)
    sink.add("oci-layout", 1, hashlib.sha256(b"a").hexdigest(), [b"a"])
    assert sorted(os.listdir(tmp_path / "three.partial")) == ["oci-layout"]  # no head before commit
    assert sink.commit() == [tmp_path / "three"]
    assert open_bundle(tmp_path / "three").head() == HEAD


# ---- standard tars ----------------------------------------------------------------------------------------------

def _listing(files: dict[str, bytes]) -> list[tuple[str, int]]:
    return [("bundle.json", len(HEAD[0])), ("bundle.dsse.json", len(HEAD[1]))] + [(n, len(d)) for n, d in files.items()]


@pytest.mark.parametrize("part_size", [None, MIB])
@pytest.mark.parametrize("fmt", ["tar", "tar.zst"])
def test_gnu_tar_and_python_tarfile_list_what_the_sink_wrote(tmp_path: Path, fmt: Format,
                                                             part_size: int | None) -> None:
    files = {**_boundary_files(), "artifacts/" + "é/" * 80 + "weights.bin": b"w" * 700, "index.json": b""}
    paths = write_bundle(tmp_path / ("b" + _suffix(fmt)), fmt, files, part_size=part_size)
    stream = b"".join(p.read_bytes() for p in paths)
    gnu = subprocess.run(["tar", "-tv", *(["--zstd"] if fmt == "tar.zst" else []), "-f", "-"], input=stream,
                         capture_output=True, check=True)
    assert gnu.stderr == b""
    lines = gnu.stdout.decode().splitlines()
    assert [(line.split(maxsplit=5)[5], int(line.split()[2])) for line in lines] == _listing(files)
    assert all(line.startswith("-rw-r--r-- 0/0 ") and " 1970-01-01 00:00 " in line for line in lines)
    plain = zstd_decompress(stream) if fmt == "tar.zst" else stream
    with tarfile.open(fileobj=__import__("io").BytesIO(plain), mode="r:") as tar:
        members = tar.getmembers()
        assert [(m.name, m.size) for m in members] == _listing(files)
        assert {(m.type, m.mode, m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {
            (tarfile.REGTYPE, 0o644, 0, 0, "", "", 0)}
        assert all(tar.extractfile(m).read() == files[m.name] for m in members[2:])  # type: ignore[union-attr]
    assert plain.endswith(bytes(1024)) and len(plain) % 512 == 0


def zstd_decompress(data: bytes) -> bytes:
    from backports import zstd

    return bytes(zstd.decompress(data))


@pytest.mark.parametrize("tar_format", ["gnu", "posix"])
def test_a_tar_made_by_hand_with_gnu_tar_is_read(tmp_path: Path, tar_format: str) -> None:
    files = {"oci-layout": b"{}", BLOB: b"blob", "artifacts/" + "deep/" * 30 + "f": b"long name"}
    write_bundle(tmp_path / "d", "dir", files)
    subprocess.run(["tar", f"--format={tar_format}", "-cf", tmp_path / "b.tar", "-C", tmp_path / "d",
                    "bundle.json", "bundle.dsse.json", "oci-layout", "blobs", "artifacts"], check=True)
    assert (tmp_path / "b.tar").stat().st_size % 10240 == 0  # padded to a record: zeros after the end blocks
    assert _read_all(open_bundle(tmp_path / "b.tar")) == {k: files[k] for k in ("oci-layout", BLOB, *files)}


# ---- what the tar reader refuses --------------------------------------------------------------------------------

def _entry(member: tarfile.TarInfo, data: bytes | None = None) -> tuple[tarfile.TarInfo, bytes | None]:
    return member, data if data is not None or member.size == 0 else b"x" * member.size


HOSTILE: dict[str, tuple[list[tuple[tarfile.TarInfo, bytes | None]], str]] = {
    "absolute": ([_entry(info("/etc/passwd", 1))], r"/etc/passwd: an absolute name"),
    "dotdot": ([_entry(info("../x", 1))], r"\.\./x: a name with a '\.\.' component"),
    "inner dotdot": ([_entry(info("blobs/../../x", 1))], r"blobs/\.\./\.\./x: a name with a '\.\.' component"),
    "dot": ([_entry(info("./oci-layout", 1))], r"\./oci-layout: not a normal name"),
    "double slash": ([_entry(info("blobs//x", 1))], r"blobs//x: not a normal name"),
    "backslash": ([_entry(info("artifacts/a\\b", 1))], r"artifacts/a\\b: a name with a backslash"),
    "control": ([_entry(info("artifacts/a\nb", 1))],
                r"'artifacts/a\\nb': a name with a control or invisible character"),
    "not allowed": ([_entry(info("etc/passwd", 1))], r"etc/passwd: not a name a bundle holds"),
    "hard link": ([_entry(info("oci-layout", kind=tarfile.LNKTYPE, linkname="bundle.json"))],
                  r"oci-layout: a hard link"),
    "symlink": ([_entry(info("oci-layout", kind=tarfile.SYMTYPE, linkname="/etc/passwd"))],
                r"oci-layout: a symbolic link"),
    "char device": ([_entry(info("oci-layout", kind=tarfile.CHRTYPE, devmajor=1, devminor=3))],
                    r"oci-layout: a character device"),
    "block device": ([_entry(info("oci-layout", kind=tarfile.BLKTYPE, devmajor=8))], r"oci-layout: a block device"),
    "fifo": ([_entry(info("oci-layout", kind=tarfile.FIFOTYPE))], r"oci-layout: a FIFO"),
    "contiguous": ([_entry(info("oci-layout", 3, kind=tarfile.CONTTYPE))], r"oci-layout: a contiguous file"),
    "gnu sparse": ([_entry(info("oci-layout", 3, kind=tarfile.GNUTYPE_SPARSE))], r"oci-layout: a sparse file"),
    "pax sparse": ([_entry(info("oci-layout", 3, pax_headers={"GNU.sparse.major": "1", "GNU.sparse.minor": "0"}))],
                   r"oci-layout: a sparse file \(GNU pax sparse map\)"),
    "pax path": ([_entry(info("oci-layout", 1, pax_headers={"path": "../evil"}))],
                 r"\.\./evil: a name with a '\.\.' component"),
    "pax path to the head": ([_entry(info("oci-layout", 1, pax_headers={"path": "bundle.json"}))],
                             r"bundle\.json: a duplicate name"),
    "pax linkpath": ([_entry(info("oci-layout", 1, pax_headers={"linkpath": "/etc/shadow"}))],
                     r"oci-layout: a pax header that sets a link path"),
    "pax size": ([_entry(info("oci-layout", 1, pax_headers={"size": str(1 << 40)}), b"x")],
                 r"oci-layout: truncated: the (member has 1099511627776 bytes|archive ends 1099511621120 bytes)"),
    "pax global": ([_entry(info("g", kind=tarfile.XGLTYPE), b""), _entry(info("oci-layout", 1))],
                   r"g: a pax global header"),
    "link name on a file": ([_entry(info("oci-layout", 1, linkname="bundle.json"))],
                            r"oci-layout: a regular file with a link name"),
    "duplicate": ([_entry(info("oci-layout", 1)), _entry(info("oci-layout", 1))], r"oci-layout: a duplicate name"),
    "file then directory": ([_entry(info("artifacts/a", 1)), _entry(info("artifacts/a/b", 1))],
                            r"artifacts/a/b: a file and a directory of the same name"),
    "directory then file": ([_entry(info("artifacts/a/b", 1)), _entry(info("artifacts/a", 1))],
                            r"artifacts/a: a file and a directory of the same name"),
    "second bundle.json": ([_entry(info("bundle.json", 2))], r"bundle\.json: a duplicate name"),
    "directory with a bad name": ([_entry(info("../up", kind=tarfile.DIRTYPE))], r"\.\./up: a name with a '\.\.'"),
}


@pytest.mark.parametrize("compress", [False, True], ids=["tar", "tar.zst"])
@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_the_reader_refuses_a_hostile_member(tmp_path: Path, case: str, compress: bool) -> None:
    members, match = HOSTILE[case]
    raw = tar_bytes(members)
    path = tmp_path / "hostile.tar"
    path.write_bytes(zstd_bytes(raw) if compress else raw)
    _refusal(path, rf"^{path}: {match}")


@pytest.mark.parametrize("compress", [False, True], ids=["tar", "tar.zst"])
def test_a_member_larger_than_the_data_left_is_refused(tmp_path: Path, compress: bool) -> None:
    head = tar_bytes([])[:2048]  # tarfile would not write it: a header of 10 MiB, 5 bytes of data, the end
    raw = head + info("oci-layout", 10 * MIB).tobuf(format=tarfile.PAX_FORMAT) + b"short".ljust(512, b"\0") + \
        bytes(1024)
    path = tmp_path / "b.tar"
    path.write_bytes(zstd_bytes(raw) if compress else raw)
    _refusal(path, "oci-layout: truncated: the archive ends 10484224 bytes before this member's end" if compress
             else "oci-layout: truncated: the member has 10485760 bytes, the archive 1536 left")


def test_a_hand_made_tar_of_safe_directories_and_files_is_read(tmp_path: Path) -> None:
    raw = tar_bytes([(info("blobs/", kind=tarfile.DIRTYPE), None), (info("blobs/sha256", kind=tarfile.DIRTYPE), None),
                     (info(BLOB, 4), b"blob")])
    (tmp_path / "b.tar").write_bytes(raw)
    assert _read_all(open_bundle(tmp_path / "b.tar")) == {BLOB: b"blob"}


@pytest.mark.parametrize(("head", "match"), [
    (None, r"b\.tar: bundle\.json: the first member is oci-layout, not bundle\.json \(bundle\.json and "
           r"bundle\.dsse\.json come first\)"),
    ((b"{}",), r"b\.tar: bundle\.dsse\.json: no signature: the second member is oci-layout, not bundle\.dsse\.json"),
])
def test_the_head_must_be_the_first_two_members(tmp_path: Path, head: tuple[bytes] | None, match: str) -> None:
    path = tmp_path / "b.tar"
    path.write_bytes(tar_bytes([(info("oci-layout", 1), b"x")], head=head))  # type: ignore[arg-type]
    _refusal(path, match)


def test_no_signature_is_named(tmp_path: Path) -> None:
    path = tmp_path / "b.tar"
    path.write_bytes(tar_bytes([], head=(b"{}",)))  # type: ignore[arg-type]
    _refusal(path, r"bundle\.dsse\.json: no signature: the archive ends after bundle\.json")
    swapped = tmp_path / "swapped.tar"
    raw = tar_bytes([(info("bundle.dsse.json", 2), b"{}"), (info("bundle.json", 2), b"{}")], head=None)
    swapped.write_bytes(raw)
    _refusal(swapped, r"bundle\.json: the first member is bundle\.dsse\.json, not bundle\.json")


def test_a_head_member_larger_than_its_bound_is_refused_before_it_is_read(tmp_path: Path) -> None:
    from mlci.bundle.manifest import MAX_MANIFEST

    header = info("bundle.json", MAX_MANIFEST + 1).tobuf(format=tarfile.PAX_FORMAT)
    path = tmp_path / "b.tar"
    with path.open("wb") as file:  # a sparse file: the member's data is a hole, never read
        file.write(header)
        file.truncate(len(header) + MAX_MANIFEST + 1 + 511 + 1024)
    _refusal(path, rf"bundle\.json: {MAX_MANIFEST + 1} bytes, more than the {MAX_MANIFEST} allowed")


@pytest.mark.parametrize("compress", [False, True], ids=["tar", "tar.zst"])
@pytest.mark.parametrize(("where", "match"), [
    ("data", r"oci-layout: truncated: the archive ends 2\d\d\d bytes before this member's end"),
    ("header", r"at byte \d+ of the tar: truncated: the archive ends inside a header"),
    ("padding", r"oci-layout: truncated: the archive ends inside this member's padding"),
    ("end blocks", r"truncated: the archive ends inside its end-of-archive blocks"),
    ("all end blocks", r"truncated: the archive ends without its end-of-archive blocks"),
])
def test_a_truncated_archive_is_refused(tmp_path: Path, compress: bool, where: str, match: str) -> None:
    raw = tar_bytes([(info("oci-layout", 3000), b"x" * 3000), (info(BLOB, 1), b"b")])
    start, end = raw.index(b"x" * 3000), raw.rindex(b"b") + 512
    cut = {"data": start + 100, "header": start + 3072 + 100, "padding": start + 3010, "end blocks": end + 600,
           "all end blocks": end}[where]
    if where == "data" and not compress:  # an uncompressed tar's size is known: refused at the header
        match = r"oci-layout: truncated: the member has 3000 bytes, the archive 100 left"
    path = tmp_path / "b.tar"
    path.write_bytes(zstd_bytes(raw[:cut]) if compress else raw[:cut])
    _refusal(path, match)


@pytest.mark.parametrize(("tail", "match"), [
    (b"garbage", r"bytes after the end of the archive \(at byte \d+"),
    (bytes(10240) + b"\x01", r"bytes after the end of the archive"),
])
def test_bytes_after_the_end_of_archive_blocks_are_refused(tmp_path: Path, tail: bytes, match: str) -> None:
    raw = tar_bytes([(info("oci-layout", 1), b"x")])
    for name, data in (("b.tar", raw + tail), ("b.tar.zst", zstd_bytes(raw + tail))):
        (tmp_path / name).write_bytes(data)
        _refusal(tmp_path / name, match)


def test_bytes_after_the_zstd_stream_or_a_damaged_one_are_refused(tmp_path: Path) -> None:
    frame = zstd_bytes(tar_bytes([(info("oci-layout", 1), b"x")]))
    cases = {"garbage": (frame + b"garbage!", r"bytes after the end of the zstd stream"),
             "cut": (frame[:-5], r"not a valid zstd stream|truncated: the zstd stream ends inside a frame"),
             "flipped": (frame[:20] + bytes([frame[20] ^ 0xFF]) + frame[21:], r"not a valid zstd stream|header")}
    for case, (data, match) in cases.items():
        (tmp_path / case).write_bytes(data)
        _refusal(tmp_path / case, match)
    (tmp_path / "two").write_bytes(zstd_bytes(tar_bytes([(info("oci-layout", 1), b"x")])[:2048]) +
                                   zstd_bytes(tar_bytes([(info("oci-layout", 1), b"x")])[2048:]))
    assert _read_all(open_bundle(tmp_path / "two")) == {"oci-layout": b"x"}  # frames one after another


@pytest.mark.parametrize(("damage", "match"), [
    ("bad checksum", r"not a tar header \(bad checksum\)"),
    ("lone zero block", r"a lone zero block followed by more data"),
    ("v7", r"not a ustar header"),
    ("gzip", r"gzip-compressed"),
    ("empty", r"an empty file"),
])
def test_a_damaged_tar_is_refused(tmp_path: Path, damage: str, match: str) -> None:
    raw = bytearray(tar_bytes([(info("oci-layout", 1), b"x"), (info(BLOB, 1), b"b")]))
    second = raw.index(BLOB.encode()) - 0
    if damage == "bad checksum":
        raw[second + 5] ^= 1
    elif damage == "lone zero block":
        raw[second: second] = bytes(512)
    elif damage == "v7":
        raw[second + 257: second + 265] = bytes(8)
        raw[second + 148: second + 156] = b"%06o\0 " % (sum(raw[second: second + 148]) + 256 +
                                                        sum(raw[second + 156: second + 512]))
    path = tmp_path / "b.tar"
    path.write_bytes({"gzip": b"\x1f\x8b\x08\x00rest", "empty": b""}.get(damage, bytes(raw)))
    _refusal(path, match)


def test_a_gnu_sparse_member_made_by_gnu_tar_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "src"
    write_bundle(source, "dir", {})
    with (source / "oci-layout").open("wb") as file:
        file.truncate(4 * MIB)
        file.write(b"data at the start; a hole after it")
    for fmt, match in (("gnu", r"oci-layout: a sparse file \(GNU\)"), ("posix", r"a sparse file \(GNU pax")):
        path = tmp_path / f"{fmt}.tar"
        subprocess.run(["tar", f"--format={fmt}", "--sparse", "-cf", path, "-C", source, "bundle.json",
                        "bundle.dsse.json", "oci-layout"], check=True)
        _refusal(path, match)


# ---- parts -----------------------------------------------------------------------------------------------------

@pytest.fixture
def three_parts(tmp_path: Path) -> list[Path]:
    files = {BLOB: random.Random(3).randbytes(2 * MIB + 5000), "oci-layout": b"x"}
    paths = write_bundle(tmp_path / "b.tar", "tar", files, part_size=MIB)
    assert len(paths) == 3
    return paths


def test_a_missing_middle_part_is_refused(three_parts: list[Path]) -> None:
    three_parts[1].unlink()
    _refusal(three_parts[0], r"part b\.tar\.001 is missing \(b\.tar\.002 exists\)")


def test_an_empty_or_cut_middle_part_is_refused(three_parts: list[Path]) -> None:
    os.truncate(three_parts[1], MIB - 1)
    _refusal(three_parts[0], r"part b\.tar\.001 has 1048575 bytes, not 1048576 as every part but the last")
    os.truncate(three_parts[1], 0)
    _refusal(three_parts[0], r"part b\.tar\.001 is empty")


def test_a_cut_or_missing_last_part_is_refused(three_parts: list[Path]) -> None:
    os.truncate(three_parts[2], 3000)
    _refusal(three_parts[0], r"truncated.*the last part, b\.tar\.002, is cut short")
    three_parts[2].unlink()
    _refusal(three_parts[0], r"blobs/sha256/abab.*: truncated.*the last part, b\.tar\.001, is cut short, or a part "
                             "after it is missing")


def test_a_missing_last_part_of_a_compressed_bundle_is_refused(tmp_path: Path) -> None:
    files = {BLOB: random.Random(3).randbytes(2 * MIB + 5000)}  # incompressible: three parts
    paths = write_bundle(tmp_path / "b.tar.zst", "tar.zst", files, part_size=MIB)
    paths[-1].unlink()
    _refusal(paths[0], r"b\.tar\.zst\.000: blobs/sha256/abab.*: truncated: the zstd stream ends inside a frame \(the "
                       r"last part, b\.tar\.zst\.001, is cut short, or a part after it is missing\)")


def test_a_last_part_larger_than_the_others_is_refused(three_parts: list[Path]) -> None:
    with three_parts[2].open("ab") as file:
        file.write(bytes(MIB))
    _refusal(three_parts[0], r"part b\.tar\.002 has \d+ bytes, more than the 1048576 of b\.tar\.000")


def test_parts_are_found_from_the_bundle_name_too(three_parts: list[Path]) -> None:
    reader = open_bundle(three_parts[0].with_name("b.tar"))
    assert reader.random_access and len(_read_all(reader)) == 2
    with pytest.raises(UsageError, match=r"b\.tar\.001: a part of a split bundle: open its first part, .*b\.tar\.000"):
        open_bundle(three_parts[1])


def test_members_are_read_in_place_from_parallel_threads_across_part_boundaries(tmp_path: Path) -> None:
    rng = random.Random(11)
    files = {f"blobs/sha256/{i:064x}": rng.randbytes(rng.randrange(MIB // 2, 3 * MIB // 2)) for i in range(8)}
    paths = write_bundle(tmp_path / "b.tar", "tar", files, part_size=MIB)
    assert len(paths) > 6
    reader = open_bundle(paths[0])  # open() before members(): indexed on first use

    def read(name: str) -> bytes:
        with reader.open(name) as stream:
            return b"".join(iter(lambda: stream.read(100_003), b""))

    with ThreadPoolExecutor(8) as pool:
        assert dict(zip(files, pool.map(read, list(files) * 3), strict=False)) == files
        assert list(pool.map(read, list(files) * 3)) == list(files.values()) * 3
    with pytest.raises(BundleInvalid, match=r"b\.tar\.000: index\.json: not in the bundle"):
        reader.open("index.json")


def test_a_compressed_bundle_is_read_as_a_stream_only(tmp_path: Path) -> None:
    paths = write_bundle(tmp_path / "b.tar.zst", "tar.zst", {"oci-layout": b"x"})
    reader = open_bundle(paths[0])
    assert not reader.random_access
    with pytest.raises(UsageError, match="a compressed bundle is read as a stream"):
        reader.open("oci-layout")


def test_a_bundle_whose_head_changes_between_passes_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.tar"
    path.write_bytes(tar_bytes([(info("oci-layout", 1), b"x")]))
    reader = open_bundle(path)
    reader.head()
    path.write_bytes(tar_bytes([(info("oci-layout", 1), b"x")], head=(b"{other}", HEAD[1])))
    with pytest.raises(BundleInvalid, match=r"bundle\.json or bundle\.dsse\.json changed since"):
        _read_all(reader)


def test_the_name_is_never_trusted_for_the_format(tmp_path: Path) -> None:
    raw = tar_bytes([(info("oci-layout", 1), b"x")])
    (tmp_path / "plain.tar.zst").write_bytes(raw)
    (tmp_path / "zstd.tar").write_bytes(zstd_bytes(raw))
    assert open_bundle(tmp_path / "plain.tar.zst").random_access
    assert not open_bundle(tmp_path / "zstd.tar").random_access
    assert _read_all(open_bundle(tmp_path / "zstd.tar")) == {"oci-layout": b"x"}
    with pytest.raises(UsageError, match="no bundle there"):
        open_bundle(tmp_path / "missing")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(UsageError, match="neither a directory nor a regular file"):
        open_bundle(tmp_path / "fifo")


# ---- the directory reader ---------------------------------------------------------------------------------------

@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    write_bundle(tmp_path / "b", "dir", {"oci-layout": b"{}", BLOB: b"blob", "artifacts/m/model.pkl": b"m"})
    return tmp_path / "b"


@pytest.mark.parametrize(("make", "match"), [
    (lambda d: os.symlink("../../oci-layout", d / "blobs/sha256" / ("cd" * 32)), r"a symbolic link"),
    (lambda d: os.symlink("/etc/passwd", d / "artifacts/m/passwd"), r"artifacts/m/passwd: a symbolic link"),
    (lambda d: os.symlink("m", d / "artifacts/n"), r"artifacts/n: a symbolic link"),
    (lambda d: os.mkfifo(d / "artifacts/fifo"), r"artifacts/fifo: a FIFO"),
    (lambda d: socket.socket(socket.AF_UNIX).bind(str(d / "artifacts/s")), r"artifacts/s: a socket"),
    (lambda d: (d / "stray.txt").write_bytes(b""), r"stray\.txt: not a name a bundle holds"),
    (lambda d: (d / "artifacts" / "bad\x1bname").write_bytes(b""), r"a name with a control or invisible"),
])
def test_the_directory_reader_refuses_what_is_not_a_safe_regular_file(bundle_dir: Path, make: object,
                                                                      match: str) -> None:
    make(bundle_dir)  # type: ignore[operator]
    _refusal(bundle_dir, rf"^{bundle_dir}: .*{match}")


def test_the_directory_head_is_a_regular_file_or_no_signature(bundle_dir: Path) -> None:
    (bundle_dir / "bundle.dsse.json").unlink()
    _refusal(bundle_dir, r"bundle\.dsse\.json: no signature: bundle\.dsse\.json is absent")
    os.symlink("oci-layout", bundle_dir / "bundle.dsse.json")
    _refusal(bundle_dir, r"bundle\.dsse\.json: a symbolic link")


def test_the_directory_open_never_follows_a_symlink(bundle_dir: Path) -> None:
    reader = open_bundle(bundle_dir)
    assert reader.open(BLOB).read() == b"blob"
    (bundle_dir / "artifacts/m/model.pkl").unlink()
    os.symlink("/etc/passwd", bundle_dir / "artifacts/m/model.pkl")
    with pytest.raises(BundleInvalid, match=r"artifacts/m/model\.pkl: a symbolic link"):
        reader.open("artifacts/m/model.pkl")
    os.rename(bundle_dir / "blobs", bundle_dir / "real")
    os.symlink("real", bundle_dir / "blobs")
    with pytest.raises(BundleInvalid, match=r"blobs/sha256/abab.*: a symbolic link or a file on the way"):
        reader.open(BLOB)
    with pytest.raises(BundleInvalid, match=r"\.\./x: a name with a '\.\.' component"):
        reader.open("../x")


# ---- sinks: failures, abort, refusals --------------------------------------------------------------------------

def _chunks_then_fail() -> Iterator[bytes]:
    yield b"x" * 1000
    raise EnvironmentProblem("source went away")


@pytest.mark.parametrize(("fmt", "part_size"), LAYOUTS)
def test_a_lying_source_makes_the_sink_unusable_and_abort_leaves_nothing(tmp_path: Path, fmt: Format,
                                                                        part_size: int | None) -> None:
    good = hashlib.sha256(b"abc").hexdigest()
    lies = [(3, good, [b"abd"], "sha256 .*, not the .* announced"), (3, good, [b"ab"], "2 bytes, not the 3"),
            (3, good, [b"ab", b"cd"], "more than the 3 bytes announced")]
    for i, (size, sha, chunks, match) in enumerate(lies):
        path = tmp_path / f"b{i}{_suffix(fmt)}"
        sink = open_sink(path, fmt, HEAD, part_size=part_size)
        sink.add("oci-layout", 3, good, [b"abc"])
        with pytest.raises(EnvironmentProblem, match=rf"{path}: index\.json: {match}"):
            sink.add("index.json", size, sha, chunks)
        with pytest.raises(EnvironmentProblem, match=r"not written: adding index\.json failed"):
            sink.commit()
        sink.abort()
    sink = open_sink(tmp_path / ("c" + _suffix(fmt)), fmt, HEAD, part_size=part_size)
    with pytest.raises(EnvironmentProblem, match="source went away"):
        sink.add(BLOB, 2000, good, _chunks_then_fail())
    sink.abort()
    sink.abort()
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(("fmt", "part_size"), LAYOUTS)
def test_abort_after_adds_leaves_nothing(tmp_path: Path, fmt: Format, part_size: int | None) -> None:
    data = random.Random(5).randbytes(2 * MIB)
    sink = open_sink(tmp_path / ("b" + _suffix(fmt)), fmt, HEAD, part_size=part_size)
    sink.add(BLOB, len(data), hashlib.sha256(data).hexdigest(), [data])
    assert os.listdir(tmp_path)
    sink.abort()
    assert os.listdir(tmp_path) == []
    with pytest.raises(UsageError, match="already aborted"):
        sink.add("oci-layout", 0, hashlib.sha256(b"").hexdigest(), [])


def test_open_sink_refuses_a_taken_path_and_bad_parts(tmp_path: Path) -> None:
    (tmp_path / "b.tar").write_bytes(b"")
    (tmp_path / "p.tar.004").write_bytes(b"")
    (tmp_path / "d.partial").mkdir()
    for path, fmt, part_size, match in [
            (tmp_path / "b.tar", "tar", None, "b.tar: already exists"),
            (tmp_path / "p.tar", "tar", MIB, r"p\.tar\.004: already exists"),
            (tmp_path / "d", "dir", None, r"d\.partial: already exists"),
            (tmp_path / "n.tar", "tar", MIB - 1, "at least 1048576 bytes"),
            (tmp_path / "n", "dir", MIB, "only a tar bundle is split")]:
        with pytest.raises(UsageError, match=match):
            open_sink(path, fmt, HEAD, part_size=part_size)  # type: ignore[arg-type]
    sink = open_sink(tmp_path / "n.tar", "tar", HEAD)
    sink.add("oci-layout", 0, hashlib.sha256(b"").hexdigest(), [])
    for name, match in [("oci-layout", "added twice"), ("../x", "'..' component"), ("bundle.json", "the head"),
                        ("etc/passwd", "not a name a bundle holds")]:
        with pytest.raises(UsageError, match=match):
            sink.add(name, 0, hashlib.sha256(b"").hexdigest(), [])
    assert sink.commit() == [tmp_path / "n.tar"]
    with pytest.raises(UsageError, match="already committed"):
        sink.commit()


# ---- memory ----------------------------------------------------------------------------------------------------

_FLAT = r"""
import hashlib, os, resource, sys
from pathlib import Path
from mlci.bundle.archive import open_bundle, open_sink
fmt, part_size, root = sys.argv[1], int(sys.argv[2]) or None, Path(sys.argv[3])
block = os.urandom(1 << 20)
total = 200 << 20
digest = hashlib.sha256()
for _ in range(200):
    digest.update(block)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
sink = open_sink(root / "b", fmt, (b"{}", b"{}"), part_size=part_size)
sink.add("blobs/sha256/" + digest.hexdigest(), total, digest.hexdigest(), (block for _ in range(200)))
reader = open_bundle(sink.commit()[0])
for member, stream in reader.members():
    check = hashlib.sha256()
    while chunk := stream.read(1 << 20):
        check.update(chunk)
    assert check.hexdigest() == digest.hexdigest()
if reader.random_access:
    stream = reader.open(member.name)
    while stream.read(1 << 20):
        pass
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)
"""


@pytest.mark.parametrize(("fmt", "part_size"), [("tar", MIB * 7), ("tar.zst", MIB * 7), ("dir", 0)])
def test_a_200_mb_member_is_written_and_read_in_flat_memory(tmp_path: Path, fmt: str, part_size: int) -> None:
    done = subprocess.run([sys.executable, "-c", _FLAT, fmt, str(part_size), str(tmp_path)], capture_output=True,
                          text=True, check=True)
    assert int(done.stdout) < 50, f"peak RSS grew by {done.stdout.strip()} MB"


@pytest.mark.parametrize("part_size", [None, 1 << 20])
def test_an_output_whose_last_bytes_cannot_be_flushed_is_removed_on_abort(tmp_path: Path,
                                                                         part_size: int | None) -> None:
    """On a full disk the close of the part being written fails as its writes did (ENOSPC): the .partial
    files stayed, and the error named "a file". /dev/full is that disk: every flush to it fails."""
    from mlci.bundle._parts import Output

    output = Output(tmp_path / "bundle", part_size)
    output.write(b"x" * 100)
    assert os.listdir(tmp_path)
    assert output._file is not None
    output._file.close()
    output._file = open("/dev/full", "wb", buffering=1 << 20)
    output._file.write(b"y" * 100)  # buffered: it fails when it is flushed
    output.abort()
    assert os.listdir(tmp_path) == []
