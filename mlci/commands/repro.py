"""`mlci repro`: the CI training stage (pull, refuse a stale dvc.lock, dvc repro, determinism, push)."""
from __future__ import annotations

import argparse
import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from mlci.commands import directory
from mlci.core import log
from mlci.core.errors import ExitCode, UsageError
from mlci.core.fsutil import atomic_write_json, check_writable

if TYPE_CHECKING:  # the library imports DVC's Python API: kept out of CLI start-up
    from mlci.dvcstage.repro import Options, Outcome


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Register `repro` and its flags (each flag overrides the `train` section of mlci.yaml)."""
    parser = sub.add_parser("repro", parents=[common], help="reproduce the DVC pipeline as a CI stage",
                            description="Pull data and run-cache, refuse a stale dvc.lock, run `dvc repro`, "
                                        "optionally prove determinism, push.")
    parser.add_argument("targets", nargs="*", help="stages or dvc.yaml files (default: train.targets, else all)")
    parser.add_argument("--remote", help="DVC remote (default: train.remote, else the repo's default remote)")
    parser.add_argument("--pull", action=argparse.BooleanOptionalAction, default=None,
                        help="pull data and run-cache first (default: train.pull, true)")
    parser.add_argument("--push", action=argparse.BooleanOptionalAction, default=None,
                        help="push outputs and run-cache after success (default: train.push, false)")
    parser.add_argument("--check-lock", action=argparse.BooleanOptionalAction, default=None,
                        help="exit 1 if dvc.lock is stale before or changed after the run (default: on when CI=true)")
    parser.add_argument("--check-determinism", action=argparse.BooleanOptionalAction, default=None,
                        help="re-run every stage forced in a scratch copy; exit 1 on any differing output")
    parser.add_argument("--repo", default=".", type=directory,
                        help="the DVC repository (default: the current directory)")
    parser.add_argument("--summary-out", metavar="PATH", help="also write the JSON summary to PATH (a CI artifact)")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from mlci import settings as cfg
    from mlci.dvcstage.repro import Options

    train = cfg.load(args.config, Path(args.repo).resolve()).config.train
    opts = Options(
        targets=tuple(args.targets) or train.targets,
        remote=args.remote or train.remote,
        pull=_pick(args.pull, train.pull),
        push=_pick(args.push, train.push),
        check_lock=_pick(args.check_lock, train.check_lock, os.environ.get("CI") == "true"),
        check_determinism=_pick(args.check_determinism, train.check_determinism),
        output_tail=train.output_tail,
    )
    summary_out = Path(args.summary_out) if args.summary_out else None
    return run(repo=Path(args.repo), opts=opts, as_json=args.json, summary_out=summary_out)


def _pick(flag: bool | None, configured: bool | None, default: bool = False) -> bool:
    """The first of flag, config value and default that is set."""
    if flag is not None:
        return flag
    return default if configured is None else configured


def run(*, repo: Path, opts: Options, as_json: bool, summary_out: Path | None = None) -> int:
    """Reproduce the pipeline in `repo`; print the summary; exit 1 if a gate (stale lock, determinism) failed."""
    from mlci.dvcstage.repro import reproduce

    if not (repo / ".dvc").is_dir():
        raise UsageError(_not_a_root(repo))
    if summary_out is not None:
        check_writable(summary_out)  # before training, not after
    outcome = reproduce(repo, opts)
    for warning in outcome.warnings:
        log.logger.warning("mlci: warning: %s", warning)
    data = {**asdict(outcome), "ok": not outcome.failures}
    if summary_out is not None:
        atomic_write_json(summary_out, data)
    if as_json:
        log.out_json(data)
    else:
        log.out(_summary(outcome))
    for failure in outcome.failures:
        log.logger.error("mlci: %s", failure)
    if outcome.stale_lock:
        log.logger.error("mlci: the committed dvc.lock does not describe this commit: run `dvc repro` where you "
                         "changed it and commit dvc.lock with the change")
    return ExitCode.GATE_FAILED if outcome.failures else ExitCode.OK


def _not_a_root(repo: Path) -> str:
    """Why `repo` cannot be reproduced, and what to run: a model's directory inside a DVC repository is
    reproduced from that repository's root, naming its pipeline (its dvc.yaml) and its mlci.yaml."""
    import shlex

    from mlci.dvcstage.files import dvc_root

    root = dvc_root(repo)
    if root is None:
        return f"{repo.resolve()}: not a DVC repository (no .dvc directory); run `dvc init` first"
    rel = Path(os.path.relpath(repo.resolve(), root))
    config = f" --config {shlex.quote(str(rel / 'mlci.yaml'))}" if (repo / "mlci.yaml").is_file() else ""
    return (f"{repo.resolve()} is a directory of the DVC repository {root}: run mlci repro at its root and name "
            f"this pipeline: cd {shlex.quote(str(root))} && mlci repro{config} -- {shlex.quote(str(rel / 'dvc.yaml'))}")


def _summary(outcome: Outcome) -> str:
    counts = {event: list(outcome.stages.values()).count(event) for event in ("ran", "skipped", "restored")}
    lines = [f"stages: {len(outcome.stages)} (ran {counts['ran']}, skipped {counts['skipped']}, "
             f"restored from run-cache {counts['restored']})"]
    lines += [f"  {name:<24} {event}" for name, event in outcome.stages.items()]
    lines.append("outputs:")
    lines += [f"  {o.path:<40} md5 {o.md5}  ({o.stage})" for o in outcome.outputs]
    remote = f"remote '{outcome.remote}'" if outcome.remote else "no DVC remote"
    lines.append(f"{remote}: pulled {'yes' if outcome.pulled else 'no'}, pushed {'yes' if outcome.pushed else 'no'}")
    if outcome.determinism is not None:
        proof = outcome.determinism
        verdict = f"{len(proof.differences)} differ" if proof.differences else "all identical"
        lines.append(f"determinism: {len(proof.compared)} output(s) re-made by a forced re-run in a scratch copy, "
                     f"{verdict}")
    lines.append(f"time: {outcome.seconds:.1f} s")
    if outcome.failures:
        lines.append(f"FAILED: {len(outcome.failures)} problem(s), listed on stderr")
    return "\n".join(lines)
