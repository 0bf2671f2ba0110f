"""`mlci bundle export|verify|import` side by side with `sha256sum` and `skopeo copy` in one run (issue 12,
"Performance"). Cases:

  full         a 2 GB image (4 random layers) in a loopback "dev" registry plus 1 GB of DVC objects (the model's
               weights, a DVC-tracked file): `mlci bundle export` to one tar, `mlci bundle verify`, and `mlci bundle
               import` into a fresh "prod" registry and DVC remote; peers: `sha256sum` of the same bytes (the
               image's blobs and the DVC object, from files), `skopeo copy docker://dev oci:DIR` and back
               `skopeo copy oci:DIR docker://prod`. Targets: export and verify >= 0.8x sha256sum's throughput;
               import of the image (a bundle of the image alone, verify + push) <= 1.0x skopeo's oci: -> registry
  incremental  a code-only change (a new small code layer on the same base and weights), exported with --since
               the first bundle's bundle.json: its size <= the changed layers + 1 MB
  large        image-only bundles of --large-mb sizes (4 layers each): export peak RSS <= 200 MB and time linear
               in bytes (every point within 10% of the least-squares line); the largest also imported (RSS)

    .venv/bin/python benchmarks/bundle.py                                   # every case, default sizes
    .venv/bin/python benchmarks/bundle.py --image-mb 200 --dvc-mb 100 --large-mb 100,200,400 --runs 1  # quick

Users' settings are mlci's defaults: `bundle.format: tar`, no parts, no trivy DB, promote.environments.prod
with `via: bundle`. Pinned by the harness (printed): random incompressible layers (gzip of stored blocks, pushed
with plain `requests`), a plain-HTTP docker-registry 2.8 on 127.0.0.1 per side, a fresh destination registry
and DVC remote per measured import, the policy's scan and image signature off (`require_scan: false`, `sign:
false`: scanning and cosign are measured by their own benchmarks; the bundle is signed, as always), TMPDIR
in the work dir. sha256sum reads files already in the page cache (warmed first), as do the export (from the
registry's files) and skopeo. Exit code 1 when a target is missed (the figures are printed either way).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks import as_installed  # noqa: E402
from benchmarks import build_support as bs  # noqa: E402
from benchmarks.promote import (  # noqa: E402
    Measured,
    Results,
    linear_fit,
    load,
    measured,
    push_image,
    split,
    tag_digest,
)
from tests.testing.registry import Registry, start_registry, stop_registry  # noqa: E402

CASES = ("full", "incremental", "large")
TARGETS = {"export": 0.8, "verify": 0.8, "import": 1.0, "incremental_slack": 1 << 20, "large_rss_mb": 200.0,
           "large_residual": 0.10}
REPO, TAG = "bench/model", "v1.0.0"
PINNED = ("harness pins: random layers (gzip, stored blocks), plain-HTTP docker-registry 2.8 on loopback, a fresh "
          "destination registry and DVC remote per import, require_scan: false and sign: false (the bundle itself "
          "is signed), skopeo's blob-info cache and TMPDIR in the work dir")


class Bench:
    """The bench model repo (git + DVC, weights DVC-tracked), the signing key and the tools' environment."""

    def __init__(self, work: Path, dvc_mb: int) -> None:
        self.work = work
        self.repo = work / "repo"
        self.env = {"TMPDIR": str(work / "tmp"), "HOME": str(work / "home"), "CI_COMMIT_BRANCH": "main",
                    "XDG_CACHE_HOME": str(work / "home" / "cache"), **bs.dvc_env(work), **bs.GIT_IDENTITY}
        for d in (work / "tmp", work / "home", work / "keys"):
            d.mkdir(parents=True, exist_ok=True)
        self.key, self.pub = work / "keys" / "key.pem", work / "keys" / "key.pub"
        subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
                        str(self.key)], check=True, capture_output=True)
        subprocess.run(["openssl", "pkey", "-in", str(self.key), "-pubout", "-out", str(self.pub)], check=True,
                       capture_output=True)
        self.dvc_mb = dvc_mb
        self.revision = self._make_repo()

    def _config(self, environments: dict[str, object]) -> dict[str, object]:
        return {"version": 1, "image": {"artifacts": ["model/weights.bin"]}, "promote": {
            "model": "bench", "gitops": {"gto": False}, "audit_log": str(self.work / "audit.jsonl"),
            "signing": {"key_file": str(self.key)}, "environments": environments},
            "bundle": {"public_key": str(self.pub)}}

    def _make_repo(self) -> str:
        self.repo.mkdir()
        env = {**os.environ, **self.env}
        bs.git(self.repo, "init", "-q", "-b", "main")
        dvc = str(bs.VENV_BIN / "dvc")
        for argv in ([dvc, "init", "-q"], [dvc, "config", "cache.type", "hardlink"],
                     [dvc, "remote", "add", "-d", "dev", str(self.work / "dvc-dev")],
                     [dvc, "remote", "add", "prod", str(self.work / "dvc-prod")]):
            subprocess.run(argv, cwd=self.repo, env=env, check=True, capture_output=True)
        (self.repo / "model").mkdir()
        subprocess.run(["sh", "-c", f"head -c {self.dvc_mb << 20} /dev/urandom > model/weights.bin"],
                       cwd=self.repo, check=True)
        subprocess.run([dvc, "add", "-q", "model/weights.bin"], cwd=self.repo, env=env, check=True)
        subprocess.run([dvc, "push", "-q"], cwd=self.repo, env=env, check=True)
        rule = {"branches": ["main"], "require_scan": False, "sign": False, "via": "bundle"}
        (self.repo / "mlci.yaml").write_text(json.dumps(self._config({"prod": {**rule, "dvc_remote": "prod"}})))
        # The image alone (for the import against skopeo): no model files named, so no DVC objects travel.
        image_only = self._config({"prodimage": rule})
        image_only["image"] = {}
        self.image_only = self.work / "image-only.yaml"
        self.image_only.write_text(json.dumps(image_only))
        return bs.commit_all(self.repo, "bench model repo")

    def _config_flag(self, env: str) -> list[str]:
        return ["--config", str(self.image_only)] if env == "prodimage" else []

    def registries_env(self, *registries: Registry) -> dict[str, str]:
        return {"MLCI_REGISTRIES": json.dumps({r.host: {"plain_http": True} for r in registries})}

    def export(self, src: Registry, out: Path, env: str, *extra: str) -> Measured:
        return measured([str(bs.MLCI), *self._config_flag(env), "bundle", "export", "--repo", str(self.repo), "--env",
                         env, "--out",
                         str(out), f"docker://{src.host}/{REPO}:{TAG}", *extra], self.work,
                        {**self.env, **self.registries_env(src)})

    def verify(self, bundle: Path) -> Measured:
        return measured([str(bs.MLCI), "bundle", "verify", str(bundle), "--key", str(self.pub)], self.work, self.env)

    def import_(self, bundle: Path, dst: Registry, env: str) -> Measured:
        return measured([str(bs.MLCI), *self._config_flag(env), "bundle", "import", str(bundle), "--repo",
                         str(self.repo), "--env", env,
                         "--key", str(self.pub), "--to", f"docker://{dst.host}/{REPO}"], self.work,
                        {**self.env, **self.registries_env(dst)})

    def skopeo(self, src: str, dst: str) -> Measured:
        return measured(["skopeo", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false", src, dst],
                        self.work, self.env)

    def sha256sum(self, files: list[Path]) -> Measured:
        return measured(["sha256sum", *map(str, files)], self.work)

    def weights_object(self) -> Path:
        md5 = next(line.split()[-1] for line in (self.repo / "model" / "weights.bin.dvc").read_text().splitlines()
                   if "md5:" in line)
        return self.repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


def open_registry(work: Path, prefix: str) -> Registry:
    registry = start_registry(directory=Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=work)))
    registry.directory = registry.root.parent
    return registry


def reset_remote(bench: Bench) -> None:
    shutil.rmtree(bench.work / "dvc-prod", ignore_errors=True)


def rate(total: int, run: Measured) -> float:
    return total / 1e6 / run.wall


def remove(path: Path) -> None:
    for p in [path, *path.parent.glob(path.name + ".*")]:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists():
            p.unlink()


def case_full(bench: Bench, results: Results, image_mb: int, runs: int) -> Path:
    """Export, verify, import of the image + DVC objects; the peers; returns the first bundle's bundle.json copy."""
    src = open_registry(bench.work, "dev")
    print(f"\n== full: {image_mb} MB image + {bench.dvc_mb} MB DVC objects, {runs} run(s) (load {load()})", flush=True)
    digest = push_image(src, REPO, TAG, split(image_mb, 4), bench.revision)
    layout = bench.work / "layout"
    bench.skopeo(f"docker://{src.host}/{REPO}:{TAG}", f"oci:{layout}:{TAG}")  # warm-up, and sha256sum's files
    files = [*sorted((layout / "blobs" / "sha256").iterdir()), bench.weights_object()]
    total = sum(f.stat().st_size for f in files)
    bundle, image_only = bench.work / "b.tar", bench.work / "img.tar"
    walls: dict[str, list[Measured]] = {k: [] for k in ("sha256sum", "export", "verify", "skopeo_to_oci",
                                                          "import", "import_full", "skopeo_from_oci")}
    for i in range(runs):
        walls["sha256sum"].append(bench.sha256sum(files))
        remove(bundle)
        walls["export"].append(bench.export(src, bundle, "prod"))
        walls["verify"].append(bench.verify(bundle))
        shutil.rmtree(bench.work / "skopeo-oci", ignore_errors=True)
        walls["skopeo_to_oci"].append(bench.skopeo(f"docker://{src.host}/{REPO}:{TAG}",
                                                   f"oci:{bench.work / 'skopeo-oci'}:{TAG}"))
        remove(image_only)
        bench.export(src, image_only, "prodimage")
        for tool in (["import", "skopeo_from_oci"] if i % 2 == 0 else ["skopeo_from_oci", "import"]):
            dst = open_registry(bench.work, "prod")
            try:
                if tool == "import":
                    walls[tool].append(bench.import_(image_only, dst, "prodimage"))
                else:
                    walls[tool].append(bench.skopeo(f"oci:{layout}:{TAG}", f"docker://{dst.host}/{REPO}:{TAG}"))
                if tag_digest(dst, REPO, TAG) != digest:
                    raise SystemExit(f"{tool}: the destination's {TAG} does not name {digest}")
            finally:
                stop_registry(dst)
        dst = open_registry(bench.work, "prod")
        reset_remote(bench)
        try:
            walls["import_full"].append(bench.import_(bundle, dst, "prod"))
        finally:
            stop_registry(dst)
    med = {k: statistics.median(m.wall for m in v) for k, v in walls.items()}
    sha = total / 1e6 / med["sha256sum"]
    size = sum(p.stat().st_size for p in [bundle, *bundle.parent.glob(bundle.name + ".*")] if p.is_file())
    for name in ("export", "verify"):
        mbps = total / 1e6 / med[name]
        rss = max(m.rss_mb for m in walls[name])
        results.add("full", f"| `mlci bundle {name}` | {med[name]:.2f} s ({mbps:.0f} MB/s), peak RSS {rss:.0f} MB | "
                    f"sha256sum {med['sha256sum']:.2f} s ({sha:.0f} MB/s) | {mbps / sha:.2f}x (target >= "
                    f"{TARGETS[name]}x) | bundle {size / 1e6:.0f} MB; load {load()}", mbps / sha >= TARGETS[name])
    ratio = med["import"] / med["skopeo_from_oci"]
    results.add("full", f"| `mlci bundle import` (the image alone: verify + push) | {med['import']:.2f} s | "
                f"skopeo copy oci: -> registry {med['skopeo_from_oci']:.2f} s | {ratio:.2f}x time (target <= "
                f"{TARGETS['import']}x) | load {load()}", ratio <= TARGETS["import"])
    results.add("full", f"| `mlci bundle import` (image + DVC objects into the DVC remote) | {med['import_full']:.2f} "
                f"s, peak RSS {max(m.rss_mb for m in walls['import_full']):.0f} MB | | | export's peer skopeo copy "
                f"docker: -> oci: {med['skopeo_to_oci']:.2f} s", None)
    saved = bench.work / "first-bundle.json"
    subprocess.run(["tar", "-xOf", str(bundle), "bundle.json"], stdout=saved.open("wb"), check=True)
    stop_registry(src)
    remove(bundle)
    remove(image_only)
    shutil.rmtree(layout, ignore_errors=True)
    shutil.rmtree(bench.work / "skopeo-oci", ignore_errors=True)
    return saved


def case_incremental(bench: Bench, results: Results, image_mb: int) -> None:
    """A code-only change on top of the same layers: the bundle --since the first carries the change only."""
    src = open_registry(bench.work, "dev-incr")
    print(f"\n== incremental: a code-only change on a {image_mb} MB image (load {load()})", flush=True)
    try:
        layers = split(image_mb, 4)
        first = bench.work / "first.tar"
        push_image(src, REPO, TAG, layers, bench.revision, seed=1)
        bench.export(src, first, "prod")
        previous = bench.work / "first-incr-bundle.json"
        subprocess.run(["tar", "-xOf", str(first), "bundle.json"], stdout=previous.open("wb"), check=True)
        code_layer = 256 << 10
        push_image(src, REPO, TAG, [*layers, code_layer], bench.revision, seed=1)
        second = bench.work / "second.tar"
        run = bench.export(src, second, "prod", "--since", str(previous))
        size = second.stat().st_size
        changed = code_layer + 4096  # its gzip framing and the new config and manifest
        results.add("incremental", f"| {size / 1e6:.2f} MB | {changed / 1e6:.2f} MB changed + 1 MB | "
                    f"{run.wall:.2f} s | first bundle {first.stat().st_size / 1e6:.0f} MB |",
                    size <= changed + TARGETS["incremental_slack"])
        remove(first)
        remove(second)
    finally:
        stop_registry(src)


def case_large(bench: Bench, results: Results, sizes: list[int]) -> None:
    points = []
    for total_mb in sizes:
        free = shutil.disk_usage(bench.work).free >> 20
        if free < 3.3 * total_mb:
            results.add("large", f"| {total_mb} MB | skipped: {free} MB free | | |", False)
            continue
        src = open_registry(bench.work, f"dev-{total_mb}")
        out = bench.work / f"large-{total_mb}.tar"
        try:
            print(f"\n== large: {total_mb} MB in 4 layers (load {load()}, {free} MB free)", flush=True)
            push_image(src, REPO, TAG, split(total_mb, 4), bench.revision)
            run = bench.export(src, out, "prodimage")
            points.append((total_mb, run))
            cells = f"export {run.wall:.1f} s ({total_mb * 1.048576 / run.wall:.0f} MB/s), RSS {run.rss_mb:.0f} MB"
            ok = run.rss_mb <= TARGETS["large_rss_mb"]
            if total_mb == max(sizes):
                stop_registry(src)
                dst = open_registry(bench.work, f"prod-{total_mb}")
                try:
                    imported = bench.import_(out, dst, "prodimage")
                finally:
                    stop_registry(dst)
                cells += f"; import {imported.wall:.1f} s, RSS {imported.rss_mb:.0f} MB"
                ok = ok and imported.rss_mb <= TARGETS["large_rss_mb"]
            results.add("large", f"| {total_mb} MB | {cells} | load {load()}", ok)
        finally:
            stop_registry(src)
            remove(out)
    linear_fit(results, "large", points, TARGETS["large_residual"])


HEADERS = {
    "full": ("export, verify and import (targets: export, verify >= 0.8x sha256sum; import <= 1.0x skopeo)",
             "| command | mlci | peer | ratio | notes | verdict |"),
    "incremental": ("an incremental bundle after a code-only change (target: <= the changed layers + 1 MB)",
                    "| bundle | bound | export | notes | verdict |"),
    "large": ("large bundles (target: peak RSS <= 200 MB, time linear in bytes)",
              "| bundle | mlci | notes | verdict |"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {','.join(CASES)}")
    parser.add_argument("--runs", type=int, default=3, help="measured runs of the full case")
    parser.add_argument("--image-mb", type=int, default=2048)
    parser.add_argument("--dvc-mb", type=int, default=1024)
    parser.add_argument("--large-mb", default="2560,5120,10240", help="comma-separated sizes of the large case")
    parser.add_argument("--work-dir", help="where the temp dirs go (default: $TMPDIR)")
    args = parser.parse_args()
    print(as_installed.prepare(), flush=True)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if not cases or any(c not in CASES for c in cases):
        parser.error(f"--cases: choose from {', '.join(CASES)}")
    bs.ensure_tools()
    print(f"settings: {PINNED}\nload average at start: {load()} (2 cores, shared)", flush=True)
    results = Results()
    work = Path(tempfile.mkdtemp(prefix="mlci-bench-bundle-", dir=args.work_dir))
    try:
        bench = Bench(work, args.dvc_mb)
        if "full" in cases:
            case_full(bench, results, args.image_mb, args.runs)
        if "incremental" in cases:
            case_incremental(bench, results, args.image_mb)
        if "large" in cases:
            case_large(bench, results, sorted({int(s) for s in args.large_mb.split(",")}))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{PINNED}\nload average at the end: {load()}")
    return results.report(cases, HEADERS)


if __name__ == "__main__":
    sys.exit(main())
