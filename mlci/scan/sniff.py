"""What a file is, by its first bytes and never by its name (DVC cache objects have none): a pickle of any
protocol, a zip archive, a compressed stream, a numpy .npy, safetensors, HDF5, ONNX or GGUF. Protocols 0
and 1 declare nothing, so a pickle is told from text by reading it: its opcodes must keep the unpickler's
stack rules (mlci.scan.pickles.probe), which text, CSV and JSON break within a few bytes."""
from __future__ import annotations

import ast
import re
import struct
from typing import Any, Literal

from mlci.core import jsonsafe
from mlci.scan import pickles

Format = Literal["pickle", "zip", "gzip", "bz2", "xz", "zstd", "zlib", "lzma", "lz4", "npy", "safetensors",
                 "hdf5", "onnx", "gguf"]
COMPRESSED: tuple[Format, ...] = ("gzip", "bz2", "xz", "zstd", "zlib", "lzma")
SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024  # the format's own limit
_MAGIC: tuple[tuple[bytes, Format], ...] = (
    (b"PK\x03\x04", "zip"), (b"\x1f\x8b\x08", "gzip"), (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x04\x22\x4d\x18", "lz4"), (b"\x93NUMPY", "npy"), (b"GGUF", "gguf"))
_HDF5 = b"\x89HDF\r\n\x1a\n"
_ONNX_FIELDS = frozenset(b"\x12\x1a\x22\x28\x32\x3a\x42")  # ModelProto fields 2-8 after ir_version (field 1)


def sniff(head: bytes) -> Format | None:
    """The format of a file that starts with `head`, or None for anything else. "pickle" means it may be one:
    the walk of the whole file decides (mlci.scan.pickles.verdict)."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head[:3] == b"BZh" and head[3:4].isdigit() and head[4:10] == b"1AY&SY":
        return "bz2"
    if any(head[at:at + 8] == _HDF5 for at in (0, 512, 1024, 2048)):
        return "hdf5"
    if _safetensors_prefix(head):
        return "safetensors"
    if pickles.probe(head):
        return "pickle"
    if len(head) >= 2 and head[0] & 0x0F == 8 and head[0] >> 4 <= 7 and not head[1] & 0x20 \
            and (head[0] << 8 | head[1]) % 31 == 0:
        return "zlib"  # joblib's default compression: a zlib stream (confirmed by what it decompresses to)
    if head[:1] == b"]" and len(head) >= 13 and _power_of_two(int.from_bytes(head[1:5], "little"), 12, 30):
        return "lzma"  # the .lzma "alone" format joblib writes: a dictionary of 4 KiB-1 GiB (confirmed likewise)
    if len(head) >= 3 and head[0] == 0x08 and 1 <= head[1] <= 15 and head[2] in _ONNX_FIELDS:
        return "onnx"
    return None


def _power_of_two(n: int, low: int, high: int) -> bool:
    return n & (n - 1) == 0 and 1 << low <= n <= 1 << high


def _safetensors_prefix(head: bytes) -> bool:
    """An 8-byte little-endian header length, then a JSON object."""
    if len(head) < 10:
        return False
    size = struct.unpack("<Q", head[:8])[0]
    return 2 <= size <= SAFETENSORS_MAX_HEADER and head[8:9] == b"{"


def safetensors_problem(header: bytes, file_size: int | None) -> str | None:
    """Why a safetensors header is not one (None when it is): JSON, each tensor a dtype, a shape and
    offsets inside the file, optional string `__metadata__`."""
    try:
        data = jsonsafe.loads(header)
    except (ValueError, UnicodeDecodeError):
        return "its header is not JSON"
    if not isinstance(data, dict):
        return "its header is not a JSON object"
    body = None if file_size is None else file_size - 8 - len(header)
    for name, entry in data.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                return "its __metadata__ is not a map of strings"
            continue
        if not (isinstance(entry, dict) and isinstance(entry.get("dtype"), str)
                and isinstance(entry.get("shape"), list) and _ints(entry["shape"])
                and isinstance(entry.get("data_offsets"), list) and len(entry["data_offsets"]) == 2
                and _ints(entry["data_offsets"]) and entry["data_offsets"][0] <= entry["data_offsets"][1]):
            return f"tensor {name[:80]!r} lacks a dtype, shape or data_offsets"
        if body is not None and entry["data_offsets"][1] > body:
            return f"tensor {name[:80]!r} lies past the end of the file"
    return None


def _ints(values: list[Any]) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values)


def npy_header(head: bytes) -> tuple[bool, int]:
    """(whether the array holds Python objects, which numpy pickles after the header; the header's end) of
    a .npy file; ValueError when the header is not numpy's."""
    major = head[6:7]
    if major == b"\x01":
        start, size = 10, int.from_bytes(head[8:10], "little")
    elif major in (b"\x02", b"\x03"):
        start, size = 12, int.from_bytes(head[8:12], "little")
    else:
        raise ValueError(f"unknown .npy version {major!r}")
    if start + size > len(head):
        raise ValueError(f"a {size}-byte .npy header, longer than mlci reads")
    try:
        text = head[start:start + size].decode("utf-8" if major == b"\x03" else "latin-1")
        if major == b"\x01":
            text = re.sub(r"(\d)L\b", r"\1", text)  # Python 2's long literals, which numpy also accepts
        header = ast.literal_eval(text)  # as numpy's own reader parses it: literals only, never code
    except (UnicodeDecodeError, SyntaxError, RecursionError, MemoryError) as exc:
        raise ValueError(f"a .npy header that is not a Python literal ({type(exc).__name__})") from None
    if not isinstance(header, dict) or "descr" not in header:
        raise ValueError("a .npy header without `descr`")
    return _has_object(header["descr"]), start + size


def _has_object(descr: Any) -> bool:
    """Whether a numpy `descr` (a type string, or a list of (name, descr[, shape]) fields) holds objects."""
    if isinstance(descr, str):
        return descr.lstrip("<>|=").startswith("O")
    if isinstance(descr, list):
        return any(not (isinstance(f, tuple) and len(f) in (2, 3)) or _has_object(f[1]) for f in descr)
    return True  # not numpy's: assume the worst (the pickle walk then says what follows the header)
