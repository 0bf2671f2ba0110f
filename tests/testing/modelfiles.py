"""Model files for the model-scan tests, made by the tests: pickles whose loading would call os.system (never
loaded), PyTorch-like zips, and the example's own scikit-learn model trained on a small data set."""
from __future__ import annotations

import io
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml

from tests.testing.repos import EXAMPLE

COMMAND = "echo mlci-test-payload"


class Payload:
    """Unpickling this calls os.system (posix.system): the attack the model scan exists for."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (COMMAND,))


def malicious(protocol: int = pickle.DEFAULT_PROTOCOL) -> bytes:
    """A model-like dict whose loading runs a shell command."""
    return pickle.dumps({"weights": [0.5, 1.5], "model": Payload()}, protocol=protocol)


def torch_zip(pickled: bytes) -> bytes:
    """A zip laid out like torch.save's: archive/data.pkl, archive/version and a raw storage."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", pickled)
        archive.writestr("archive/version", "3\n")
        archive.writestr("archive/data/0", bytes(range(256)) * 4)
    return buffer.getvalue()


def example_model(dest: Path, rows: int = 1000) -> Path:
    """The example repo's model/model.pkl, trained by its own src/ (generate, prepare, train) on `rows` rows and
    10 iterations, and the same model dumped by joblib beside it: model.joblib, model-z.joblib (zlib) and
    model-xz (xz, no extension)."""
    shutil.copytree(EXAMPLE / "src", dest / "src")
    params = yaml.safe_load((EXAMPLE / "params.yaml").read_text())
    params["generate"]["n_rows"], params["train"]["max_iter"] = rows, 10
    (dest / "params.yaml").write_text(yaml.safe_dump(params))
    script = ("import sys, pickle, joblib; sys.path.insert(0, 'src'); import generate, prepare, train; "
              "generate.main(); prepare.main(); train.main(); m = pickle.load(open(train.MODEL, 'rb')); "
              "joblib.dump(m, 'model/model.joblib'); joblib.dump(m, 'model/model-z.joblib', compress=3); "
              "joblib.dump(m, 'model/model-xz', compress=('xz', 3))")
    subprocess.run([sys.executable, "-c", script], cwd=dest, check=True, capture_output=True, timeout=300)
    return dest / "model" / "model.pkl"
