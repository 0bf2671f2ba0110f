"""Data-quality checking tools side by side in one run: `mlci data-test` against a hand-written DuckDB
query, Soda Core, pandera and Great Expectations, on one generated Parquet dataset and one suite.

    .venv/bin/python benchmarks/datatest.py [--rows 10000000] [--runs 3] [--only soda,mlci] [--skip-install]

The data (12 columns, fixed seed) and a 1M-row drift reference are generated once into .bench/data/.
Every peer gets its own virtualenv under .bench/venvs/<tool>, installed on first use from the exact
pins in benchmarks/datatest_peers/requirements-<tool>.txt. Each tool runs as a whole process under
`/usr/bin/time -v` (wall time with interpreter start-up, peak RSS); the runs alternate between the
tools and the table shows the median. The baseline always runs: its numbers are what mlci's
`--json-out` is checked against. Exit code 1 when mlci's values disagree with the baseline's.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "benchmarks" / "datatest_peers"
BENCH = ROOT / ".bench"
MAIN_VENV = ROOT / ".venv"
TOOLS = ("baseline", "soda", "pandera", "gx", "mlci")
LABELS = {"baseline": "hand-written DuckDB", "soda": "Soda Core", "pandera": "pandera",
          "gx": "Great Expectations", "mlci": "mlci data-test"}
# Checks of the suite's 19 that each tool expresses (see the files in datatest_peers/).
COVERED = {"baseline": 19, "soda": 19, "pandera": 16, "gx": 19, "mlci": 19}
OK_EXIT = {"soda": {0, 1, 2}, "mlci": {0, 1}}  # soda: 1 warnings, 2 failures; mlci: 1 gate failed
VERSIONS = {"datagen": ["numpy", "pyarrow"], "duckdb": ["duckdb"], "soda": ["soda-core", "duckdb", "pandas"],
            "pandera": ["pandera", "pandas", "pyarrow"], "gx": ["great_expectations", "pandas", "pyarrow"],
            "main": ["mlci", "duckdb"]}
REF_ROWS = 1_000_000
TOLERANCE = {"quantile": (1e-4, 0.0), "drift": (0.0, 1e-5)}  # (relative, absolute); mlci rounds drift to 6 places
DEFAULT_TOLERANCE = (1e-6, 1e-9)


@dataclass
class Tool:
    """One measured command and what it needs."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    walls: list[float] = field(default_factory=list)
    rss_kb: list[int] = field(default_factory=list)
    note: str = ""


def suite(data: Path, reference: Path) -> dict[str, Any]:
    """The benchmark's suite as one `data_tests` dataset entry: 19 checks, 3 of them drift."""
    return {
        "name": "bench", "path": str(data), "reference": str(reference),
        "checks": [{"row_count": {"min": 1, "max": 20_000_000}}, {"unique": {"columns": ["id"]}}],
        "columns": {
            "id": ["not_null"],
            "age": ["not_null", {"between": {"min": 18, "max": 100}}, {"mean": {"min": 30, "max": 60}}],
            "income": [{"missing_ratio": {"max": 0.05}}, {"quantile": {"q": 0.5, "min": 10_000, "max": 100_000}},
                       {"stddev": {"min": 1, "max": 1_000_000}},
                       {"drift": {"method": "psi", "warn": 0.1, "fail": 0.25}}],
            "score": [{"between": {"min": 0, "max": 1}}, {"mean": {"min": 0.1, "max": 0.5, "severity": "warn"}},
                      {"drift": {"method": "ks", "warn": 0.1, "fail": 0.2}}],
            "region": [{"allowed_values": {"values": ["a", "b", "c"]}}, {"drift": {"method": "psi"}}],
            "email": ["not_null", {"regex": {"pattern": "[a-z0-9._]+@[a-z0-9.]+"}}],
            "tenure_months": [{"between": {"min": 0, "max": 600}}],
            "balance": [{"missing_ratio": {"max": 0.05, "severity": "warn"}}],
        },
    }


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a set-up command, failing loudly with its output."""
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(argv)}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return proc


def versions(python: Path, names: list[str]) -> str:
    """`name version` of the given distributions in a virtualenv."""
    code = "import importlib.metadata as m, sys; print(', '.join(f'{n} {m.version(n)}' for n in sys.argv[1:]))"
    return run([str(python), "-c", code, *names]).stdout.strip()


def venv(name: str, skip_install: bool) -> Path:
    """The python of .bench/venvs/<name>, created from requirements-<name>.txt when missing or stale."""
    path, req = BENCH / "venvs" / name, PEERS / f"requirements-{name}.txt"
    python, stamp = path / "bin" / "python", path / "bench-install.json"
    wanted = req.read_text()
    info = json.loads(stamp.read_text()) if stamp.exists() else {}
    if info.get("requirements") == wanted or (skip_install and python.exists()):
        print(f"  {name:<8} {versions(python, VERSIONS[name])} (installed earlier in {info.get('seconds', '?')} s)")
        return python
    if skip_install:
        raise SystemExit(f"{name}: no virtualenv at {path}; run once without --skip-install")
    shutil.rmtree(path, ignore_errors=True)
    started = time.perf_counter()
    run([sys.executable, "-m", "venv", str(path)])
    run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(req)])
    seconds = round(time.perf_counter() - started, 1)
    stamp.write_text(json.dumps({"requirements": wanted, "seconds": seconds}))
    print(f"  {name:<8} {versions(python, VERSIONS[name])} (installed now in {seconds} s)")
    return python


def has_duckdb(python: Path) -> bool:
    """Whether the project's venv already has duckdb (the baseline then uses it as is)."""
    if not python.exists():
        return False
    return subprocess.run([str(python), "-c", "import duckdb"], capture_output=True, check=False).returncode == 0


def generate(datagen: Path, out: Path, rows: int, seed: int, reference: bool) -> None:
    """Write a dataset once; later runs reuse it."""
    if out.exists():
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    started = time.perf_counter()
    run([str(datagen), str(PEERS / "gen_data.py"), str(tmp), str(rows), str(seed),
         *(["--reference"] if reference else [])])
    tmp.rename(out)
    print(f"  generated {out.relative_to(ROOT)} ({rows:,} rows, {out.stat().st_size / 1e6:.0f} MB) "
          f"in {time.perf_counter() - started:.1f} s")


def ensure_time() -> None:
    """Install Debian's `time` when /usr/bin/time is missing."""
    if not Path("/usr/bin/time").exists():
        run(["apt-get", "install", "-y", "-q", "time"])


def measure(tool: Tool, log: Path) -> int:
    """Run the tool once under /usr/bin/time -v; record wall time and peak RSS; return its exit code."""
    report = log.with_suffix(".time")
    with log.open("w") as out:
        proc = subprocess.run(["/usr/bin/time", "-v", "-o", str(report), *tool.argv], stdout=out,
                              stderr=subprocess.STDOUT, env={**os.environ, **tool.env}, cwd=log.parent, check=False)
    text = report.read_text()
    clock = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", text)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    if clock and rss:
        h, m, s = clock.groups()
        tool.walls.append(int(h or 0) * 3600 + int(m) * 60 + float(s))
        tool.rss_kb.append(int(rss.group(1)))
    return proc.returncode


def mlci_available(mlci: Path) -> bool:
    """False when `mlci data-test` does not exist yet (argparse's exit 2 'invalid choice')."""
    if not mlci.exists():
        return False
    proc = subprocess.run([str(mlci), "data-test", "--help"], capture_output=True, text=True, check=False)
    return not (proc.returncode == 2 and "invalid choice" in proc.stderr)


def prepare(args: argparse.Namespace, work: Path) -> dict[str, Tool]:
    """Install what is missing, generate the data, write each tool's inputs; return the commands."""
    tools = [t for t in TOOLS if t == "baseline" or not args.only or t in args.only]
    print("virtualenvs (.bench/venvs):")
    data = BENCH / "data" / f"rows{args.rows}" / "bench.parquet"
    ref_rows = min(REF_ROWS, args.rows)
    ref = BENCH / "data" / f"ref{ref_rows}" / "reference.parquet"
    datagen = venv("datagen", args.skip_install)
    generate(datagen, data, args.rows, 42, False)
    generate(datagen, ref, ref_rows, 7, True)
    spec = suite(data, ref)
    (work / "suite.json").write_text(json.dumps(spec, indent=1))
    main_python = MAIN_VENV / "bin" / "python"
    if has_duckdb(main_python):
        duck = main_python
        print(f"  baseline uses .venv: {versions(duck, ['duckdb'])}")
    else:
        duck = venv("duckdb", args.skip_install)
    mlci = mlci_tool(work, spec, ref) if "mlci" in tools else None
    shared = [str(work / "reference.profile.json")] if mlci is not None and mlci.argv else []
    profile = work / "baseline.profile.json"
    run([str(duck), str(PEERS / "baseline.py"), "profile", str(ref), str(work / "suite.json"), str(profile), *shared])
    baseline_argv = [str(duck), str(PEERS / "baseline.py"), "run", str(work / "suite.json"), str(profile),
                     str(work / "baseline.json")]
    out: dict[str, Tool] = {"baseline": Tool("baseline", baseline_argv)}
    if "soda" in tools:
        out["soda"] = soda_tool(venv("soda", args.skip_install), work, data, ref)
    if "pandera" in tools:
        py = venv("pandera", args.skip_install)
        out["pandera"] = Tool("pandera", [str(py), str(PEERS / "pandera_suite.py"), str(data)])
    if "gx" in tools:
        py = venv("gx", args.skip_install)
        out["gx"] = Tool("gx", [str(py), str(PEERS / "gx_suite.py"), str(data), str(profile)],
                         env={"GX_ANALYTICS_ENABLED": "false"})
    if mlci is not None:
        out["mlci"] = mlci
    return out


def soda_tool(python: Path, work: Path, data: Path, ref: Path) -> Tool:
    """Soda's configuration (telemetry off: this machine has no internet), checks and DROs.

    The dataset is a view over the Parquet file in a DuckDB database file made by Soda's own duckdb:
    Soda's `path: file.parquet` shortcut copies the whole file into a table first (1.8 GB at 10M rows).
    """
    soda, home = python.parent / "soda", work / "soda-home"
    (home / ".soda").mkdir(parents=True, exist_ok=True)
    (home / ".soda" / "config.yml").write_text("send_anonymous_usage_stats: false\n")
    database = work / "soda-bench.duckdb"
    database.unlink(missing_ok=True)
    view = ("import duckdb, sys; duckdb.connect(sys.argv[1]).execute("
            "f\"CREATE VIEW bench AS SELECT * FROM read_parquet('{sys.argv[2]}')\")")
    run([str(python), "-c", view, str(database), str(data)])
    config = work / "soda-configuration.yml"
    config.write_text(f"data_source bench:\n  type: duckdb\n  path: {database}\n  read_only: true\n"
                      f"data_source reference:\n  type: duckdb\n  path: {ref}\n")
    shutil.copy(PEERS / "soda_checks.yml", work / "soda-checks.yml")
    dro = work / "dro.yml"
    if not dro.exists():
        shutil.copy(PEERS / "soda_dro.yml", dro)
        for name in ("income_dro", "score_dro", "region_dro"):
            run([str(soda), "update-dro", "-d", "reference", "-c", str(config), "-n", name, str(dro)],
                env={**os.environ, "HOME": str(home)})
    return Tool("soda", [str(soda), "scan", "-d", "bench", "-c", str(config), str(work / "soda-checks.yml")],
                env={"HOME": str(home)})


def mlci_tool(work: Path, spec: dict[str, Any], ref: Path) -> Tool:
    """mlci.yaml in the agreed format plus its reference profile; a placeholder when data-test is missing."""
    mlci = MAIN_VENV / "bin" / "mlci"
    if not mlci_available(mlci):
        return Tool("mlci", [], note="mlci: not available")
    profile = work / "reference.profile.json"
    proc = subprocess.run([str(mlci), "data-test", "profile", str(ref), "-o", str(profile)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        first = next((ln for ln in proc.stderr.splitlines() if "error" in ln.lower()), proc.stderr.strip()[:200])
        return Tool("mlci", [], note=f"mlci: profile failed (exit {proc.returncode}): {first[:160]}")
    entry = {k: v for k, v in spec.items() if k != "reference"}
    entry = {"name": entry.pop("name"), "path": entry.pop("path"), "reference": str(profile), **entry}
    config = work / "mlci.yaml"
    config.write_text(yaml.safe_dump({"version": 1, "data_tests": {"datasets": [entry]}}, sort_keys=False))
    print(f"  mlci     {versions(MAIN_VENV / 'bin' / 'python', VERSIONS['main'])} (.venv)")
    return Tool("mlci", [str(mlci), "data-test", "--config", str(config), "--json-out", str(work / "mlci.json")])


def warm(paths: list[Path]) -> None:
    """Read the data files once so that every tool starts from a warm page cache."""
    for path in paths:
        with path.open("rb") as f:
            while f.read(1 << 24):
                pass


def _numbers(observed: Any) -> dict[str, float]:
    """Numeric values of an observed value: {'': v} for a number, lower-cased keys for a dict."""
    if isinstance(observed, bool):
        return {}
    if isinstance(observed, (int, float)):
        return {"": float(observed)}
    if isinstance(observed, dict):
        return {str(k).lower(): float(v) for k, v in observed.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {}


def _close(a: float, b: float, check: str) -> bool:
    """Equal within the check's tolerance."""
    rel, absolute = TOLERANCE.get(check, DEFAULT_TOLERANCE)
    return math.isclose(a, b, rel_tol=rel, abs_tol=max(absolute, DEFAULT_TOLERANCE[1]))


def _status(value: Any) -> str:
    """pass / warn / fail from the spellings a tool may use."""
    text = str(value).lower()
    names = {"passed": "pass", "ok": "pass", "failed": "fail", "error": "fail", "warning": "warn", "warned": "warn"}
    return names.get(text, text)


def compare(baseline: dict[str, Any], doc: Any) -> list[str]:
    """Lines comparing mlci's results with the baseline's; mismatches start with 'MISMATCH'."""
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
        keys = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
        return [f"MISMATCH mlci --json-out has no list `results` (top level: {keys})"]
    ours = {(r["column"] or "", r["check"]): r for r in baseline["results"]}
    theirs: dict[tuple[str, str], dict[str, Any]] = {}
    for item in doc["results"]:
        if isinstance(item, dict) and item.get("dataset", "bench") == "bench":
            theirs[(str(item.get("column") or ""), str(item.get("check", "")))] = item
    lines = []
    for key, base in ours.items():
        label = f"{key[0] or '(dataset)'}.{key[1]}"
        item = theirs.pop(key, None)
        if item is None:
            lines.append(f"MISMATCH {label}: not in mlci's results")
            continue
        nums, aliases = _numbers(item.get("observed")), {k.lower(): v for k, v in base["aliases"].items()}
        common = [k for k in nums if k in aliases]
        if common:
            agree = all(_close(nums[k], aliases[k], key[1]) for k in common)
        else:
            agree = any(_close(v, t, key[1]) for v in nums.values() for t in [base["observed"], *aliases.values()])
        status_ok = _status(item.get("status")) == base["status"]
        verdict = "ok      " if agree and status_ok else "MISMATCH"
        lines.append(f"{verdict} {label}: baseline {base['observed']:.6g} ({base['status']}), "
                     f"mlci {json.dumps(item.get('observed'))} ({item.get('status')})")
    lines += [f"MISMATCH {c or '(dataset)'}.{k}: only in mlci's results" for c, k in theirs]
    return lines


def table(tools: dict[str, Tool], rows: int, runs: int, load: str) -> None:
    """The side-by-side table of medians and ratios to the baseline."""
    base = tools["baseline"]
    bw, br = statistics.median(base.walls), statistics.median(base.rss_kb)
    print(f"\n{rows:,} rows x 12 columns, suite of 19 checks, median of {runs} run(s); "
          f"load average before the runs {load}\n")
    print(f"| {'tool':<20} | checks | {'wall':>7} | {'peak RSS':>9} | {'wall/base':>9} | {'RSS/base':>8} |")
    print(f"|{'-' * 22}|--------|{'-' * 9}|{'-' * 11}|{'-' * 11}|{'-' * 10}|")
    for name, tool in tools.items():
        if not tool.walls:
            print(f"| {LABELS[name]:<20} | {tool.note or 'no measurement'}")
            continue
        w, r = statistics.median(tool.walls), statistics.median(tool.rss_kb)
        print(f"| {LABELS[name]:<20} | {COVERED[name]:>3}/19 | {w:>6.2f}s | {r / 1e6:>6.2f} GB | {w / bw:>8.2f}x | "
              f"{r / br:>7.2f}x |{' ' + tool.note if tool.note else ''}")
    walls = (f"{n} " + " ".join(f"{w:.2f}" for w in t.walls) for n, t in tools.items() if t.walls)
    print("\nwall times per run: " + "; ".join(walls))


def main() -> None:
    """Parse the options, prepare, measure, print, compare."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", type=lambda s: set(s.split(",")), default=set(), help=f"subset of {','.join(TOOLS)}")
    parser.add_argument("--skip-install", action="store_true", help="use the virtualenvs as they are")
    args = parser.parse_args()
    if args.only - set(TOOLS):
        parser.error(f"--only: unknown tool(s) {','.join(sorted(args.only - set(TOOLS)))}")
    ensure_time()
    work = BENCH / "work" / f"rows{args.rows}"
    work.mkdir(parents=True, exist_ok=True)
    tools = prepare(args, work)
    warm([Path(json.loads((work / "suite.json").read_text())["path"])])
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())  # other work on the machine skews the times
    for i in range(args.runs):
        for name, tool in tools.items():
            if not tool.argv:
                continue
            if name == "mlci":
                (work / "mlci.json").unlink(missing_ok=True)
            rc = measure(tool, work / f"{name}.log")
            if rc not in OK_EXIT.get(name, {0}):
                tool.note = f"exit {rc}, see {(work / f'{name}.log').relative_to(ROOT)}"
            wall = tool.walls[-1] if tool.walls else float("nan")
            print(f"  run {i + 1}/{args.runs} {name:<8} {wall:6.2f} s  exit {rc}")
    table(tools, args.rows, args.runs, load)
    mlci = tools.get("mlci")
    failed = bool(mlci and mlci.note and mlci.note != "mlci: not available")
    if mlci and mlci.argv:
        out = work / "mlci.json"
        doc = json.loads(out.read_text()) if out.exists() else {}
        lines = compare(json.loads((work / "baseline.json").read_text()), doc)
        print("\nmlci vs baseline:\n  " + "\n  ".join(lines))
        bad = sum(line.startswith("MISMATCH") for line in lines)
        print(f"\n{bad} mismatch(es)" if bad else "\nmlci agrees with the baseline on every check")
        failed = failed or bad > 0
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
