"""The training stage as a library: pull, refuse a stale lock, `dvc repro`, prove determinism, push."""
from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mlci.core.errors import EnvironmentProblem, PipelineFailed
from mlci.core.log import logger
from mlci.dvcstage import determinism, lock
from mlci.dvcstage.determinism import Proof
from mlci.dvcstage.dvc import RepoInfo, dvc, inspect, last_error, status

_STAGE_EVENTS = (
    (re.compile(r"^Running stage '(?P<stage>.+?)':"), "ran"),
    (re.compile(r"^Stage '(?P<stage>.+?)' didn't change, skipping"), "skipped"),
    (re.compile(r"^Stage '(?P<stage>.+?)' is cached - skipping run"), "restored"),
)
_FAILED_STAGE = re.compile(r"failed to reproduce '(?P<stage>.+?)'")


@dataclass(frozen=True)
class Options:
    """What one `mlci repro` run does (resolved from flags, mlci.yaml and the environment)."""

    targets: tuple[str, ...] = ()
    remote: str | None = None
    pull: bool = True
    push: bool = False
    check_lock: bool = False
    check_determinism: bool = False
    output_tail: int = 40


@dataclass
class Outcome:
    """What happened; `failures` non-empty means a gate failed (exit 1)."""

    remote: str | None = None
    pulled: bool = False
    pushed: bool = False
    stages: dict[str, str] = field(default_factory=dict)
    outputs: list[lock.Output] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    determinism: Proof | None = None
    stale_lock: bool = False  # the committed dvc.lock does not describe the committed code
    seconds: float = 0.0


def reproduce(root: Path, opts: Options) -> Outcome:
    """Run the training stage in the DVC repo at `root`."""
    started = time.monotonic()
    info = inspect(root)
    outcome = Outcome(remote=_resolve_remote(info, opts) if opts.pull or opts.push else None)
    try:
        _run(root, opts, outcome, info)
    finally:
        outcome.seconds = round(time.monotonic() - started, 3)
    return outcome


def _run(root: Path, opts: Options, outcome: Outcome, info: RepoInfo) -> None:
    if opts.pull and outcome.remote:
        _pull(root, outcome.remote, opts.targets)
        outcome.pulled = True
    info = inspect(root) if outcome.pulled else info
    outcome.warnings.extend(uncached_output_warnings(info))
    committed = lock.read_lock(root, info.wdirs)
    if opts.check_lock:
        outcome.failures.extend(lock.stale_reasons(status(root, opts.targets), committed, root))
        if outcome.failures:
            outcome.stale_lock = True
            outcome.outputs = lock.outputs(committed)
            return
    result = dvc(root, "repro", "--", *opts.targets, stream=True)
    outcome.stages = stage_events(result.stdout)
    if result.returncode != 0:
        match = _FAILED_STAGE.search(result.stdout)
        where = f"stage '{match['stage']}' failed" if match else "dvc repro failed"
        raise PipelineFailed(f"{where}: {last_error(result)}\n{result.tail(opts.output_tail)}")
    after = lock.read_lock(root, info.wdirs)
    outcome.outputs = lock.outputs(after)
    if opts.check_lock and after != committed:
        outcome.failures.extend(
            f"{line} by this run: commit the updated dvc.lock" for line in lock.changed_outputs(committed, after)
        )
    if opts.check_determinism:
        outcome.warnings.extend(determinism.unprovable(info))
        outcome.determinism = determinism.check(root, opts.targets, opts.output_tail, info)
        outcome.failures.extend(
            f"stage '{d.stage}': output {d.path} is not deterministic (md5 {d.expected} vs {d.got} on a re-run)"
            for d in outcome.determinism.differences
        )
    if opts.push and outcome.remote and not outcome.failures:
        _push(root, outcome.remote, opts.targets)
        outcome.pushed = True


def _resolve_remote(info: RepoInfo, opts: Options) -> str | None:
    if opts.remote is None:
        return info.default_remote
    if opts.remote not in info.remotes:
        raise EnvironmentProblem(f"DVC remote '{opts.remote}' (train.remote) is not defined in the DVC config")
    return opts.remote


def _pull(root: Path, remote: str, targets: Sequence[str]) -> None:
    logger.info("mlci: pulling data and run-cache from DVC remote '%s'", remote)
    result = dvc(root, "pull", "--run-cache", "--allow-missing", "-r", remote, "--", *targets, stream=True)
    if result.returncode != 0:
        raise EnvironmentProblem(f"cannot pull from DVC remote '{remote}': {last_error(result)}")


def _push(root: Path, remote: str, targets: Sequence[str]) -> None:
    logger.info("mlci: pushing outputs and run-cache to DVC remote '%s'", remote)
    result = dvc(root, "push", "--run-cache", "-r", remote, "--", *targets, stream=True)
    if result.returncode != 0:
        raise EnvironmentProblem(f"cannot push to DVC remote '{remote}': {last_error(result)}")


def stage_events(output: str) -> dict[str, str]:
    """What `dvc repro` did per stage (ran / skipped / restored from the run-cache), from its output."""
    events: dict[str, str] = {}
    for line in output.splitlines():
        for pattern, event in _STAGE_EVENTS:
            match = pattern.match(line)
            if match:
                events[match["stage"]] = event
    return events


def uncached_output_warnings(info: RepoInfo) -> list[str]:
    """Warn about DVC's trap: outputs with `cache: false` that are missing are never restored by
    `dvc pull` or the run-cache, so their stage re-runs in CI unless they are committed to git."""
    return [
        f"stage '{stage}': output {path} has `cache: false` and is missing; DVC does not restore such "
        "outputs from the remote or the run-cache, so the stage will re-run: commit the file to git"
        for stage, path in info.uncached_missing
    ]
