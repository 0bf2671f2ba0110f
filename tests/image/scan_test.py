"""The secret scan: found wherever it sits in the stream (chunk boundaries included), never for values
too short to tell from chance, and done on the one read that tars and hashes a file."""
from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

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
