"""The default branch's pipelines with no network at all: run under `unshare -n` (nothing but loopback, as STAGE has
no route out), this brings `lo` up, serves the dev registry's files (what the merge request's pipeline pushed) and
a stage registry on fixed loopback ports, and runs, through gitlab-ci-local:

1. `moved`: the default branch's whole pipeline while stage's tag for this commit already names another image
   (pushed there by hand): everything passes up to mlci-promote-stage, which refuses to move the tag;
2. that image removed, `promote`: the whole pipeline again, which promotes into stage;
3. `again`: its promote job once more (from the same build and scan), with nothing changed;
4. `unscanned`: mlci-promote-stage alone, from a build job's prepared artifacts naming a digest never scanned.

    unshare -n python -m tests.e2e.stage_inside SPEC.json

SPEC: repo, dev_data (the dev registry's data directory), work (where this side's registries keep their files),
dev_port, stage_port, variables (the pipelines' CI variables), unscanned ({image, digest}). Prints one JSON object:
per step the exit code, duration, each job's status, exit code and log, the artifacts' small text files, and the
requests the stage registry answered; and the network interfaces seen (only `lo`)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import requests

from tests.testing.gitlab_ci_local import PipelineResult, artifacts_dir, run_pipeline, seed_artifacts
from tests.testing.inside import interfaces, loopback_up
from tests.testing.registry import OCI_MANIFEST, Registry, access_log, push_random_image, start_registry, stop_registry

STEP_TIMEOUT = 600
KEPT = ("mlci-build.env", "mlci-promote.env", "mlci-repro.json", "mlci-scan-record.json")


def _step(result: PipelineResult, stage: Registry, seen: int) -> dict[str, Any]:
    """What a run did, for the test outside (the stage registry's requests since `seen`)."""
    kept = {}
    for job in result.jobs:
        for name in KEPT:
            path = artifacts_dir(result.repo, job) / name
            if path.is_file():
                kept[f"{job}/{name}"] = path.read_text()
    return {"returncode": result.returncode, "duration": result.duration, "output": result.output[-6000:],
            "jobs": {n: {"status": j.status, "exit_code": j.exit_code, "log": j.log} for n, j in result.jobs.items()},
            "artifacts": kept,
            "stage_requests": [[e.method, e.target, e.status] for e in access_log(stage)[seen:]]}


def main(spec: dict[str, Any]) -> dict[str, Any]:
    repo, work, variables = Path(spec["repo"]), Path(spec["work"]), dict(spec["variables"])
    loopback_up()
    dev_dir = work / "dev"
    dev_dir.mkdir(parents=True, exist_ok=True)
    if not (dev_dir / "data").exists():
        os.symlink(spec["dev_data"], dev_dir / "data")  # the files the outside's registry serves, served here
    dev = start_registry(directory=dev_dir, port=int(spec["dev_port"]))
    stage = start_registry(directory=work / "stage", port=int(spec["stage_port"]))
    steps: dict[str, Any] = {}
    try:
        short = spec["short_sha"]
        by_hand = push_random_image(stage, "ml/credit-model", tag=short)  # stage's tag names another image
        seen = len(access_log(stage))
        result = run_pipeline(repo, variables=variables, timeout=STEP_TIMEOUT)
        steps["moved"] = {**_step(result, stage, seen), "by_hand": by_hand}
        with requests.Session() as http:
            http.trust_env = False
            gone = http.delete(f"{stage.url}/v2/ml/credit-model/manifests/{by_hand}", timeout=30,
                               headers={"Accept": OCI_MANIFEST})
            steps["moved"]["removed"] = gone.status_code
        seen = len(access_log(stage))
        steps["promote"] = _step(run_pipeline(repo, variables=variables, timeout=STEP_TIMEOUT), stage, seen)
        seen = len(access_log(stage))  # the promote job once more, from the same build and scan: nothing to copy
        steps["again"] = _step(run_pipeline(repo, variables=variables, jobs=["mlci-promote-stage"],
                                            keep_artifacts=True, timeout=STEP_TIMEOUT), stage, seen)
        unscanned = spec["unscanned"]
        seed_artifacts(repo, "mlci-build", {"mlci-build.env": f"MLCI_IMAGE={unscanned['image']}\n"
                                                              f"MLCI_IMAGE_DIGEST={unscanned['digest']}\n"},
                       dotenv="mlci-build.env")
        seen = len(access_log(stage))
        steps["unscanned"] = _step(run_pipeline(repo, variables=variables, jobs=["mlci-promote-stage"],
                                                keep_artifacts=True, timeout=STEP_TIMEOUT), stage, seen)
    finally:
        stop_registry(stage)
        stop_registry(dev)
    return {"interfaces": interfaces(), "steps": steps}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(Path(sys.argv[1]).read_text()))))
