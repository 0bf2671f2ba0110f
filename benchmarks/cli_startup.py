"""Start-up time of `mlci --help` next to `dvc --version`, measured side by side in one run.

Each command runs as a fresh process (a new interpreter each time, as in a CI job), alternating
the two so that both see the same machine state. Prints the median and min of N runs and the ratio.

    .venv/bin/python benchmarks/cli_startup.py [-n 15]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import as_installed

BIN = Path(sys.executable).parent


def _time(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=15)
    runs = parser.parse_args().n
    print(as_installed.prepare(), flush=True)
    commands = {"mlci --help": [str(BIN / "mlci"), "--help"], "dvc --version": [str(BIN / "dvc"), "--version"]}
    for argv in commands.values():
        _time(argv)  # warm the page cache once, as a CI runner's image would be
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            samples[name].append(_time(argv))
    for name, values in samples.items():
        print(f"{name:<15} median {statistics.median(values) * 1000:6.0f} ms   min {min(values) * 1000:6.0f} ms")
    ratio = statistics.median(samples["mlci --help"]) / statistics.median(samples["dvc --version"])
    print(f"ratio mlci/dvc  {ratio:.2f}x  (target: mlci --help <= 150 ms)")


if __name__ == "__main__":
    main()
