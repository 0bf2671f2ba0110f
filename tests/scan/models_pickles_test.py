"""The pickle walker and the sniffer under the model scan: globals exactly as the unpickler would import
them (memo, computed names), flat memory on a large payload, and no input that makes them crash."""
from __future__ import annotations

import io
import pickle
import tracemalloc

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlci.scan import pickles
from mlci.scan.models import scan_stream
from mlci.scan.sniff import sniff
from tests.testing.modelfiles import malicious


def _walk(data: bytes) -> pickles.Walk:
    return pickles.walk(io.BytesIO(data))


def test_every_protocol_is_sniffed_and_its_global_found() -> None:
    for protocol in range(6):
        data = malicious(protocol)
        assert sniff(data) == "pickle", protocol
        walked = _walk(data)
        assert walked.error is None and list(walked.globals) == [("posix", "system")], protocol
        assert walked.protocol == (protocol if protocol >= 2 else None)


def test_stack_global_names_come_from_the_memo_as_the_unpickler_reads_them() -> None:
    # four strings memoized and popped, two fetched back (BINGET) for the STACK_GLOBAL: the stack says which.
    data = (b"\x80\x04\x8c\x05numpy\x94\x8c\x05dtype\x94\x8c\x02os\x94\x8c\x06system\x940000"
            b"h\x02h\x03\x93\x8c\x04echo\x85R.")
    walked = _walk(data)
    assert walked.error is None and list(walked.globals) == [("os", "system")]


def test_a_global_whose_name_is_computed_at_load_time_is_unknown() -> None:
    data = b"\x80\x04\x8c\x08builtins\x8c\x03str\x93\x8c\x02os\x85R\x8c\x06system\x93)R."
    assert list(_walk(data).globals) == [("builtins", "str"), pickles.Unknown]
    scan = scan_stream("m", io.BytesIO(data), size=len(data), max_bytes=1 << 20)
    assert {(f.id, f.severity) for f in scan.findings} >= {("pickle-computed-global", "CRITICAL")}


def test_a_large_payload_is_skipped_in_flat_memory() -> None:
    size = 64 << 20
    data = pickle.dumps({"w": bytearray(size), "m": b"x" * size}, protocol=5)
    tracemalloc.start()
    try:
        walked = _walk(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert walked.error is None and walked.pickles == 1
    assert peak < 8 << 20, peak  # two 64 MB payloads, never held


def test_text_that_starts_like_protocol_0_is_not_a_pickle() -> None:
    for text in (b"c = 1\nd = 2\n", b"cos\nsystem\n", b"(a, b)\n", b"I1 is the first\n", b"Sample text\n",
                 b"Template: x\nType: y\n", b"Currently there is just one ChangeLog file for tar, but\nthere used "
                 b"to be separate ChangeLog files for each subdirectory. They have been merged. The end.\n",
                 b"id,name\n1,x\n", b'{"a": 1}', b"N\n", b"]]]", b"\x80\x04"):
        assert pickles.verdict(_walk(text)) is None, text
    assert pickles.verdict(_walk(b"cos\nsystem\n(S'echo'\ntR.")) == "pickle"
    assert pickles.verdict(_walk(b"cos\nsystem\n(S'echo'\ntR")) == "broken"  # no STOP: REDUCE already ran


VALID = malicious(4)
MAGIC = [b"\x80\x05", b"PK\x03\x04", b"\x1f\x8b\x08", b"\x93NUMPY\x01\x00", b"BZh91AY&SY", b"x\x9c", b"(", b"c"]


@settings(derandomize=True, max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.binary(max_size=2000),
    st.builds(lambda n, b: VALID[:n] + b, st.integers(0, len(VALID)), st.binary(max_size=200)),
    st.builds(lambda i, v: VALID[:i] + bytes([v]) + VALID[i + 1:], st.integers(0, len(VALID) - 1),
              st.integers(0, 255)),
    st.builds(lambda prefix, b: prefix + b, st.sampled_from(MAGIC), st.binary(max_size=300))))
def test_no_bytes_make_the_sniffer_or_the_scanner_crash(data: bytes) -> None:
    kind = sniff(data[:pickles.HEAD])
    walked = _walk(data)
    assert walked.error is None or walked.error
    scan = scan_stream("f", io.BytesIO(data), size=len(data), max_bytes=1 << 20)
    assert kind is not None or (scan.findings == () and scan.unscanned == ())
