"""The example's no-op merge request pipeline: wall time of the whole pipeline through gitlab-ci-local when nothing
changed since its last run (issue 13: target under 30 s).

    .venv/bin/python benchmarks/pipeline.py              # 3 measured runs
    .venv/bin/python benchmarks/pipeline.py --runs 5

What runs: the world of tests/e2e/world.py (the example model repo with its one include line, mlci's templates
from the include cache, a loopback docker-registry as the dev registry, the GitLab stand-in with the merge
request, a local DVC remote, a trivy DB). One unmeasured first pipeline trains, builds, scans and posts the report;
then each measured run is the same merge request pipeline again, `gitlab-ci-local --shell-isolation
--force-shell-executor` (tests/testing/gitlab_ci_local.py's run_pipeline, its defaults): config-check, train,
data-test, build, scan and report, one after the other, each in its own rsync'ed copy of the repository. Nothing
that users set is pinned: mlci's defaults and the example's mlci.yaml. Pinned by the harness: the base image and
wheels come from .tools (offline), the registry is plain HTTP (MLCI_REGISTRIES), the DB is the test DB.

Each measured run is checked to be a no-op (nothing retrained, the image reused, the stored scan judged again, the
comment updated or left as it is); the script exits 1 when one is not, or when the median misses the target. It
prints each run's wall time, the jobs' own times (gitlab-ci-local's "finished in"), the median and its ratio to the
target, and the load average before and after. Needs what scripts/test prepares (.venv, gitlab-ci-local in .tools/gcl,
docker-registry, .tools/base, .tools/wheelhouse)."""
from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks import as_installed  # noqa: E402
from tests.e2e.world import MR_BRANCH, made, mr_variables  # noqa: E402
from tests.testing import repos  # noqa: E402
from tests.testing.gitlab_ci_local import PipelineResult, run_pipeline  # noqa: E402

TARGET_S = 30.0
FINISHED = re.compile(r"^(?P<job>mlci-[\w-]+) finished in (?P<time>.+?)(?:\s+FAIL.*)?$", re.MULTILINE)
NO_OP = {"mlci-train": r"stages: 4 \(ran 0, skipped 4", "mlci-build": r"mlci: reused ",
         "mlci-scan": r"scanned before with the same DB", "mlci-report": r"(updated|unchanged) report comment"}


def _hermetic(home: Path) -> None:
    """As tests/conftest.py: this venv's tools first, DVC without analytics, no global git config, not in CI."""
    os.environ.update({"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                       "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(home / "dvc-site"), "HOME": str(home),
                       "XDG_CACHE_HOME": str(home / ".cache"), "XDG_CONFIG_HOME": str(home / ".config"),
                       "GIT_CONFIG_NOSYSTEM": "1", **repos.GIT_IDENTITY})
    os.environ.pop("CI", None)


def _not_no_op(result: PipelineResult) -> list[str]:
    """What in the run was not a no-op (empty: every expensive job skipped its work)."""
    problems = [f"exit {result.returncode}"] if result.returncode != 0 else []
    for job, marker in NO_OP.items():
        if not re.search(marker, result.job(job).log):
            problems.append(f"{job}: no {marker!r} in its log")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="measured no-op runs (default 3)")
    args = parser.parse_args()
    print(as_installed.prepare(), flush=True)
    print(f"load average before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    with tempfile.TemporaryDirectory(prefix="mlci-bench-pipeline-") as work:
        tmp = Path(work)
        _hermetic(tmp / "home")
        with made(tmp / "world") as world:
            repos.git(world.repo, "checkout", "-q", MR_BRANCH)
            variables = mr_variables(world)
            first = run_pipeline(world.repo, variables=variables, timeout=900)
            if first.returncode != 0:
                print(first.describe(), file=sys.stderr)
                return 1
            print(f"first pipeline (trains, builds, scans; not measured): {first.duration:.1f} s")
            times, failed = [], False
            for number in range(1, args.runs + 1):
                result = run_pipeline(world.repo, variables=variables, timeout=900)
                times.append(result.duration)
                jobs = ", ".join(f"{m['job'].removeprefix('mlci-')} {m['time']}"
                                 for m in FINISHED.finditer(result.output))
                problems = _not_no_op(result)
                failed = failed or bool(problems)
                print(f"no-op run {number}: {result.duration:.1f} s ({jobs})"
                      + (f"  NOT A NO-OP: {'; '.join(problems)}" if problems else ""))
    median = statistics.median(times)
    print(f"no-op merge request pipeline: median {median:.1f} s (min {min(times):.1f} s) over {len(times)} runs; "
          f"{median / TARGET_S:.2f}x the {TARGET_S:.0f} s target")
    print(f"load average after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    return 1 if failed or median >= TARGET_S else 0


if __name__ == "__main__":
    sys.exit(main())
