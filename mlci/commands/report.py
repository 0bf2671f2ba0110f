"""`mlci report`: metric/param/plot diff against the MR's merge base, gates, one sticky MR/PR comment."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from mlci.commands import directory
from mlci.core import log
from mlci.core.errors import EnvironmentProblem, ExitCode, MlciError
from mlci.core.scratch import scratch_dir

if TYPE_CHECKING:
    from mlci.report.gates import Verdict

DEFAULT_OUT = "mlci-report.md"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Register `report`."""
    parser = sub.add_parser("report", parents=[common], help="diff metrics against the MR baseline and comment",
                            description="Diff metrics, params and plots against the merge base with the target "
                                        "branch, apply the gates, post or update one comment on the MR/PR.")
    parser.add_argument("--base", metavar="REF", help="compare with REF instead of the MR's merge base")
    parser.add_argument("--section", action="append", default=[], metavar="FILE.md",
                        help="append a Markdown section (repeatable; e.g. data-test --md output)")
    parser.add_argument("--out", metavar="PATH",
                        help=f"where to write the report (a job artifact; default: {DEFAULT_OUT}; "
                             "none with --dry-run)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the body instead of posting it (with --json: as the JSON's `body`); writes no "
                             "file unless --out is given")
    parser.add_argument("--repo", default=".", type=directory,
                        help="the repository (default: the current directory)")
    parser.set_defaults(handler=lambda a: run(
        config_path=a.config, repo=Path(a.repo), base=a.base, sections=a.section, out=_out(a.out, a.dry_run),
        dry_run=a.dry_run, as_json=a.json))


def _out(given: str | None, dry_run: bool) -> Path | None:
    """--out, else the default file; a dry run writes nothing unless --out is given."""
    if given is not None:
        return Path(given)
    return None if dry_run else Path(DEFAULT_OUT)


def run(*, config_path: str | None, repo: Path, base: str | None, sections: list[str], out: Path | None,
        dry_run: bool, as_json: bool) -> int:
    """Build the report, write it, post it (first), then exit 1 if a gate failed."""
    import functools

    from mlci import settings as cfg
    from mlci.core.fsutil import append_text, atomic_write, check_writable
    from mlci.core.git import git
    from mlci.forge import sticky
    from mlci.forge.select import connect
    from mlci.report import baseline, diff, figures, gates
    from mlci.report.images import Images
    from mlci.report.render import render

    if out is not None:
        check_writable(out, "--out")
    loaded = cfg.load(config_path, repo.resolve())
    settings = loaded.config.report
    root = loaded.path.parent if loaded.path else repo
    # DVC runs where mlci.yaml is (the model's directory), from wherever in it mlci is started: from below it DVC
    # names the files `../metrics.json`, which no gate names and which read as leading out of the directory.
    model_dir = root if repo.resolve().is_relative_to(root.resolve()) else repo
    env = dict(os.environ)
    found = baseline.resolve(repo, base, settings.target_branch, env)
    head = git(repo, "rev-parse", "--short=12", "HEAD").stdout.strip() or "workspace"
    forge_of = functools.cache(lambda: None if dry_run else connect(loaded.config.forge, env))
    with scratch_dir("mlci-plots-") as scratch:
        changes = diff.compute(model_dir, found.sha, settings.plots != "none", Path(scratch))
        checked_out = git(repo, "rev-parse", "HEAD").stdout.strip()
        named_itself = base is not None and git(repo, "rev-parse", "--verify", "-q",
                                                 f"{base}^{{commit}}").stdout.strip() == checked_out
        if checked_out == found.sha and not named_itself:  # `--base HEAD` asks for the uncommitted changes
            changes.problems.insert(0, f"the baseline ({found.label}) is the commit checked out: only uncommitted "
                                       "changes can show; a pull_request_target or push job checks out the target "
                                       "branch, not the MR/PR's head")
        beside = out or Path(DEFAULT_OUT)  # image files go beside the report (a dry run saves none)
        images = Images(forge_of, dry_run, beside.parent / f"{beside.stem}-plots", env)
        shown = figures.build(changes.plots, [found.sha, "workspace"], diff.revision_labels(found.sha),
                              settings.plot_points, images)
    for warning in (*changes.problems, *shown.warnings):
        log.logger.warning("mlci: warning: %s", warning)
    verdicts = gates.check(settings.gates, changes.metrics)
    texts = [*(_section(root / s, root, named_by_config=True) for s in settings.sections),
             *(_section(Path(s), root) for s in sections)]
    template = _template(root, settings.template, loaded.source) if settings.template else None
    # Masked once here: the file, the step summary and the comment the forge stores all carry this text.
    body = log.redact(render(changes, verdicts, found, head, settings, [t for t in texts if t], template, shown))
    if out is not None:
        try:
            atomic_write(out, body)
        except OSError as exc:
            raise EnvironmentProblem(f"--out {out}: cannot write the report ({exc.strerror})") from None
    if env.get("GITHUB_STEP_SUMMARY") and not dry_run:
        append_text(Path(env["GITHUB_STEP_SUMMARY"]), body)
    failed = [v for v in verdicts if not v.ok]
    posted = None
    if dry_run and not as_json:
        log.out(body)
    elif not dry_run:
        try:
            forge = forge_of()
            if forge is not None:
                posted = sticky.upsert(forge, settings.id, body, _pointer(env, out or Path(DEFAULT_OUT)))
        except MlciError:  # the job fails on this error, but the gates' verdicts and the report are not lost
            _log_failed(failed)
            summary = " and the step summary" if env.get("GITHUB_STEP_SUMMARY") else ""
            log.logger.error("mlci: the report was not posted; it is in %s%s", out, summary)
            raise
        if forge is None:
            log.logger.info("mlci: not a merge request pipeline: the report is only written to %s", out)
        elif posted is not None:
            log.logger.info("mlci: %s report comment %s on %s", posted.action, posted.comment_id, forge.name)
    summary_line = (f"report: {len(changes.metrics)} metrics, {sum(p.old != p.new for p in changes.params)} "
                    f"params changed, {len(failed)} of {len(verdicts)} gate checks failed; written to {out}")
    if as_json:
        log.out_json({"ok": not failed, "base": found.sha, "out": out and str(out), "failed_gates": [
            {"metric": v.address, "rule": v.rule, "observed": v.detail} for v in failed],
            "comment": posted.__dict__ if posted else None, **({"body": body} if dry_run else {})})
    elif not dry_run:
        log.out(summary_line)
    _log_failed(failed)
    return ExitCode.GATE_FAILED if failed else ExitCode.OK


def _log_failed(failed: list[Verdict]) -> None:
    for verdict in failed:
        log.logger.error("mlci: gate failed: %s %s (observed %s)", verdict.address, verdict.rule, verdict.detail)


def _template(root: Path, name: str, source: str) -> Path:
    """The repo's own template, which must stay inside the repository (it is rendered into the comment)."""
    from mlci.core.errors import ConfigError
    from mlci.core.fsutil import outside, private_state

    target = outside(root, Path(name))
    if target is not None:
        raise ConfigError([f"{source}: report.template: {name} leads out of the repository (to {target}); "
                           "keep the template in the repository"])
    if private_state(root, Path(name)):
        raise ConfigError([f"{source}: report.template: {name} is in git's or DVC's own state (.git, .dvc); "
                           "keep the template in the repository"])
    return root / name


def _section(path: Path, root: Path, *, named_by_config: bool = False) -> str:
    """A section file's text; a missing one (its job did not run) is a warning, not an error. Bytes that
    are not UTF-8 are shown as U+FFFD with a warning: a section is another job's appendix, and one bad
    byte must not cost the MR its metric report. A section that `report.sections` names must be in the
    repository `root`; one named on the command line may be anywhere, but not through a symlink that
    leads out of the repository (a committed `mlci-data-test.md -> /etc/shadow` when its job did not run).
    Git's and DVC's own state (.git, .dvc: remote credentials) is never a section."""
    from mlci.core.fsutil import linked_out, outside, private_state

    target = outside(root, path) if named_by_config else linked_out(root, path)
    if target is not None and os.path.lexists(path):
        log.logger.warning("mlci: warning: section %s leads out of the repository (to %s); left out", path, target)
        return ""
    if private_state(root, Path(os.path.abspath(path))):  # .git/config, .dvc/config.local: credentials
        log.logger.warning("mlci: warning: section %s is in git's or DVC's own state (.git, .dvc); left out", path)
        return ""
    if not path.is_file():
        log.logger.warning("mlci: warning: section %s %s; left out", path,
                           "is not a file" if path.exists() else "not found")
        return ""
    try:
        data = path.read_bytes()
    except OSError as exc:
        log.logger.warning("mlci: warning: section %s cannot be read (%s); left out", path, exc.strerror)
        return ""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        log.logger.warning("mlci: warning: section %s is not UTF-8 (byte %d); undecodable bytes shown as U+FFFD",
                           path, exc.start)
        text = data.decode("utf-8", errors="replace")
    return text.strip()


def _pointer(env: dict[str, str], out: Path) -> str:
    """Where the full report lives when the comment had to be truncated."""
    from mlci.report.images import artifact_url

    if env.get("CI_JOB_URL"):
        link = artifact_url(env, out)
        return f"the full report is the job artifact {link}" if link else \
            f"the full report was written to {out} (outside the project directory: not a job artifact)"
    if env.get("GITHUB_RUN_ID"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        return f"the full report is in the run's summary {server}/{env.get('GITHUB_REPOSITORY')}/actions/runs/" \
               f"{env['GITHUB_RUN_ID']}"
    return f"the full report is the job artifact {out}"
