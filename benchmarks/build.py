"""Model-image builds at scale, side by side in one run, with default settings and every change committed
(a new commit per rebuild, as CI does). Cases (issue 9, "Performance"):

  warm    code-only rebuild on a warm runner: `mlci build` vs `buildah bud --layers` + `buildah push`
          (overlay storage, a warm layer cache, the weights copied before the code); target <= 0.1x
  empty   code-only rebuild on a fresh runner: a fresh clone whose weights are only in the DVC remote, a
          fresh MLCI_CACHE_DIR and DVC site cache, the same registry; target <= 3 s and no weight byte
          served by the DVC remote (read from the remote's own access log)
  first   first build (empty cache dir, fresh registry, weights in the checkout): MB/s of input (weights,
          code and the wheels pip installs) and peak RSS; target >= 250 MB/s, <= 200 MB
  push    a built image in an OCI layout pushed to a fresh registry: mlci's OCI engine vs
          `skopeo copy oci:DIR docker://...`, each to its own fresh registry, after one
          unmeasured warm-up push, 4 times each in alternating order (a sync before each), medians
          compared; target <= 1.0x
  layout  a first build into an OCI layout (`MLCI_IMAGE_NAME=oci:DIR`, empty cache dir) beside the registry's
          first build: MB/s of input and peak RSS; no target of its own (the layers are written once, straight
          into the layout's blobs/)
  growth  the first builds over the sizes: time linear in bytes (every point within 10% of the
          least-squares line; needs 3 sizes), peak RSS flat (max <= 1.25x min)

    .venv/bin/python benchmarks/build.py                                   # every case, default sizes
    .venv/bin/python benchmarks/build.py --weights-mb 50,100,200           # quick check of the harness
    .venv/bin/python benchmarks/build.py --cases warm,empty --weights-mb 1024

Default sizes: warm 1024; empty and first 1024, 5120; push 5120; layout 2048; growth 1024, 2048, 5120 (MB of random
weights). `--weights-mb` gives every selected case the listed sizes instead. Each size gets its own repo and
registry; one first build per size serves as the warm-up of the other cases. Wall time and peak RSS come
from `/usr/bin/time -v` around the whole command (the peak is that of the largest process of its tree).

Nothing that users set is pinned: no SOURCE_DATE_EPOCH, mlci's defaults. Pinned by the harness, and said so
in its output: the weights are random (incompressible, like real weights); DVC `cache.type hardlink` in the
model repo (disk: the default reflink,copy would double 5 GB); the DVC remote is plain HTTP on loopback served
straight from the first checkout's DVC cache; registries are plain-HTTP docker-registry 2.8 on loopback;
TMPDIR inside the work dir (so a crash leaves nothing behind); buildah gets its own overlay storage; and the
token variables every GitLab job has (CI_JOB_TOKEN, CI_REGISTRY_PASSWORD, CI_DEPENDENCY_PROXY_PASSWORD, random
values), because mlci scans every layer it builds for the secrets it knows, and in CI it knows these.

Needs what scripts/test prepares (.venv, buildah, docker-registry, .tools/base, .tools/wheelhouse) and
installs `time` and `skopeo` with apt-get when missing. Disk: about 5x the largest weights at once.
Exit code 1 when a case fails its target (the figures are printed either way).
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import as_installed
from benchmarks import build_support as bs
from tests.testing.images import BASE_TAG, base_layout, wheelhouse
from tests.testing.registry import Registry, start_registry, stop_registry

CASES = ("warm", "empty", "first", "push", "layout", "growth")
DEFAULT_SIZES = {"warm": [1024], "empty": [1024, 5120], "first": [1024, 5120], "push": [5120], "layout": [2048],
                 "growth": [1024, 2048, 5120]}
PUSH_ROUNDS = 4  # each side pushes this many times, in alternating order; the medians are compared
TARGETS = {"warm": 0.1, "empty": 3.0, "first_mbps": 250.0, "first_rss_mb": 200.0, "push": 1.0,
           "growth_residual": 0.10, "growth_rss": 1.25}
PINNED = ("no SOURCE_DATE_EPOCH, mlci defaults; harness pins: random weights, DVC cache.type hardlink (disk), "
          "DVC HTTP remote on loopback, plain-HTTP loopback registries, TMPDIR in the work dir, the token variables "
          "of a GitLab job (CI_JOB_TOKEN, CI_REGISTRY_PASSWORD, CI_DEPENDENCY_PROXY_PASSWORD: random values, so "
          "every layer is scanned for them as in CI)")
# A GitLab job's secret variables (random values): mlci scans every layer it builds for them, as in CI.
JOB_SECRETS = {name: secrets.token_urlsafe(15) for name in
               ("CI_JOB_TOKEN", "CI_REGISTRY_PASSWORD", "CI_DEPENDENCY_PROXY_PASSWORD")}


@dataclass
class Results:
    """Every measured figure, by case and size, and the verdicts."""

    rows: dict[str, list[str]] = field(default_factory=dict)
    first: dict[int, bs.Run] = field(default_factory=dict)
    first_input: dict[int, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)

    def add(self, case: str, row: str, ok: bool | None) -> None:
        verdict = "n/a" if ok is None else "PASS" if ok else "FAIL"
        self.rows.setdefault(case, []).append(f"{row} | {verdict} |")
        if ok is False:
            self.failed.append(case)
        print(f"  {case}: {row} | {verdict}", flush=True)


def mb(n: int | float) -> str:
    return f"{n / 1e6:.2f} MB" if n < 10e6 else f"{n / 1e6:.1f} MB"


class Size:
    """One weights size: its work dir, model repo, DVC remote and registry (made by `setup`)."""

    def __init__(self, work: Path, weights_mb: int) -> None:
        self.work, self.weights_mb = work, weights_mb
        self.repo = work / "repo"
        self.env = {**bs.dvc_env(work), **JOB_SECRETS, "TMPDIR": str(work / "tmp"),
                    "MLCI_CACHE_DIR": str(work / "cache-warm")}
        (work / "tmp").mkdir(parents=True)
        self.remote = bs.DvcRemote(self.repo / ".dvc" / "cache")
        self.registry: Registry = start_registry(directory=work / "registry")
        self.changes = 0

    def setup(self) -> None:
        url = self.remote.start()
        config = bs.mlci_config(self.registry.host, "bench/native", f"oci:{base_layout()}:{BASE_TAG}",
                                wheelhouse())
        self.md5 = bs.make_model_repo(self.repo, self.weights_mb, url, config, wheelhouse())

    def build(self, repo: Path, tag: str, env: dict[str, str] | None = None) -> tuple[bs.Run, int]:
        """`mlci build` timed; (run, bytes it uploaded)."""
        mark = bs.log_mark(self.registry)
        result = bs.timed([str(bs.MLCI), "build", "--tag", tag], repo, {**self.env, **(env or {})})
        return result, bs.uploaded_bytes(self.registry, mark)

    def change(self, repo: Path | None = None) -> None:
        self.changes += 1
        bs.code_change(repo or self.repo, self.changes)

    def close(self) -> None:
        self.remote.stop()
        stop_registry(self.registry)


def case_first(size: Size, results: Results, cases: set[str]) -> None:
    run, up = size.build(size.repo, "first")
    weights = size.weights_mb << 20
    inputs = weights + bs.dir_bytes(size.repo / "src") + bs.dir_bytes(size.repo / "wheelhouse")
    results.first[size.weights_mb], results.first_input[size.weights_mb] = run, inputs
    if "first" in cases:
        rate = inputs / 1e6 / run.wall
        ok = rate >= TARGETS["first_mbps"] and run.rss_mb <= TARGETS["first_rss_mb"]
        results.add("first", f"| {size.weights_mb} MB | {run.wall:.2f} s | {mb(inputs)} | {rate:.0f} MB/s | "
                    f"{run.rss_mb:.0f} MB | {mb(up)}", ok)
    else:
        print(f"  first build (for growth): {size.weights_mb} MB, {run.wall:.2f} s, {run.rss_mb:.0f} MB", flush=True)


def case_warm(size: Size, results: Results) -> None:
    """mlci: the first build was its warm-up (same checkout, same MLCI_CACHE_DIR). buildah: one bud + push."""
    work, repo = size.work, size.repo
    storage = work / "storage.conf"
    storage.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{work}/graph"\nrunroot = "{work}/run"\n')
    env = {"CONTAINERS_STORAGE_CONF": str(storage), "BUILDAH_ISOLATION": "chroot"}
    base = work / "baselayout"  # buildah derives an image name from the path: no dots in it
    shutil.copytree(base_layout(), base, copy_function=os.link)
    pulled = bs.run(["buildah", "pull", "-q", f"oci:{base}:{BASE_TAG}"], work, env)
    bs.run(["buildah", "tag", pulled.split()[-1], "localhost/mlci-bench-base:1"], work, env)
    bud = ["buildah", "bud", "--layers", "--isolation", "chroot", "-t", "localhost/bench:1", "."]
    push = ["buildah", "push", "--tls-verify=false", "localhost/bench:1",
            f"docker://{size.registry.host}/bench/buildah:1"]
    bs.timed(bud, repo, env)
    bs.timed(push, repo, env)
    size.change()
    ours, ours_up = size.build(repo, "warm")
    mark = bs.log_mark(size.registry)
    bud_run = bs.timed(bud, repo, env)
    push_run = bs.timed(push, repo, env)
    theirs_up = bs.uploaded_bytes(size.registry, mark)
    theirs = bud_run.wall + push_run.wall
    ratio = ours.wall / theirs
    results.add("warm", f"| {size.weights_mb} MB | {ours.wall:.2f} s, {ours.rss_mb:.0f} MB, up {mb(ours_up)} | "
                f"{theirs:.2f} s (bud {bud_run.wall:.2f} + push {push_run.wall:.2f}), "
                f"{max(bud_run.rss_mb, push_run.rss_mb):.0f} MB, up {mb(theirs_up)} | {ratio:.3f}x",
                ratio <= TARGETS["warm"])
    shutil.rmtree(work / "graph", ignore_errors=True)
    shutil.rmtree(base, ignore_errors=True)


def case_empty(size: Size, results: Results) -> None:
    """A fresh clone (weights only in the DVC remote), a fresh cache dir; the registry holds earlier builds."""
    size.change()
    clone = size.work / "clone"
    bs.run(["git", "clone", "-q", str(size.repo), str(clone)], size.work)
    env = {"MLCI_CACHE_DIR": str(size.work / "cache-empty"), "DVC_SITE_CACHE_DIR": str(size.work / "dvc-site-empty")}
    mark = len(size.remote.log)
    run, up = size.build(clone, "empty", env)
    pulled = size.remote.sent_for([size.md5], mark)
    ok = run.wall <= TARGETS["empty"] and pulled == 0
    results.add("empty", f"| {size.weights_mb} MB | {run.wall:.2f} s | {run.rss_mb:.0f} MB | {mb(pulled)} | "
                f"{mb(up)}", ok)
    shutil.rmtree(clone, ignore_errors=True)
    shutil.rmtree(size.work / "cache-empty", ignore_errors=True)


def case_layout(size: Size, results: Results) -> None:
    """A first build (empty cache dir) into an OCI layout on the work dir's disk, after the registry's."""
    shutil.rmtree(size.work / "cache-layout", ignore_errors=True)
    out = size.work / "out-layout"
    run = bs.timed([str(bs.MLCI), "build", "--tag", "layout"], size.repo,
                   {**size.env, "MLCI_CACHE_DIR": str(size.work / "cache-layout"), "MLCI_IMAGE_NAME": f"oci:{out}"})
    inputs = results.first_input[size.weights_mb]
    written = bs.dir_bytes(out / "blobs")
    results.add("layout", f"| {size.weights_mb} MB | {run.wall:.2f} s | {inputs / 1e6 / run.wall:.0f} MB/s | "
                f"{run.rss_mb:.0f} MB | {mb(written)} | {results.first[size.weights_mb].wall:.2f} s", None)
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(size.work / "cache-layout", ignore_errors=True)


def case_push(size: Size, results: Results) -> None:
    """The first build's image, copied to an OCI layout (skopeo, set-up), pushed by each to a fresh registry."""
    layout = size.work / "layout"
    bs.run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{size.registry.host}/bench/native:first",
            f"oci:{layout}:img"], size.work)
    size.close()  # frees the registry's copy of the image
    shutil.rmtree(size.work / "registry", ignore_errors=True)
    shutil.rmtree(size.repo, ignore_errors=True)
    image_bytes = bs.dir_bytes(layout / "blobs")
    for blob in (layout / "blobs").rglob("*"):  # both read it from the page cache
        if blob.is_file():
            with blob.open("rb") as handle:
                while handle.read(1 << 24):
                    pass
    runs: dict[str, list[tuple[bs.Run, int]]] = {"mlci": [], "skopeo": [], "warm-up": []}
    order = [("warm-up",)] + [("mlci", "skopeo") if r % 2 == 0 else ("skopeo", "mlci") for r in range(PUSH_ROUNDS)]
    for who in (who for pair in order for who in pair):  # the first push after the set-up is slower: not counted
        registry = start_registry(directory=size.work / f"registry-{who}")
        try:
            dest = f"docker://{registry.host}/bench/push:1"
            if who != "skopeo":
                argv = [sys.executable, str(Path(bs.__file__)), "push", f"oci:{layout}:img", dest, registry.host]
            else:
                argv = ["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:img", dest]
            os.sync()  # the previous run's registry writes reach the disk before this one starts
            runs[who].append((bs.timed(argv, size.work, size.env), bs.uploaded_bytes(registry, 0)))
        finally:
            stop_registry(registry)
            shutil.rmtree(size.work / f"registry-{who}", ignore_errors=True)
    ours, theirs = (statistics.median(r.wall for r, _ in runs[who]) for who in ("mlci", "skopeo"))
    ours_rss, theirs_rss = (max(r.rss_mb for r, _ in runs[who]) for who in ("mlci", "skopeo"))
    ours_up, theirs_up = runs["mlci"][0][1], runs["skopeo"][0][1]
    spread = {who: " / ".join(f"{r.wall:.1f}" for r, _ in runs[who]) for who in ("mlci", "skopeo")}
    ratio = ours / theirs
    results.add("push", f"| {size.weights_mb} MB ({mb(image_bytes)} image) | {ours:.2f} s, {ours_rss:.0f} MB, "
                f"{image_bytes / 1e6 / ours:.0f} MB/s (runs {spread['mlci']} s) | {theirs:.2f} s, {theirs_rss:.0f} MB, "
                f"{image_bytes / 1e6 / theirs:.0f} MB/s (runs {spread['skopeo']} s) | {ratio:.2f}x "
                f"(uploaded {mb(ours_up)} vs {mb(theirs_up)})", ratio <= TARGETS["push"])


def case_growth(results: Results, sizes: list[int]) -> None:
    present = [s for s in sizes if s in results.first]
    points = [(results.first_input[s], results.first[s]) for s in present]
    if len(points) < 2:
        results.add("growth", "| needs first builds of at least 2 sizes | | |", None)
        return
    xs, ts = [float(x) for x, _ in points], [r.wall for _, r in points]
    slope, intercept = statistics.linear_regression(xs, ts)
    worst = max(abs(t - (intercept + slope * x)) / t for x, t in zip(xs, ts, strict=True))
    rss = [r.rss_mb for _, r in points]
    flat = max(rss) <= TARGETS["growth_rss"] * min(rss)
    linear = worst <= TARGETS["growth_residual"] if len(points) >= 3 else None
    walls = ", ".join(f"{s} MB: {results.first[s].wall:.2f} s / {results.first[s].rss_mb:.0f} MB" for s in present)
    results.add("growth", f"| {walls} | {1 / slope / 1e6 if slope > 0 else float('inf'):.0f} MB/s marginal, "
                f"{intercept:.1f} s fixed, worst residual {worst:.0%} | RSS {min(rss):.0f}-{max(rss):.0f} MB",
                None if linear is None else linear and flat)


HEADERS = {
    "warm": ("code-only rebuild, warm runner (target <= 0.1x)",
             "| weights | mlci build: wall, peak RSS, uploaded | buildah bud --layers + push | ratio | verdict |"),
    "empty": ("code-only rebuild, empty cache dir, fresh clone (target <= 3 s, no weights from the DVC remote)",
              "| weights | wall | peak RSS | weights served by DVC remote | uploaded | verdict |"),
    "first": ("first build, empty cache dir, fresh registry (target >= 250 MB/s of input, RSS <= 200 MB)",
              "| weights | wall | input | throughput | peak RSS | uploaded | verdict |"),
    "push": ("push from an OCI layout to a fresh registry (target <= 1.0x skopeo)",
             "| weights | mlci OCI engine | skopeo copy | ratio | verdict |"),
    "layout": ("first build into an OCI layout, empty cache dir (no target; the registry's first build beside it)",
               "| weights | wall | throughput | peak RSS | blobs written | first build to the registry | verdict |"),
    "growth": ("cost growth of the first build (time linear in bytes, RSS flat)",
               "| first builds | fit | RSS | verdict |"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--weights-mb", help="comma-separated sizes for every selected case (default: per case)")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {','.join(CASES)}")
    parser.add_argument("--work-dir", help="where the temp dirs go (default: $TMPDIR)")
    args = parser.parse_args()
    print(as_installed.prepare(), flush=True)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if not cases or any(c not in CASES for c in cases):
        parser.error(f"--cases: choose from {', '.join(CASES)}")
    sizes = {c: sorted({int(s) for s in args.weights_mb.split(",")}) if args.weights_mb else DEFAULT_SIZES[c]
             for c in cases}
    bs.ensure_tools()
    wheelhouse(), base_layout()  # fail early when scripts/test has not made them
    print(f"settings: {PINNED}")
    print("sizes: " + "; ".join(f"{c} {','.join(map(str, s))} MB" for c, s in sizes.items()), flush=True)
    results = Results()
    top = Path(tempfile.mkdtemp(prefix="mlci-bench-build-", dir=args.work_dir))
    try:
        for weights_mb in sorted({s for c in cases for s in sizes[c]}):
            wanted = {c for c in cases if weights_mb in sizes[c]}
            print(f"\n== {weights_mb} MB of weights: {', '.join(sorted(wanted))}", flush=True)
            size = Size(top / f"w{weights_mb}", weights_mb)
            try:
                size.setup()
                case_first(size, results, wanted)
                if "warm" in wanted:
                    case_warm(size, results)
                if "empty" in wanted:
                    case_empty(size, results)
                if "layout" in wanted:
                    case_layout(size, results)
                if "push" in wanted:
                    case_push(size, results)
            finally:
                size.close()
                shutil.rmtree(size.work, ignore_errors=True)
        if "growth" in cases:
            case_growth(results, sizes["growth"])
    finally:
        shutil.rmtree(top, ignore_errors=True)
    print(f"\n{PINNED}")
    for case in cases:
        title, header = HEADERS[case]
        print(f"\n{title}\n\n{header}\n|{'---|' * header.count(' | ') }---|")
        print("\n".join(results.rows.get(case, [])))
    print(json.dumps({"failed": sorted(set(results.failed))}))
    return 1 if results.failed else 0


if __name__ == "__main__":
    started = time.time()
    code = main()
    print(f"(benchmark took {time.time() - started:.0f} s)")
    sys.exit(code)
