"""A layer streamed to a registry while it is produced (mlci's BlobStream, as `mlci build` uploads the
weights layer), with the registry answering each upload request after a delay, as a remote registry on an
object-store backend does (a PATCH is acknowledged once its chunk is stored).

    .venv/bin/python benchmarks/stream_upload.py [--mb 512] [--delays-ms 0,20,50] [--runs 3]

The producer writes 1 MiB pieces and takes their md5 (as the weights read does); mlci's defaults otherwise
(8 MiB chunks). The delay comes from the tests' fault proxy (tests/testing/faultproxy.py, `delay`), which
holds each upload request before relaying it to a local docker-registry. Pins what users do not: the
registry is on loopback, the delay is the proxy's. The result is the median MB/s per delay; to compare two
versions of mlci, run this at each (the figures in docs/benchmarks.md name the commits).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlci.oci.registry import Registry as Client
from tests.testing.faultproxy import FaultProxy
from tests.testing.registry import start_registry, stop_registry

MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"


def stream_once(client: Client, repo: str, mb: int, salt: int) -> float:
    """Seconds to produce and upload `mb` MiB of incompressible bytes (distinct per run)."""
    piece = os.urandom(1 << 20)
    writer = client.blob_writer(repo, MEDIA_TYPE)
    md5 = hashlib.md5(usedforsecurity=False)
    started = time.perf_counter()
    for i in range(mb):
        data = piece[:-8] + i.to_bytes(4, "big") + salt.to_bytes(4, "big")
        md5.update(data)
        writer.write(data)
    writer.finish()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=512)
    parser.add_argument("--delays-ms", default="0,20,50", help="comma-separated delays per upload request")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    registry = start_registry()
    try:
        print("| delay per upload request | median | MB/s |\n|---|---|---|")
        for delay_ms in (int(d) for d in args.delays_ms.split(",")):
            proxy = FaultProxy(registry.host, [], delay=delay_ms / 1000)
            try:
                client = Client(proxy.host, plain_http=True)
                runs = [stream_once(client, f"bench/d{delay_ms}", args.mb, run) for run in range(args.runs)]
            finally:
                proxy.stop()
            median = statistics.median(runs)
            print(f"| {delay_ms} ms | {median:.2f} s | {args.mb / median:.0f} |")
    finally:
        stop_registry(registry)


if __name__ == "__main__":
    main()
