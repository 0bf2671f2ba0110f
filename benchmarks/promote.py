"""The image side of `mlci promote` between two local registries, side by side with `skopeo copy` in one run
(issue 11, "Performance"). Cases:

  small   a 500 MB image in 3 layers into a fresh destination registry each run: mlci vs
          `skopeo copy docker://SRC docker://DST --src-tls-verify=false --dest-tls-verify=false`;
          median of --runs and the ratio; target <= 1.0x
  many    an 80-layer image of 2 GB, the same way; target <= 0.5x skopeo if skopeo shows a per-layer cost
          here (skopeo#2525: its MB/s on 80 layers below 0.75x its MB/s on 3), else <= 1.0x
  again   re-promoting the small image, already at the destination: wall time of a fresh process, and the
          HTTP requests in the destination's and the source's access logs; target <= 0.2 s, <= 5 requests
  large   images of 1, 5 and 10 GB (4 layers each), one fresh destination each: peak RSS <= 200 MB, time
          linear in bytes (every point, the median of --large-runs copies, within 10% of the least-squares
          line). Each copy starts from a dropped page cache (`sync`, /proc/sys/vm/drop_caches as root) and
          its time runs until the destination's files are written back (`sync`): without that a copy smaller
          than the kernel's dirty-page allowance (20% of RAM: 4.6 GB here) ends in memory while the larger
          ones are throttled to the disk's speed

    .venv/bin/python benchmarks/promote.py                           # every case, default sizes
    .venv/bin/python benchmarks/promote.py --cases small,again --runs 5
    .venv/bin/python benchmarks/promote.py --small-mb 50 --many-mb 80 --large-mb 100,200,400 --runs 2  # quick

"mlci (library)" is what `mlci promote` does to the image, in a fresh interpreter (`python -c` of LIBRARY
below): mlci.oci.copy.open_endpoint with default `registries` settings (plain_http for the two loopback hosts
only), mlci.promote.copy.check_tag, stage, tag. "mlci promote (CLI)" is the whole command on a model repo
whose policy needs no scan record and no signature (require_scan: false, sign: false, gitops.gto: false, no
GitOps repository): the same copy plus the CLI's fixed costs (start-up, config, git, the revision label, the
scan-record lookup, the audit line). Wall time: perf_counter around `/usr/bin/time -v`; peak RSS: its
"Maximum resident set size". Every copy is checked: the destination tag names the source's digest.

Pinned by the harness (it prints this too): random, incompressible layers, gzip streams of stored blocks
(skopeo gzips a layer it finds uncompressed), pushed with plain `requests` (chunked uploads), and an OCI
manifest whose config carries the bench repo's HEAD as org.opencontainers.image.revision, and so do the
manifest's annotations (`mlci build` writes its labels in both; promote reads the annotation first); plain-HTTP
docker-registry 2.8 on 127.0.0.1; a fresh destination registry per measured copy (so neither tool can mount or
skip a blob); skopeo's blob-info cache in the work dir.
Disk: the source image plus one copy at a time (about 20 GB for the 10 GB point; sizes are done one at a time
and deleted). Exit code 1 when a case misses its target (the figures are printed either way).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks import as_installed  # noqa: E402
from benchmarks import build_support as bs  # noqa: E402
from tests.testing.registry import Registry, access_log, start_registry, stop_registry  # noqa: E402

CASES = ("small", "many", "again", "large")
TARGETS = {"small": 1.0, "many_layer_cost": 0.5, "many": 1.0, "again_s": 0.2, "again_requests": 5,
           "large_rss_mb": 200.0, "large_residual": 0.10}
PER_LAYER_COST = 0.75  # skopeo's MB/s on many layers below this fraction of its MB/s on 3: the cost shows
REPO, TAG = "bench/model", "v1.0.0"
CHUNK = 64 << 20
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
PINNED = ("harness pins: random layers (gzip, stored blocks), plain-HTTP docker-registry 2.8 on loopback, a fresh "
          "destination registry per measured copy, mlci's default `registries` settings but plain_http, skopeo's "
          "blob-info cache in the work dir")
# What `mlci promote` does to the image (mlci/promote/run.py), in a fresh interpreter: argv SRC_REF DST_HOST
# DST_REPO TAG. The one place to adapt when the library's names change.
LIBRARY = """
import sys
from mlci.oci.copy import open_endpoint
from mlci.oci.reference import DockerRef, parse
from mlci.oci.settings import RegistrySettings
from mlci.promote import copy
src_ref, dst_host, dst_repo, name = sys.argv[1:5]
ref = parse(src_ref)
registries = {ref.registry: RegistrySettings(plain_http=True), dst_host: RegistrySettings(plain_http=True)}
src, src_tag = open_endpoint(ref, registries=registries)
dst, _ = open_endpoint(DockerRef(dst_host, dst_repo), registries=registries)
top = src.get_manifest(src_tag)
digest = top.digest
seen = copy.check_tag(dst, name, digest, force=False)
if seen != digest:
    dst.check_writable()
staged = copy.stage(src, digest, dst, top, there=seen)
copy.tag(dst, staged, name, aliases=False, force=False, seen=seen)
print(digest)
"""


@dataclass(frozen=True)
class Measured:
    """One measured process: wall seconds (perf_counter) and peak RSS (MB, /usr/bin/time -v)."""

    wall: float
    rss_mb: float
    stdout: str


@dataclass
class Results:
    rows: dict[str, list[str]] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, case: str, row: str, ok: bool | None) -> None:
        verdict = "n/a" if ok is None else "PASS" if ok else "FAIL"
        self.rows.setdefault(case, []).append(f"{row} | {verdict} |")
        if ok is False:
            self.failed.append(case)
        print(f"  {case}: {row} | {verdict}", flush=True)

    def report(self, cases: list[str], headers: dict[str, tuple[str, str]]) -> int:
        """Each case's Markdown table (its title and header from `headers`); 1 when a target was missed."""
        for case in cases:
            title, header = headers[case]
            print(f"\n### {title}\n\n{header}\n|{'---|' * (header.count('|') - 1)}")
            print("\n".join(self.rows.get(case, [])))
        if self.failed:
            print(f"\nmissed targets: {', '.join(sorted(set(self.failed)))}")
            return 1
        return 0


def measured(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> Measured:
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", *argv], cwd=cwd, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                         f"{done.stderr[-3000:]}")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    if rss is None:
        raise SystemExit(f"/usr/bin/time -v printed no RSS for {argv[:3]}:\n{done.stderr[-2000:]}")
    return Measured(wall, int(rss[1]) / 1024, done.stdout)


# --- images -----------------------------------------------------------------------------------------------------


def _upload(http: Any, registry: Registry, repo: str, chunks: Iterator[bytes], media_type: str) -> dict[str, Any]:
    """One blob by a chunked upload (POST, a PATCH per chunk, PUT ?digest=); its descriptor."""
    import hashlib

    hasher, size = hashlib.sha256(), 0
    response = http.post(f"{registry.url}/v2/{repo}/blobs/uploads/", timeout=60)
    response.raise_for_status()
    location = urljoin(registry.url, response.headers["Location"])
    for chunk in chunks:
        hasher.update(chunk)
        response = http.patch(location, data=chunk, timeout=600, headers={
            "Content-Type": "application/octet-stream", "Content-Range": f"{size}-{size + len(chunk) - 1}"})
        response.raise_for_status()
        location = urljoin(registry.url, response.headers["Location"])
        size += len(chunk)
    digest = f"sha256:{hasher.hexdigest()}"
    response = http.put(location, params={"digest": digest}, timeout=600)
    if response.status_code != 201:
        raise SystemExit(f"blob upload to {registry.url}/{repo}: {response.status_code} {response.text[:300]}")
    return {"mediaType": media_type, "digest": digest, "size": size}


def _random_chunks(size: int, seed: int, diff: Any) -> Iterator[bytes]:
    """A gzip stream (stored blocks) of `size` random bytes, hashed into `diff` (its diff_id) as it goes: real
    gzip, because skopeo gzips a layer it sees uncompressed (and would then push other bytes, slower)."""
    import zlib

    generator = random.Random(seed)  # Mersenne Twister output: incompressible, and 3x faster than os.urandom
    gzip = zlib.compressobj(0, zlib.DEFLATED, 31)
    left = size
    while left > 0:
        data = generator.randbytes(min(CHUNK, left))
        diff.update(data)
        left -= len(data)
        yield gzip.compress(data) + (gzip.flush() if left == 0 else b"")


def push_image(registry: Registry, repo: str, tag: str, layers: list[int], revision: str, seed: int | None = None
               ) -> str:
    """Random layers streamed in chunks (constant memory), a config with the revision label, an OCI manifest that
    carries the same label as an annotation (as `mlci build` writes its labels); the same `seed` gives the same
    layers (an image that shares its first layers with another)."""
    import hashlib

    import requests

    http = requests.Session()
    seed = random.SystemRandom().getrandbits(64) if seed is None else seed
    descriptors, diff_ids = [], []
    for i, size in enumerate(layers):
        diff = hashlib.sha256()
        descriptors.append(_upload(http, registry, repo, _random_chunks(size, seed + i, diff), OCI_LAYER))
        diff_ids.append(f"sha256:{diff.hexdigest()}")
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Labels": {"org.opencontainers.image.revision": revision}},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": _upload(http, registry, repo, iter([config]),
                                             "application/vnd.oci.image.config.v1+json"),
                           "layers": descriptors,
                           "annotations": {"org.opencontainers.image.revision": revision}}).encode()
    response = http.put(f"{registry.url}/v2/{repo}/manifests/{tag}", data=manifest, timeout=60,
                        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    if response.status_code != 201:
        raise SystemExit(f"manifest push: {response.status_code} {response.text[:300]}")
    return str(response.headers["Docker-Content-Digest"])


def split(total_mb: int, count: int) -> list[int]:
    """`count` layer sizes (bytes) adding up to total_mb MB, the first ones a little larger."""
    total = total_mb << 20
    return [total // count + (1 if i < total % count else 0) for i in range(count)]


def tag_digest(registry: Registry, repo: str, tag: str) -> str | None:
    import requests

    response = requests.head(f"{registry.url}/v2/{repo}/manifests/{tag}", timeout=30, headers={
        "Accept": "application/vnd.oci.image.manifest.v1+json"})
    return response.headers.get("Docker-Content-Digest") if response.status_code == 200 else None


# --- the tools measured -----------------------------------------------------------------------------------------


class Bench:
    """The work dir, the bench model repo (for the CLI) and the tools' environment."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.repo = work / "repo"
        self.env = {"TMPDIR": str(work / "tmp"), "HOME": str(work / "home"), "CI_COMMIT_BRANCH": "main",
                    "XDG_CACHE_HOME": str(work / "home" / "cache")}
        for d in (work / "tmp", work / "home"):
            d.mkdir(parents=True, exist_ok=True)
        self.revision = self._make_repo()

    def _make_repo(self) -> str:
        self.repo.mkdir()
        bs.git(self.repo, "init", "-q", "-b", "main")
        (self.repo / "mlci.yaml").write_text(json.dumps({"version": 1, "promote": {
            "model": "bench", "gitops": {"gto": False}, "audit_log": str(self.work / "audit.jsonl"),
            "environments": {"stage": {"branches": ["main"], "require_scan": False, "sign": False}}}}))
        return bs.commit_all(self.repo, "bench model repo")

    def registries_env(self, *registries: Registry) -> dict[str, str]:
        return {"MLCI_REGISTRIES": json.dumps({r.host: {"plain_http": True} for r in registries})}

    def library(self, src: Registry, dst: Registry, repo: str = REPO) -> Measured:
        return measured([str(bs.VENV_BIN / "python"), "-c", LIBRARY, f"docker://{src.host}/{repo}:{TAG}", dst.host,
                         repo, TAG], self.work, self.env)

    def cli(self, src: Registry, dst: Registry, repo: str = REPO) -> Measured:
        return measured([str(bs.MLCI), "promote", "--env", "stage", "--repo", str(self.repo),
                         f"docker://{src.host}/{repo}:{TAG}", f"docker://{dst.host}/{repo}"], self.work,
                        {**self.env, **self.registries_env(src, dst)})

    def skopeo(self, src: Registry, dst: Registry, repo: str = REPO) -> Measured:
        return measured(["skopeo", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false",
                         f"docker://{src.host}/{repo}:{TAG}", f"docker://{dst.host}/{repo}:{TAG}"], self.work,
                        self.env)


def settle() -> str:
    """Write back and drop the page cache (root only), so that every size starts from the same cold state."""
    subprocess.run(["sync"], check=True)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as exc:
        return f"page cache not dropped ({exc.strerror})"
    return "page cache dropped"


def fresh_copy(bench: Bench, tool: str, src: Registry, digest: str, repo: str = REPO, *, durable: bool = False
               ) -> Measured:
    """One copy by `tool` into a fresh registry, checked (the tag names the digest), the registry then removed;
    `durable`: from a dropped page cache, and until the destination's files are written back (`sync`, timed)."""
    dst = open_registry(bench, "dst")
    try:
        if durable:
            settle()
        run: Measured = getattr(bench, tool)(src, dst, repo)
        if durable:
            start = time.perf_counter()
            subprocess.run(["sync"], check=True)
            run = Measured(run.wall + time.perf_counter() - start, run.rss_mb, run.stdout)
        arrived = tag_digest(dst, repo, TAG)
        if arrived != digest:
            raise SystemExit(f"{tool}: the destination tag names {arrived}, not {digest}")
        return run
    finally:
        close(dst)


def open_registry(bench: Bench, prefix: str) -> Registry:
    """A fresh registry whose files are in the work dir (TMPDIR may be small)."""
    registry = start_registry(directory=Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=bench.work)))
    registry.directory = registry.root.parent  # root is DIRECTORY/data
    return registry


def close(registry: Registry) -> None:
    """Stop it and remove its files (stop_registry removes the directory it was given)."""
    stop_registry(registry)


def linear_fit(results: Results, case: str, points: list[tuple[int, Measured]], residual: float) -> None:
    """The least-squares line of wall time over MB (3 points or more): a row with its marginal MB/s, its fixed
    cost and the worst point's distance from it (the verdict: within `residual`)."""
    if len(points) < 3:
        return
    xs, ts = [float(s) for s, _ in points], [r.wall for _, r in points]
    slope, intercept = statistics.linear_regression(xs, ts)
    worst = max(abs(t - (intercept + slope * x)) / t for x, t in zip(xs, ts, strict=True))
    results.add(case, f"| linear fit | {1.048576 / slope:.0f} MB/s marginal, {intercept:.2f} s fixed | worst "
                f"residual {worst:.1%} (target {residual:.0%}) |", worst <= residual)


def load() -> str:
    return " ".join(f"{n:.2f}" for n in os.getloadavg())


# --- cases ------------------------------------------------------------------------------------------------------


def side_by_side(bench: Bench, src: Registry, digest: str, runs: int, tools: list[str]) -> dict[str, list[float]]:
    walls: dict[str, list[float]] = {t: [] for t in tools}
    for i in range(runs):  # alternating, so that load from the other helpers falls on every tool alike
        for tool in tools if i % 2 == 0 else list(reversed(tools)):
            walls[tool].append(fresh_copy(bench, tool, src, digest).wall)
    return walls


def case_copy(bench: Bench, results: Results, case: str, total_mb: int, layers: int, runs: int, cli: bool,
              skopeo_small_mbps: float | None) -> float:
    """small / many: the median walls and the ratio; returns skopeo's MB/s."""
    src = open_registry(bench, f"src-{case}")
    try:
        print(f"\n== {case}: {total_mb} MB in {layers} layers, {runs} run(s) each (load {load()})", flush=True)
        digest = push_image(src, REPO, TAG, split(total_mb, layers), bench.revision)
        tools = ["library", "skopeo", *(["cli"] if cli else [])]
        fresh_copy(bench, "library", src, digest)  # warm-up: page cache, registry
        walls = side_by_side(bench, src, digest, runs, tools)
        med = {t: statistics.median(w) for t, w in walls.items()}
        mbps = {t: total_mb * 1.048576 / m for t, m in med.items()}
        target = TARGETS[case]
        note = ""
        if case == "many":
            if skopeo_small_mbps is None:
                note = "no small case in this run: target 1.0x"
            elif mbps["skopeo"] < PER_LAYER_COST * skopeo_small_mbps:
                target, note = TARGETS["many_layer_cost"], (f"skopeo's per-layer cost shows: {mbps['skopeo']:.0f} "
                                                            f"vs {skopeo_small_mbps:.0f} MB/s on 3 layers")
            else:
                note = (f"no per-layer cost for skopeo here: {mbps['skopeo']:.0f} vs {skopeo_small_mbps:.0f} MB/s on "
                        "3 layers")
        ratio = med["library"] / med["skopeo"]
        spread = "; ".join(f"{t} {min(w):.2f}-{max(w):.2f}" for t, w in walls.items())
        cli_cell = f"{med['cli']:.2f} s ({med['cli'] / med['skopeo']:.2f}x)" if cli else "not run"
        results.add(case, f"| {total_mb} MB / {layers} | {med['library']:.2f} s ({mbps['library']:.0f} MB/s) | "
                    f"{cli_cell} | {med['skopeo']:.2f} s ({mbps['skopeo']:.0f} MB/s) | {ratio:.2f}x "
                    f"(target {target}x) | {spread}; load {load()}{'; ' + note if note else ''}", ratio <= target)
        return mbps["skopeo"]
    finally:
        close(src)


def requests_between(registry: Registry, since: int) -> list[str]:
    return [f"{e.method} {e.target.split('?')[0]} {e.status}" for e in access_log(registry)[since:]]


def case_again(bench: Bench, results: Results, total_mb: int, runs: int, cli: bool) -> None:
    src = open_registry(bench, "src-again")
    dst = open_registry(bench, "dst-again")
    try:
        print(f"\n== again: re-promoting a {total_mb} MB image already at the destination (load {load()})", flush=True)
        digest = push_image(src, REPO, TAG, split(total_mb, 3), bench.revision)
        bench.library(src, dst)
        tools = ["library", *(["cli"] if cli else []), "skopeo"]
        for tool in tools:
            walls, counts, seen = [], [], []
            for _ in range(runs):
                marks = (len(access_log(src)), len(access_log(dst)))
                walls.append(getattr(bench, tool)(src, dst).wall)
                seen = [*(f"src {r}" for r in requests_between(src, marks[0])),
                        *(f"dst {r}" for r in requests_between(dst, marks[1]))]
                counts.append((sum(r.startswith("src") for r in seen), sum(r.startswith("dst") for r in seen)))
            if tag_digest(dst, REPO, TAG) != digest:
                raise SystemExit(f"again/{tool}: the tag moved")
            med = statistics.median(walls)
            n_src, n_dst = max(c[0] for c in counts), max(c[1] for c in counts)
            ok = None if tool == "skopeo" else med <= TARGETS["again_s"] and n_dst + n_src <= TARGETS["again_requests"]
            label = {"library": "mlci (library)", "cli": "mlci promote (CLI)", "skopeo": "skopeo copy"}[tool]
            results.add("again", f"| {label} | {med:.3f} s (min {min(walls):.3f}) | {n_dst} | {n_src} | load {load()}",
                        ok)
            print("    requests: " + ", ".join(seen), flush=True)
    finally:
        close(src)
        close(dst)


def machine_copy(bench: Bench, src: Registry) -> float:
    """The machine's own cost for the same bytes, under the same discipline as a durable copy (information for
    the notes, not a target: one sequential stream, no registry): the source registry's files copied by
    `cp -r` from a dropped page cache, until written back (`sync`)."""
    target = Path(tempfile.mkdtemp(prefix="cp-", dir=bench.work))
    try:
        settle()
        start = time.perf_counter()
        subprocess.run(["cp", "-r", str(src.root), str(target / "data")], check=True)
        subprocess.run(["sync"], check=True)
        return time.perf_counter() - start
    finally:
        shutil.rmtree(target)


def case_large(bench: Bench, results: Results, sizes: list[int], runs: int) -> None:
    points: list[tuple[int, Measured]] = []
    for total_mb in sizes:
        free = shutil.disk_usage(bench.work).free >> 20
        if free < 2.3 * total_mb:
            results.add("large", f"| {total_mb} MB | skipped: {free} MB free | | |", False)
            continue
        src = open_registry(bench, f"src-{total_mb}")
        try:
            print(f"\n== large: {total_mb} MB in 4 layers (load {load()}, {free} MB free)", flush=True)
            digest = push_image(src, REPO, TAG, split(total_mb, 4), bench.revision)
            copies = [fresh_copy(bench, "library", src, digest, durable=True) for _ in range(runs)]
            walls = sorted(c.wall for c in copies)
            run = Measured(statistics.median(walls), max(c.rss_mb for c in copies), "")
            disk = statistics.median(machine_copy(bench, src) for _ in range(runs))
            points.append((total_mb, run))
            ok = run.rss_mb <= TARGETS["large_rss_mb"]
            results.add("large", f"| {total_mb} MB | {run.wall:.1f} s ({total_mb * 1.048576 / run.wall:.0f} MB/s; "
                        f"median of {runs}: {', '.join(f'{w:.1f}' for w in walls)}) | {run.rss_mb:.0f} MB | "
                        f"`cp` of the source's blobs {disk:.1f} s: mlci {run.wall / disk:.2f}x; load {load()}", ok)
        finally:
            close(src)
    linear_fit(results, "large", points, TARGETS["large_residual"])


HEADERS = {
    "small": ("a 500 MB image in 3 layers, fresh destination (target <= 1.0x skopeo)",
              "| image | mlci (library) | mlci promote (CLI) | skopeo copy | ratio library/skopeo | min-max s, notes "
              "| verdict |"),
    "many": ("80 layers (target <= 0.5x if skopeo shows a per-layer cost, else <= 1.0x)",
             "| image | mlci (library) | mlci promote (CLI) | skopeo copy | ratio library/skopeo | min-max s, notes "
             "| verdict |"),
    "again": ("re-promoting an image already there (target <= 0.2 s and <= 5 requests)",
              "| tool | wall, median | requests at destination | requests at source | notes | verdict |"),
    "large": ("large images (target RSS <= 200 MB, time linear in bytes)",
              "| image | wall | peak RSS | notes | verdict |"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {','.join(CASES)}")
    parser.add_argument("--runs", type=int, default=5, help="measured runs per tool (small, again)")
    parser.add_argument("--many-runs", type=int, default=3, help="measured runs per tool (many)")
    parser.add_argument("--small-mb", type=int, default=500)
    parser.add_argument("--many-mb", type=int, default=2048)
    parser.add_argument("--many-layers", type=int, default=80)
    parser.add_argument("--large-mb", default="1024,5120,10240", help="comma-separated sizes of the large case")
    parser.add_argument("--large-runs", type=int, default=3, help="copies per size (large; the median is fitted)")
    parser.add_argument("--no-cli", action="store_true", help="measure the library path only")
    parser.add_argument("--work-dir", help="where the temp dirs go (default: $TMPDIR)")
    args = parser.parse_args()
    print(as_installed.prepare(), flush=True)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if not cases or any(c not in CASES for c in cases):
        parser.error(f"--cases: choose from {', '.join(CASES)}")
    bs.ensure_tools()
    print(f"settings: {PINNED}\nload average at start: {load()} (2 cores, shared)", flush=True)
    results = Results()
    work = Path(tempfile.mkdtemp(prefix="mlci-bench-promote-", dir=args.work_dir))
    try:
        bench = Bench(work)
        skopeo_small = None
        if "small" in cases:
            skopeo_small = case_copy(bench, results, "small", args.small_mb, 3, args.runs, not args.no_cli, None)
        if "many" in cases:
            case_copy(bench, results, "many", args.many_mb, args.many_layers, args.many_runs, False, skopeo_small)
        if "again" in cases:
            case_again(bench, results, args.small_mb, args.runs, not args.no_cli)
        if "large" in cases:
            case_large(bench, results, sorted({int(s) for s in args.large_mb.split(",")}), args.large_runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{PINNED}\nload average at the end: {load()}")
    return results.report(cases, HEADERS)


if __name__ == "__main__":
    sys.exit(main())
