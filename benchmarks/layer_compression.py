"""What each layer compression costs on weights-like bytes: gzip level 6 (as mlci writes code layers),
zstd level 3 (mlci's `zstd`, through the pinned backports-zstd) and none, size and CPU time per input.

    .venv/bin/python benchmarks/layer_compression.py [--mb 64] [--model example-model-repo/model/model.pkl]

Inputs: random bytes (quantised or encrypted weights, already-compressed formats), float32 values drawn
from a normal distribution (raw float weights; needs numpy), and, if it exists, the example's trained
model. The figures are in docs/build.md ("Compression by content").
"""
from __future__ import annotations

import argparse
import gzip
import os
import time
from pathlib import Path

from mlci.image.layers import GZIP_LEVEL, ZSTD_LEVEL, zstd_module


def measure(name: str, data: bytes) -> None:
    """One line per compression: bytes out, share of the input, CPU seconds, MB/s."""
    zstd = zstd_module()
    print(f"{name}: {len(data)} bytes")
    for label, compress in (("gzip-6", lambda d: gzip.compress(d, GZIP_LEVEL, mtime=0)),
                            ("zstd-3", lambda d: zstd.compress(d, level=ZSTD_LEVEL)), ("none", lambda d: d)):
        started = time.process_time()
        out = compress(data)
        seconds = time.process_time() - started
        speed = f"{len(data) / 1e6 / seconds:8.0f} MB/s" if seconds > 0.001 and label != "none" else "       - MB/s"
        print(f"  {label:7s} {len(out):>12d} bytes {100 * len(out) / len(data):7.2f}%  {seconds:7.3f} s CPU {speed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=64, help="MiB of random and of float32 weights")
    parser.add_argument("--model", default="example-model-repo/model/model.pkl", help="a real model file")
    args = parser.parse_args()
    size = args.mb << 20
    measure(f"random weights ({args.mb} MiB)", os.urandom(size))
    try:
        import numpy as np
    except ImportError:
        print("float32 weights: skipped (numpy not installed)")
    else:
        values = np.random.default_rng(0).standard_normal(size // 4, dtype=np.float32)
        measure(f"float32 weights, normal values ({args.mb} MiB)", values.tobytes())
    model = Path(args.model)
    if model.is_file():
        measure(str(model), model.read_bytes())
    else:
        print(f"{model}: not there (train the example first: dvc repro in example-model-repo)")


if __name__ == "__main__":
    main()
