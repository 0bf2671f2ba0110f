"""The secret scan: found wherever it sits in the stream (chunk boundaries included), never for values
too short to tell from chance, and done on the one read that tars and hashes a file."""
from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlci.image.entries import Collector
from mlci.image.layers import build_layer
from mlci.image.scan import MIN_LENGTH, Scanner, SecretInImage

SECRET = "glpat-Zq8xW3vB7nK2mR5t"


def _read_all(scanner: Scanner, data: bytes, chunk: int) -> None:
    reader = scanner.reader(io.BytesIO(data), "f")
    while reader.read(chunk):
        pass


def test_a_secret_is_found_across_every_chunk_boundary() -> None:
    scanner = Scanner([SECRET, "another-long-secret-value"])
    needle = SECRET.encode()
    for chunk in (1, 2, 3, 5, len(needle) - 1, len(needle), len(needle) + 1, 64):
        for offset in range(0, 40):
            data = b"x" * offset + needle + b"y" * 17
            with pytest.raises(SecretInImage, match=r"^f: holds the value of a secret"):
                _read_all(scanner, data, chunk)


def test_no_false_positive_from_a_prefix_and_a_suffix_in_separate_places() -> None:
    scanner = Scanner([SECRET])
    half = len(SECRET) // 2
    data = SECRET[:half].encode() + b"-" + SECRET[half:].encode() + SECRET[:-1].encode()
    for chunk in (1, 3, 7, 1 << 20):
        _read_all(scanner, data, chunk)


def test_values_too_short_to_tell_from_chance_are_not_looked_for() -> None:
    scanner = Scanner(["abc", "x" * (MIN_LENGTH - 1)])
    assert scanner.needles == []
    scanner.check(b"abc" + b"x" * 100, "f")


def test_a_layer_with_a_secret_in_a_file_or_a_name_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "ok.py").write_text("print()\n")
    (tmp_path / "src" / "settings.py").write_bytes(os.urandom(3 << 20) + SECRET.encode() + b"\n")
    collector = Collector(tmp_path, dvc_cache=lambda: None)
    with pytest.raises(SecretInImage, match=r"^src/settings\.py: holds the value"):
        build_layer(collector.entries([("src", "app/src")]), tmp_path / "out", Scanner([SECRET]))
    (tmp_path / "src" / "settings.py").unlink()
    (tmp_path / "src" / f"dump-{SECRET}.txt").write_text("")
    with pytest.raises(SecretInImage, match=r"^src/dump-.*\.txt: holds the value"):
        build_layer(collector.entries([("src", "app/src")]), tmp_path / "out", Scanner([SECRET]))


def _bytes_read() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_a_large_file_is_read_once_to_tar_hash_and_scan_it(tmp_path: Path) -> None:
    size = 24 << 20
    (tmp_path / "model").mkdir()
    with (tmp_path / "model" / "weights.bin").open("wb") as handle:
        for _ in range(size >> 20):
            handle.write(os.urandom(1 << 20))
    entries = Collector(tmp_path, dvc_cache=lambda: None).entries([("model", "app/model")])
    before = _bytes_read()
    layer = build_layer(entries, tmp_path / "out", Scanner([SECRET, "x" * 40]))
    read = _bytes_read() - before
    assert layer.size > size and size <= read < size * 1.2  # one pass over the weights, not two


class _Chunked(io.RawIOBase):
    """A stream whose reads return at most `step` bytes (a pipe, a slow file), the same bytes objects each time."""

    def __init__(self, data: bytes, step: int) -> None:
        super().__init__()
        self.data, self.step, self.at = data, step, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        n = self.step if size < 0 else min(size, self.step)
        out = self.data[self.at:self.at + n]
        self.at += len(out)
        return out


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), at=st.integers(min_value=0, max_value=300), step=st.integers(1, 64),
       sizes=st.lists(st.integers(min_value=1, max_value=80), min_size=1, max_size=8), secret=st.booleans())
def test_any_chunking_hands_on_the_bytes_unchanged_and_no_byte_of_a_secret(
        data: bytes, at: int, step: int, sizes: list[int], secret: bool) -> None:
    needle = SECRET.encode()
    at = min(at, len(data))
    stream = data[:at] + needle + data[at:] if secret else data
    reader = Scanner([SECRET]).reader(_Chunked(stream, step), "f")
    handed = b""
    try:
        for i in range(10_000):
            got = reader.read(sizes[i % len(sizes)])
            if not got:
                break
            handed += got
    except SecretInImage:
        assert secret and len(handed) <= at  # refused before the secret's first byte left
        return
    assert not (secret and needle in stream) and handed == stream


def test_reads_of_the_chunk_size_hand_on_the_chunks_read() -> None:
    """The weights path: a 1 MiB read of a file read in 1 MiB chunks is the chunk itself, not a copy."""
    chunks = [os.urandom(1 << 20) for _ in range(3)]

    class _Chunks(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            return chunks.pop(0) if chunks else b""

    expected = list(chunks)
    reader = Scanner([SECRET]).reader(_Chunks(), "f")
    handed = [reader.read(1 << 20) for _ in range(3)]
    assert all(got is chunk for got, chunk in zip(handed, expected, strict=True))
    assert reader.read(1 << 20) == b""
