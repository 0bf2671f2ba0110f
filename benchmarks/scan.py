"""`mlci scan` beside plain trivy on the example image, side by side in one run (issue 10, "Performance").

  full    the example image scanned from an OCI layout, every report asked for: `mlci scan oci:LAYOUT:TAG
          --json-out --sarif-out --gitlab-out --sbom-out --md --record-out` (what the .mlci-scan job asks for)
          vs plain trivy with the same DB and flags on the same layout; target: mlci's overhead (its time
          outside trivy and outside the model-file scanner, which trivy does not have) <= 10% of trivy's time
  rescan  `mlci scan` of the unchanged digest in the registry with the same DB, after a first scan attached its
          record (the stored output is judged again, nothing pulled): wall time of the whole command,
          interpreter start included; target <= 1 s; its HTTP requests counted from the registry's access log

    .venv/bin/python benchmarks/scan.py              # 5 rounds
    .venv/bin/python benchmarks/scan.py --runs 9

The image: example-model-repo copied out as a git repo, trained (`mlci repro`), built by `mlci build` on the
debootstrapped Debian base (.tools/base) with the pinned wheels (.tools/wheelhouse), pushed to a loopback
docker-registry (tests/testing/registry.py), then copied to an OCI layout with mlci's OCI engine (the same
digest). The DB: tests/testing/trivydb.py's make_db with its SEEDED advisories (openssl and zlib of the base
among them), advisories for the example's joblib and numpy, and the filler (so the DB has branch pages).

The peer is what a user of plain trivy runs for every format trivy writes: one scan to JSON, then `trivy convert`
to SARIF and to CycloneDX (convert re-renders a report without scanning again; three scans would triple the
cost). It gets exactly the flags mlci passes (mlci.scan.trivy.base_flags, the scanners and image-config scanners
of scan.scanners' defaults) and runs in an empty directory, as mlci runs it. trivy writes no GitLab container-
scanning report without contrib/gitlab.tpl (not in the PyPI wheel), no Markdown and no record: mlci does more.

Each round runs, alternating the order: the peer (three processes; wall = their sum), `mlci scan` as users run it
(.venv/bin/mlci), the same command in an instrumented process (this file's `--timed` mode: mlci.cli.main with
perf_counter spans around trivy's subprocesses, the model-file scanner and the other phases; only the wrappers
are added), then the re-scan, plain and instrumented. Every full-case mlci run scans its own fresh copy of the
layout (blobs hard-linked, index.json copied): a first scan of the digest there, which attaches its record into
that copy. Overhead = instrumented wall - trivy subprocesses (scan and convert) - model-file scanner; mlci's own
`trivy --version` check is overhead. "start-up" is the interpreter and the imports of the modules `mlci scan`
loads (the instrumented process imports them before mlci.cli.main; a plain run, on the way). Figures are medians
over the rounds (min in brackets); the overhead ratio is median overhead / median peer, and beside it, less
sensitive to the load of the machine, the median of overhead / trivy's part in the same process. Before the
rounds, one unmeasured round warms the page cache and checks that mlci and the peer report the same
vulnerabilities and SBOM components, and a first scan from the registry attaches the record the re-scans reuse.

Nothing that users set is pinned: mlci's defaults (every scanner, offline, attach, the default policy: the seeded
openssl and zlib holes fail the gate, so mlci exits 1 with every report written, as in a failing pipeline), no
SOURCE_DATE_EPOCH. Pinned by the harness, and said so in its output: the DB is the test DB (scan.cache_dir via
MLCI_SCAN_CACHE_DIR); the registry is plain-HTTP docker-registry 2.8 on loopback (MLCI_REGISTRIES); TMPDIR inside
the work dir. Needs what scripts/test prepares (.venv with trivy, docker-registry, .tools/base, .tools/wheelhouse)
and /usr/bin/time. Exit code 1 when a target is missed (the figures are printed either way).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_STARTED = time.perf_counter()  # the instrumented mode's clock: what came before is the interpreter's start
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks import as_installed  # noqa: E402

VENV_BIN = ROOT / ".venv" / "bin"
MLCI, TRIVY, PYTHON = VENV_BIN / "mlci", VENV_BIN / "trivy", VENV_BIN / "python"
REPO, TAG = "ml/credit-model", "bench"
REPORTS = {"--json-out": "mlci-scan.json", "--gitlab-out": "gl-container-scanning-report.json",
           "--sarif-out": "mlci-scan.sarif", "--sbom-out": "mlci-sbom.cdx.json", "--md": "mlci-scan.md",
           "--record-out": "mlci-scan-record.json"}  # as the .mlci-scan job (.gitlab-ci/) asks for them
TARGETS = {"overhead": 0.10, "rescan_s": 1.0}
PINNED = ("mlci defaults (every scanner, offline, attach, the default policy), no SOURCE_DATE_EPOCH; harness pins: "
          "the test DB (MLCI_SCAN_CACHE_DIR), a plain-HTTP loopback docker-registry (MLCI_REGISTRIES), TMPDIR in "
          "the work dir")
SPANS = ("trivy", "model", "trivy --version", "config", "stored", "prepare", "trivy JSON", "policy", "reports",
         "record")
SHOWN = {"trivy --version": "trivy --version", "config": "mlci.yaml loaded", "stored": "stored scan looked up",
         "prepare": "image prepared (links, digests)", "trivy JSON": "trivy's JSON (rename, parse)",
         "policy": "policy", "reports": "reports written", "record": "record written and attached"}


# --- the instrumented mlci -------------------------------------------------------------------------------------

def timed_mlci(spans_path: str, argv: list[str]) -> int:
    """Run `mlci ARGV` as the console script does (mlci.cli.main), with perf_counter spans around the phases;
    the spans go to `spans_path` as JSON. The wrappers only time: every call goes to the original."""
    from contextlib import contextmanager

    from mlci import cli
    from mlci import settings as config
    from mlci.core import proc
    from mlci.scan import policy, record, run, targets, trivy

    spans: dict[str, float] = dict.fromkeys(SPANS, 0.0)
    in_scan_image = [0.0]  # subprocess time inside trivy.scan_image, to leave its own Python work

    def wrap(owner: Any, name: str, label: str) -> None:
        inner = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                spans[label] += time.perf_counter() - started
        setattr(owner, name, timed)

    inner_run = proc.run

    def timed_run(argv: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return inner_run(argv, **kwargs)
        finally:
            took = time.perf_counter() - started
            is_trivy = Path(str(argv[0])).name == "trivy"
            label = "trivy --version" if is_trivy and "--version" in argv[1:2] else "trivy" if is_trivy else "other"
            spans[label] = spans.get(label, 0.0) + took
            in_scan_image[0] += took if label == "trivy" else 0.0

    proc.run = timed_run  # type: ignore[assignment]
    inner_scan = trivy.scan_image

    def timed_scan_image(*args: Any, **kwargs: Any) -> Any:
        started, before = time.perf_counter(), in_scan_image[0]
        try:
            return inner_scan(*args, **kwargs)
        finally:
            spans["trivy JSON"] += time.perf_counter() - started - (in_scan_image[0] - before)
    trivy.scan_image = timed_scan_image  # type: ignore[assignment]
    inner_prepare = targets.prepare_image

    @contextmanager
    def timed_prepare(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        with inner_prepare(*args, **kwargs) as image:
            spans["prepare"] += time.perf_counter() - started
            yield image
            started = time.perf_counter()
        spans["prepare"] += time.perf_counter() - started
    targets.prepare_image = timed_prepare  # type: ignore[assignment]
    wrap(config, "load", "config")
    wrap(run, "_stored_scan", "stored")
    wrap(run, "_models_in_image", "model")  # its lazy import of mlci.scan.models (about 40 ms) included
    wrap(policy, "judge", "policy")
    wrap(run, "_write_reports", "reports")
    wrap(record, "attach", "record")
    wrap(record, "write", "record")
    spans["imports"] = time.perf_counter() - _STARTED
    try:
        return cli.main(argv)
    finally:
        spans["in process"] = time.perf_counter() - _STARTED
        Path(spans_path).write_text(json.dumps(spans))


# --- measured processes ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Run:
    """One measured process: wall seconds, peak RSS (MB), exit code and what it printed."""

    wall: float
    rss_mb: float
    code: int
    stdout: str
    stderr: str


def timed(argv: list[str], cwd: Path, env: dict[str, str], ok: tuple[int, ...] = (0,)) -> Run:
    """Run one command under `/usr/bin/time -v` (wall clock, peak RSS); exit when its code is not in `ok`."""
    done = subprocess.run(["/usr/bin/time", "-v", *argv], cwd=cwd, env={**os.environ, **env}, capture_output=True,
                          text=True, check=False)
    if done.returncode not in ok:
        raise SystemExit(f"{' '.join(argv[:4])} exited {done.returncode}:\n{done.stdout[-3000:]}\n"
                         f"{done.stderr[-3000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", done.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    if wall is None or rss is None:
        raise SystemExit(f"/usr/bin/time -v printed no figures for {argv[:3]}:\n{done.stderr[-2000:]}")
    seconds = int(wall[1] or 0) * 3600 + int(wall[2]) * 60 + float(wall[3])
    return Run(seconds, int(rss[1]) / 1024, done.returncode, done.stdout, done.stderr)


def setup_run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """A set-up command (not measured); its stdout, or exit with its output on failure."""
    done = subprocess.run(argv, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                         f"{done.stderr[-3000:]}")
    return done.stdout


# --- set-up ----------------------------------------------------------------------------------------------------

class Bench:
    """The work dir, the trained example repo, its image in the registry and in a layout, and the DB."""

    def __init__(self, work: Path) -> None:
        from tests.testing import repos
        from tests.testing.registry import plain_http, start_registry

        self.work = work
        (work / "tmp").mkdir(parents=True)
        os.environ.update({"PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", "TMPDIR": str(work / "tmp"),
                           "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(work / "dvc-site"),
                           "MLCI_CACHE_DIR": str(work / "mlci-cache"), **repos.GIT_IDENTITY})
        self.registry = start_registry(directory=work / "registry")
        self.env = {"MLCI_SCAN_CACHE_DIR": str(work / "trivy-cache"), **plain_http(self.registry.host)}
        self.repo = work / "example"
        self.layout = work / "layout"
        self.runs = 0

    def build(self) -> None:
        from tests.testing import repos
        from tests.testing.images import BASE_TAG, base_layout, wheelhouse
        from tests.testing.trivydb import PIP, SEEDED, Advisory, make_db

        started = time.perf_counter()
        repos.example_repo(self.repo)
        setup_run([str(MLCI), "repro"], self.repo)
        trained = time.perf_counter()
        dotenv = self.work / "mlci-build.env"
        setup_run([str(MLCI), "build", "--tag", TAG, "--dotenv", str(dotenv)], self.repo, {
            **self.env, "MLCI_IMAGE_NAME": f"docker://{self.registry.host}/{REPO}",
            "MLCI_IMAGE_BASE": f"oci:{base_layout()}:{BASE_TAG}",
            "MLCI_IMAGE_PIP_ARGS": f"--no-index,--find-links,{wheelhouse()}"})
        handed = dict(line.split("=", 1) for line in dotenv.read_text().splitlines() if "=" in line)
        self.image, self.digest = handed["MLCI_IMAGE"], handed["MLCI_IMAGE_DIGEST"]
        built = time.perf_counter()
        self.layer_digests = self._copy_to_layout()
        extra = (Advisory(PIP, "joblib", "GHSA-bnch-jobl-ib01", "HIGH", "joblib loads what it should not",
                          vulnerable="<9.9", fixed="9.9"),
                 Advisory(PIP, "numpy", "GHSA-bnch-nump-y001", "MEDIUM", "numpy hole, no fix yet", vulnerable="<99"))
        self.db = make_db(Path(self.env["MLCI_SCAN_CACHE_DIR"]), advisories=(*SEEDED, *extra))
        image_mb = sum(p.stat().st_size for p in (self.layout / "blobs").rglob("*") if p.is_file()) / 1e6
        print(f"set-up: example trained in {trained - started:.1f} s, built and pushed in {built - trained:.1f} s: "
              f"{self.image}@{self.digest}, {image_mb:.1f} MB in {len(self.layer_digests)} layers; DB: "
              f"{len(self.db.advisories)} seeded advisories + filler", flush=True)

    def _copy_to_layout(self) -> list[str]:
        """The pushed image copied into an OCI layout with mlci's OCI engine; its layers' digests."""
        from mlci.oci.copy import copy, open_endpoint
        from mlci.oci.reference import parse

        host = self.registry.host
        src, ref = open_endpoint(parse(f"docker://{host}/{REPO}@{self.digest}"), (host,))
        dst, tag = open_endpoint(parse(f"oci:{self.layout}:{TAG}"))
        copy(src, ref, dst, tag)
        dst.commit()
        manifest = json.loads((self.layout / "blobs" / "sha256" / self.digest[7:]).read_bytes())
        return [layer["digest"] for layer in manifest["layers"]]

    def fresh_layout(self) -> Path:
        """A copy of the layout to scan once: blobs hard-linked, index.json and oci-layout copied."""
        self.runs += 1
        copy = self.work / f"layout-{self.runs}"
        shutil.copytree(self.layout, copy, copy_function=os.link, ignore=shutil.ignore_patterns("index.json"))
        shutil.copy(self.layout / "index.json", copy / "index.json")
        return copy

    def outputs(self, name: str) -> tuple[Path, list[str]]:
        out = self.work / "out" / name
        out.mkdir(parents=True)
        return out, [arg for flag, file in REPORTS.items() for arg in (flag, str(out / file))]

    def discard(self, layout: Path) -> None:
        shutil.rmtree(layout, ignore_errors=True)


@dataclass
class Peer:
    """Plain trivy's three processes and where their reports are."""

    runs: list[Run]
    report: Path
    sbom: Path

    @property
    def wall(self) -> float:
        return sum(r.wall for r in self.runs)


def peer(bench: Bench, name: str) -> Peer:
    """`trivy image --input LAYOUT` to JSON, then `trivy convert` to SARIF and CycloneDX, in an empty directory."""
    from mlci.scan import trivy
    from mlci.scan.settings import ScanSettings

    settings = ScanSettings(cache_dir=bench.env["MLCI_SCAN_CACHE_DIR"])
    found = trivy.find_trivy(settings)
    chosen = trivy.scanners(settings)
    flags = [*trivy.base_flags(found), "--scanners", ",".join(chosen)]
    if set(chosen) & {"secret", "misconfig"}:
        flags += ["--image-config-scanners", ",".join(s for s in chosen if s != "vuln")]
    layout = bench.fresh_layout()
    out = bench.work / "out" / name
    out.mkdir(parents=True)
    report, sbom = out / "trivy.json", out / "trivy.cdx.json"
    runs = [timed([found.path, "image", "--input", str(layout), *flags, "--format", "json", "--output", str(report)],
                  out, {})]
    for fmt, path in (("sarif", out / "trivy.sarif"), ("cyclonedx", sbom)):
        runs.append(timed([found.path, "convert", "--quiet", "--format", fmt, "--output", str(path), str(report)],
                          out, {}))
    bench.discard(layout)
    return Peer(runs, report, sbom)


@dataclass
class Ours:
    """One `mlci scan` (as users run it, or instrumented) and where its reports are."""

    run: Run
    out: Path
    spans: dict[str, float] = field(default_factory=dict)
    requests: list[Any] = field(default_factory=list)

    @property
    def overhead(self) -> float:
        """The wall time outside trivy's scan and convert and outside the model-file scanner."""
        return self.run.wall - self.spans["trivy"] - self.spans["model"]

    @property
    def start_up(self) -> float:
        """The interpreter's start and every import before mlci.cli.main runs."""
        return self.run.wall - self.spans["in process"] + self.spans["imports"]


def ours(bench: Bench, name: str, *, instrumented: bool) -> Ours:
    """`mlci scan oci:COPY:TAG` with every report, of a fresh copy of the layout."""
    layout = bench.fresh_layout()
    try:
        return _mlci(bench, name, [f"oci:{layout}:{TAG}"], {}, instrumented)
    finally:
        bench.discard(layout)


def rescan(bench: Bench, name: str, *, instrumented: bool = False) -> Ours:
    """`mlci scan` of the image `mlci build --dotenv` handed on (no argument), with the registry's requests."""
    from tests.testing.registry import access_log

    mark = len(access_log(bench.registry))
    done = _mlci(bench, name, [], {"MLCI_IMAGE": bench.image, "MLCI_IMAGE_DIGEST": bench.digest}, instrumented)
    done.requests = access_log(bench.registry)[mark:]
    return done


def _mlci(bench: Bench, name: str, args: list[str], env: dict[str, str], instrumented: bool) -> Ours:
    out, flags = bench.outputs(name)
    argv = ["scan", *args, *flags]
    spans_file = out / "spans.json"
    command = [str(PYTHON), str(Path(__file__).resolve()), "--timed", str(spans_file), *argv] if instrumented \
        else [str(MLCI), *argv]
    result = timed(command, bench.repo, {**bench.env, **env}, ok=(0, 1))  # 1: the gate failed, reports written
    return Ours(result, out, json.loads(spans_file.read_text()) if instrumented else {})


# --- checks ----------------------------------------------------------------------------------------------------

def vulnerabilities_of_trivy(report: Path) -> set[tuple[str, str, str]]:
    data = json.loads(report.read_text())
    return {(v["VulnerabilityID"], v["PkgName"], v["InstalledVersion"])
            for result in data.get("Results") or [] for v in result.get("Vulnerabilities") or []}


def vulnerabilities_of_mlci(summary: Path) -> set[tuple[str, str, str]]:
    data = json.loads(summary.read_text())
    return {(f["id"], f["package"], f["version"]) for f in data["findings"] if f["kind"] == "vulnerability"}


def components(sbom: Path) -> int:
    return len(json.loads(sbom.read_text()).get("components") or [])


def check_agree(theirs: Peer, mine: Ours) -> str:
    """mlci and the peer found the same vulnerabilities and SBOM components; a one-line account of them."""
    found, expected = vulnerabilities_of_mlci(mine.out / REPORTS["--json-out"]), vulnerabilities_of_trivy(theirs.report)
    if found != expected:
        raise SystemExit(f"mlci and trivy disagree: only mlci {sorted(found - expected)}, only trivy "
                         f"{sorted(expected - found)}")
    ours_sbom, their_sbom = components(mine.out / REPORTS["--sbom-out"]), components(theirs.sbom)
    if ours_sbom != their_sbom:
        raise SystemExit(f"SBOM components: mlci {ours_sbom}, trivy {their_sbom}")
    missing = [file for file in REPORTS.values() if not (mine.out / file).is_file()]
    if missing:
        raise SystemExit(f"mlci scan wrote no {', '.join(missing)}")
    summary = json.loads((mine.out / REPORTS["--json-out"]).read_text())
    kinds = Counter(f["kind"] for f in summary["findings"])
    return (f"both report the same {len(found)} vulnerabilities and {ours_sbom} SBOM components; mlci's verdict "
            f"{summary['verdict']} ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))} findings)")


def check_reused(bench: Bench, again: Ours) -> None:
    """A re-scan pulled no layer (the stored output was judged again) and wrote every report."""
    pulled = [e for e in again.requests if e.method == "GET" and any(d in e.target for d in bench.layer_digests)]
    if pulled:
        raise SystemExit(f"the re-scan pulled {len(pulled)} layer(s): {pulled[:2]}\n{again.run.stderr[-2000:]}")
    missing = [file for file in REPORTS.values() if not (again.out / file).is_file()]
    if missing:
        raise SystemExit(f"the re-scan wrote no {', '.join(missing)}")


# --- the run ---------------------------------------------------------------------------------------------------

def med(values: list[float]) -> float:
    return statistics.median(values)


def by_method(requests: list[Any]) -> str:
    counts = Counter(e.method for e in requests)
    return ", ".join(f"{n} {m}" for m, n in sorted(counts.items(), key=lambda item: -item[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="measured rounds (default 5; medians are printed)")
    parser.add_argument("--work-dir", help="where the temp dir goes (default: $TMPDIR)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (reports, the registry's log)")
    args = parser.parse_args()
    print(as_installed.prepare(), flush=True)
    if args.runs < 1:
        parser.error("--runs: at least 1")
    sys.path.insert(0, str(ROOT))
    from tests.testing.images import base_layout, wheelhouse
    from tests.testing.registry import stop_registry

    for needed in (MLCI, TRIVY, Path("/usr/bin/time"), Path("/usr/bin/docker-registry")):
        if not needed.exists():
            raise SystemExit(f"{needed} is missing: run scripts/test once (apt-get install time for /usr/bin/time)")
    wheelhouse(), base_layout()  # fail early when scripts/test has not made them
    print(f"settings: {PINNED}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    top = Path(tempfile.mkdtemp(prefix="mlci-bench-scan-", dir=args.work_dir))
    bench = Bench(top)
    try:
        bench.build()
        return measure(bench, args.runs)
    finally:
        stop_registry(bench.registry)
        if args.keep:
            print(f"kept {top}")
        else:
            shutil.rmtree(top, ignore_errors=True)


@dataclass
class Rounds:
    """Every measured run, by kind."""

    peers: list[Peer] = field(default_factory=list)
    plain: list[Ours] = field(default_factory=list)
    timed: list[Ours] = field(default_factory=list)
    rescans: list[Ours] = field(default_factory=list)
    timed_rescans: list[Ours] = field(default_factory=list)


def measure(bench: Bench, count: int) -> int:
    theirs, mine = peer(bench, "warm-peer"), ours(bench, "warm-mlci", instrumented=False)
    print(f"warm-up: trivy {theirs.wall:.2f} s, mlci {mine.run.wall:.2f} s; {check_agree(theirs, mine)}", flush=True)
    first = rescan(bench, "first-registry-scan")
    print(f"first scan from the registry (pulls the image, attaches record and SBOM): {first.run.wall:.2f} s, "
          f"{len(first.requests)} requests", flush=True)
    rounds = Rounds()
    for n in range(count):
        for kind in ("peer", "plain", "timed") if n % 2 == 0 else ("timed", "plain", "peer"):
            if kind == "peer":
                rounds.peers.append(peer(bench, f"peer-{n}"))
            else:
                getattr(rounds, kind).append(ours(bench, f"{kind}-{n}", instrumented=kind == "timed"))
        for instrumented, runs in ((False, rounds.rescans), (True, rounds.timed_rescans)):
            runs.append(rescan(bench, f"rescan-{n}-{'timed' if instrumented else 'plain'}", instrumented=instrumented))
            check_reused(bench, runs[-1])
        timed, again = rounds.timed[-1], rounds.rescans[-1]
        print(f"  round {n + 1}: trivy {rounds.peers[-1].wall:.2f} s; mlci {rounds.plain[-1].run.wall:.2f} s, "
              f"instrumented {timed.run.wall:.2f} s (trivy {timed.spans['trivy']:.2f}, model "
              f"{timed.spans['model']:.2f}, overhead {timed.overhead:.2f}); re-scan {again.run.wall:.2f} s / "
              f"{len(again.requests)} requests, instrumented {rounds.timed_rescans[-1].run.wall:.2f} s", flush=True)
    return report(rounds, os.getloadavg())


def breakdown(runs: list[Ours], names: tuple[str, ...], full: bool) -> list[tuple[str, float]]:
    """Medians of the start-up, of the named spans and of what is left of each run's overhead (`full`) or wall."""
    rows = [("start-up (interpreter, imports)", med([o.start_up for o in runs]))]
    rows += [(SHOWN[name], med([o.spans[name] for o in runs])) for name in names]
    rest = [(o.overhead if full else o.run.wall) - o.start_up - sum(o.spans[name] for name in names) for o in runs]
    return [*rows, ("the rest", med(rest))]


def report(rounds: Rounds, load: tuple[float, float, float]) -> int:
    peers, timed = rounds.peers, rounds.timed
    alone = med([p.wall for p in peers])
    plain = med([o.run.wall for o in rounds.plain])
    overhead = med([o.overhead for o in timed])
    own_trivy = med([o.overhead / o.spans["trivy"] for o in timed])
    ratio = overhead / alone
    rescan_wall = med([o.run.wall for o in rounds.rescans])
    ok = {"overhead": ratio <= TARGETS["overhead"], "rescan": rescan_wall <= TARGETS["rescan_s"]}
    verdict = {True: "PASS", False: "FAIL"}
    n = len(peers)
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in load)}; medians of {n} rounds (min in brackets)\n")
    print("| full scan of the example image (OCI layout) | wall |\n|---|---|")
    print(f"| plain trivy, its formats: image --input to JSON, convert to SARIF, convert to CycloneDX | {alone:.2f} s "
          f"({min(p.wall for p in peers):.2f}): scan {med([p.runs[0].wall for p in peers]):.2f} + converts "
          f"{med([p.runs[1].wall + p.runs[2].wall for p in peers]):.2f} |")
    print(f"| `mlci scan oci:LAYOUT:TAG`, every report (.venv/bin/mlci) | {plain:.2f} s "
          f"({min(o.run.wall for o in rounds.plain):.2f}), peak RSS {max(o.run.rss_mb for o in rounds.plain):.0f} MB |")
    print(f"| the same, instrumented | {med([o.run.wall for o in timed]):.2f} s |")
    print(f"| of it: trivy subprocesses (image, convert) | {med([o.spans['trivy'] for o in timed]):.2f} s |")
    print(f"| of it: model-file scanner (every layer; trivy has none) | {med([o.spans['model'] for o in timed]):.2f} "
          "s |")
    print(f"| of it: mlci's overhead | {overhead:.2f} s |")
    names = ("config", "trivy --version", "stored", "prepare", "trivy JSON", "policy", "reports", "record")
    for label, value in breakdown(timed, names, full=True):
        print(f"| &nbsp;&nbsp;{label} | {value:.2f} s |")
    print("\n| re-scan of the unchanged digest (registry), every report | wall |\n|---|---|")
    print(f"| `mlci scan` (.venv/bin/mlci), the digest from MLCI_IMAGE/MLCI_IMAGE_DIGEST | {rescan_wall:.2f} s "
          f"({min(o.run.wall for o in rounds.rescans):.2f}), peak RSS "
          f"{max(o.run.rss_mb for o in rounds.rescans):.0f} MB |")
    retimed = rounds.timed_rescans
    rescan_timed = med([o.run.wall for o in retimed])
    print(f"| the same, instrumented | {rescan_timed:.2f} s |")
    for label, value in breakdown(retimed, ("config", "trivy --version", "stored", "policy", "reports", "record"),
                                  full=False):
        print(f"| &nbsp;&nbsp;{label} | {value:.2f} s |")
    counts = [len(o.requests) for o in rounds.rescans + retimed]
    print(f"| registry requests, re-scan by re-scan | {', '.join(map(str, counts))} "
          f"(the last: {by_method(retimed[-1].requests)}) |")
    print("\n| target | measured | verdict |\n|---|---|---|")
    print(f"| mlci's overhead <= {TARGETS['overhead']:.0%} of trivy alone | {overhead:.2f} s / {alone:.2f} s = "
          f"**{ratio:.1%}** (of its own trivy part: {own_trivy:.1%}) | {verdict[ok['overhead']]} |")
    print(f"| (mlci / trivy alone, in total) | {plain / alone:.2f}x | n/a |")
    print(f"| re-scan <= {TARGETS['rescan_s']:.0f} s | **{rescan_wall:.2f} s** | {verdict[ok['rescan']]} |")
    return 0 if all(ok.values()) else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--timed"]:
        sys.exit(timed_mlci(sys.argv[2], sys.argv[3:]))
    sys.exit(main())
