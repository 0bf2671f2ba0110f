"""The model-file scan of a repository tree: malicious pickles are CRITICAL findings whatever their name
(DVC cache objects have none), inside zips and behind joblib's compression too; the example's benign
scikit-learn model gives information only; text, CSV, JSON and weights are not taken for pickles; broken
files are listed as not scanned with a reason; a symlink out of the repo is never read."""
from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import joblib
import numpy as np
import pytest

from mlci.scan.findings import Finding
from mlci.scan.models import ModelScan, scan_tree
from tests.testing.modelfiles import Payload, example_model, malicious, torch_zip

LIMIT = 1 << 30


def write(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def failing(scan: ModelScan) -> list[Finding]:
    return [f for f in scan.findings if not f.informational]


def critical_paths(scan: ModelScan) -> set[str]:
    return {f.target for f in scan.findings
            if f.severity == "CRITICAL" and f.id == "pickle:posix.system" and not f.informational}


@pytest.fixture(scope="module")
def benign(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example's model, trained by its own code on 2000 rows."""
    return example_model(tmp_path_factory.mktemp("example"))


@pytest.mark.parametrize("protocol", range(6))
def test_a_malicious_pickle_is_critical_with_and_without_an_extension(tmp_path: Path, protocol: int) -> None:
    data = malicious(protocol)
    root = write(tmp_path, {"model/model.pkl": data, ".dvc/cache/files/md5/3f/a0c1d2e3f4a5b6c7d8e9f0a1b2c3d4": data,
                            "weights": data})
    scan = scan_tree(root, max_bytes=LIMIT)
    assert critical_paths(scan) == {"model/model.pkl", ".dvc/cache/files/md5/3f/a0c1d2e3f4a5b6c7d8e9f0a1b2c3d4",
                                    "weights"}
    finding = next(f for f in scan.findings if f.path == "weights")
    assert finding.kind == "model" and "posix.system" in finding.title and "posix.system" in finding.detail
    assert scan.unscanned == () and scan.scanned == 3 and scan.files == 3


def test_the_examples_scikit_learn_model_gives_information_not_a_failure(benign: Path) -> None:
    scan = scan_tree(benign.parent, max_bytes=LIMIT)
    assert failing(scan) == [] and scan.unscanned == ()
    assert scan.scanned == 4
    info = {f.target: f for f in scan.findings}
    assert set(info) == {"model.pkl", "model.joblib", "model-z.joblib", "model-xz"}
    # picklescan calls functools.partial dangerous; the model holds partial(check_array), which mlci keeps
    # as information because the callable it forwards to is judged on its own.
    assert "functools.partial" in info["model.pkl"].detail
    assert "sklearn.ensemble._hist_gradient_boosting" in info["model.pkl"].detail
    assert all(f.severity == "LOW" and f.id == "pickle-globals" for f in scan.findings)


def test_a_partial_around_a_dangerous_callable_still_fails(tmp_path: Path) -> None:
    import functools

    class Wrapped:
        def __reduce__(self) -> tuple[object, tuple[()]]:
            return (functools.partial(os.system, "echo x"), ())

    scan = scan_tree(write(tmp_path, {"m": pickle.dumps(Wrapped())}), max_bytes=LIMIT)
    assert critical_paths(scan) == {"m"}


@pytest.mark.parametrize("compress", [3, ("gzip", 3), ("bz2", 3), ("lzma", 3), ("xz", 3)])
def test_code_after_a_numpy_array_in_a_joblib_file_is_found(tmp_path: Path, compress: object) -> None:
    # joblib writes an array's raw bytes between pickle opcodes: modelscan, picklescan and fickling stop
    # there, and joblib.load would still run what follows.
    joblib.dump([np.arange(1000.0), np.array(["a", None], dtype=object), Payload()], tmp_path / "plain")
    joblib.dump([np.arange(1000.0), Payload()], tmp_path / "compressed", compress=compress)
    scan = scan_tree(tmp_path, max_bytes=LIMIT)
    assert critical_paths(scan) == {"plain", "compressed"}
    assert scan.unscanned == () and scan.scanned == 2


def test_a_gzip_or_bz2_pickle_is_found_and_other_compressed_files_are_left_alone(tmp_path: Path) -> None:
    data = malicious()
    root = write(tmp_path, {"a.pkl.gz": gzip.compress(data), "b": bz2.compress(data), "c": lzma.compress(data),
                            "d": zlib.compress(data), "notes.txt.gz": gzip.compress(b"just text\n" * 100),
                            "logs.xz": lzma.compress(b"2024-01-01 INFO started\n" * 50)})
    scan = scan_tree(root, max_bytes=LIMIT)
    assert critical_paths(scan) == {"a.pkl.gz", "b", "c", "d"}
    assert scan.unscanned == () and scan.files == 6


def test_a_pickle_inside_a_zip_is_found_under_the_member_name(tmp_path: Path) -> None:
    npz = io.BytesIO()
    np.savez(npz, w=np.arange(4.0), labels=np.array([{"a": 1}], dtype=object))
    root = write(tmp_path, {"model.pt": torch_zip(malicious(2)), "blob": torch_zip(malicious(5)),
                            "fine.pt": torch_zip(pickle.dumps({"w": [1.0]}, protocol=2)), "arrays.npz": npz.getvalue()})
    scan = scan_tree(root, max_bytes=LIMIT)
    assert critical_paths(scan) == {"model.pt:archive/data.pkl", "blob:archive/data.pkl"}
    assert {f.path for f in failing(scan)} == {"model.pt", "blob"}
    assert scan.unscanned == ()
    assert scan.scanned == 3 + 2  # three data.pkl, the .npz's two arrays (one of them pickled objects)


def test_text_csv_json_and_binary_weights_are_not_taken_for_pickles(tmp_path: Path, benign: Path) -> None:
    rng = np.random.default_rng(7)
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    files = {
        "applications.csv": (benign.parent.parent / "data" / "raw" / "applications.csv").read_bytes(),
        "params.json": json.dumps({"learning_rate": 0.1, "layers": [1, 2]}).encode(),
        "params.yaml": (benign.parent.parent / "params.yaml").read_bytes(),
        "train.py": (benign.parent.parent / "src" / "train.py").read_bytes(),
        "README": b"(c) 2024 The team.\nIntroduction\n", "cfg": b"c = 1\nd = 2\n(e)\n",
        "weights.bin": rng.standard_normal(4096).astype(np.float32).tobytes(),
        "ints.bin": np.arange(4096, dtype=np.int64).tobytes(), "empty": b"", "one": b".",
        "model.safetensors": struct.pack("<Q", len(header)) + header + bytes(16),
        "plain.npy": _npy(np.arange(10.0)),
    }
    scan = scan_tree(write(tmp_path, files), max_bytes=LIMIT)
    assert scan.findings == () and scan.unscanned == ()
    assert scan.scanned == 2 and scan.files == len(files)  # the safetensors header and the .npy were checked


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def test_broken_pickles_are_listed_not_scanned_with_a_reason(tmp_path: Path) -> None:
    data = malicious(4)
    stop = data.index(b"R") + 1  # right after the REDUCE: loading it would already have run the command
    corrupt = bytearray(pickle.dumps({"a": list(range(50))}, protocol=4))
    corrupt[30] = 0xFF
    root = write(tmp_path, {"half.pkl": pickle.dumps(list(range(200)), protocol=4)[:300],
                            "after-reduce": data[:stop], "corrupt": bytes(corrupt)})
    scan = scan_tree(root, max_bytes=LIMIT)
    reasons = {u.path: u.reason for u in scan.unscanned}
    assert set(reasons) == {"half.pkl", "after-reduce", "corrupt"}
    assert "truncated at byte 300" in reasons["half.pkl"]
    assert "truncated" in reasons["after-reduce"] and "global(s) before that were checked" in reasons["after-reduce"]
    assert "byte 30: b'\\xff' is not a pickle opcode" in reasons["corrupt"]
    assert critical_paths(scan) == {"after-reduce"}
    assert scan.scanned == 0


def test_files_that_hold_code_mlci_does_not_read_are_listed(tmp_path: Path) -> None:
    keras = io.BytesIO()
    with zipfile.ZipFile(keras, "w") as archive:
        archive.writestr("metadata.json", '{"keras_version": "3.5.0"}')
        archive.writestr("config.json", '{"class_name": "Sequential"}')
    files = {"model.h5": b"\x89HDF\r\n\x1a\n" + bytes(64), "model.onnx": b"\x08\x07\x12\x07pytorch" + bytes(32),
             "llm": b"GGUF\x03\x00\x00\x00" + bytes(32), "model.keras": keras.getvalue(),
             "bad.safetensors": struct.pack("<Q", 20) + b"{not json at all}   " + bytes(8)}
    scan = scan_tree(write(tmp_path, files), max_bytes=LIMIT)
    reasons = {u.path: u.reason for u in scan.unscanned}
    assert set(reasons) == set(files)
    assert "Lambda layers" in reasons["model.h5"] and "Keras 3" in reasons["model.keras"]
    assert "ONNX" in reasons["model.onnx"] and "GGUF" in reasons["llm"]
    assert "header is not JSON" in reasons["bad.safetensors"]
    assert scan.findings == ()


def test_an_encrypted_zip_member_and_a_file_over_the_limit_are_listed(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data.pkl", malicious())
    data = bytearray(buffer.getvalue())
    data[6] |= 1  # the local header's "encrypted" flag
    central = data.index(b"PK\x01\x02")
    data[central + 8] |= 1  # and the central directory's
    big = pickle.dumps(bytes(4096), protocol=4)
    scan = scan_tree(write(tmp_path, {"secret.zip": bytes(data), "big.pkl": big}), max_bytes=1000)
    reasons = {u.path: u.reason for u in scan.unscanned}
    assert reasons == {"secret.zip:data.pkl": "an encrypted zip member: not read",
                       "big.pkl": "0.0 MB, over scan.model_max_mb (0.0 MB): not read"}
    assert scan.findings == ()


def test_a_symlink_out_of_the_repo_is_never_read(tmp_path: Path) -> None:
    outside = write(tmp_path / "outside", {"evil.pkl": malicious(), "dir/evil.pkl": malicious()})
    repo = write(tmp_path / "repo", {"model/real.pkl": malicious()})
    (repo / "linked.pkl").symlink_to(outside / "evil.pkl")
    (repo / "up.pkl").symlink_to("../outside/evil.pkl")
    (repo / "linked-dir").symlink_to(outside / "dir")
    (repo / "inside.pkl").symlink_to("model/real.pkl")
    (repo / "dangling").symlink_to("nowhere")
    (repo / "loop").symlink_to("loop")
    scan = scan_tree(repo, max_bytes=LIMIT)
    assert critical_paths(scan) == {"inside.pkl"}  # read once, under the first name (sorted)
    reasons = {u.path: u.reason for u in scan.unscanned}
    assert reasons == {"linked.pkl": "a symlink out of the repository: not followed",
                       "up.pkl": "a symlink out of the repository: not followed",
                       "loop": "a symlink out of the repository: not followed",
                       "linked-dir": "a directory symlink out of the repository: not followed"}


def test_git_is_skipped_and_the_dvc_cache_comes_after_the_workspace(tmp_path: Path) -> None:
    root = write(tmp_path, {".git/objects/ab/cdef": malicious(), "model.pkl": malicious()})
    cache = root / ".dvc" / "cache" / "files" / "md5" / "ab" / "cdef0123"
    cache.parent.mkdir(parents=True)
    os.link(root / "model.pkl", cache)  # DVC's hardlink cache: one file, two names
    (root / "zz.pkl").symlink_to(".git/objects/ab/cdef")
    scan = scan_tree(root, max_bytes=LIMIT)
    assert critical_paths(scan) == {"model.pkl"} and scan.files == 1
