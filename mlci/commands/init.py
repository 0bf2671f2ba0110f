"""`mlci init`: scaffold an existing git repository for mlci's pipeline (CI include, mlci.yaml, a data-test suite)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from mlci.core import log
from mlci.core.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from mlci.scaffold.files import Planned

FORMATS = (".csv", ".tsv", ".parquet", ".pq", ".jsonl", ".ndjson")
SUITE = "data-tests.yaml"
CI_FILES = {"gitlab": (".gitlab-ci.yml", "gitlab-ci.yml.j2"), "github": (".github/workflows/mlci.yml",
                                                                      "github-workflow.yml.j2")}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Register `init`."""
    parser = sub.add_parser(
        "init", parents=[common], help="add mlci's pipeline to a git repository (CI file, mlci.yaml, data tests)",
        description="Write the CI file that includes mlci's pipeline (pinned to this mlci's version), an mlci.yaml "
                    "and a .dvcignore into a git repository; with --from-data also a data-test suite and its drift "
                    "reference profile, generated from the file. An existing mlci.yaml or .dvcignore is yours and "
                    "kept as it is; any other file that exists and would change is shown as a diff and left alone "
                    "(exit 2) unless --force.")
    parser.add_argument("--forge", choices=sorted(CI_FILES), default="gitlab",
                        help="gitlab: .gitlab-ci.yml with the include line (default); github: "
                             ".github/workflows/mlci.yml calling the reusable workflow")
    parser.add_argument("--from-data", metavar="FILE",
                        help=f"a dataset inside the repository (CSV or Parquet) to generate {SUITE} and its "
                             "reference profile from")
    parser.add_argument("--force", action="store_true",
                        help="replace files that exist and differ (never mlci.yaml or .dvcignore)")
    parser.add_argument("--repo", metavar="DIR", default=".", help="the repository's top level (default: .)")
    parser.set_defaults(handler=lambda a: run(repo=Path(a.repo), forge=a.forge, from_data=a.from_data,
                                              force=a.force, as_json=a.json))


def run(*, repo: Path, forge: str, from_data: str | None, force: bool, as_json: bool) -> int:
    """Plan every file, show what would change, write all of them (with --force) or none."""
    from mlci import __version__
    from mlci.core import git
    from mlci.scaffold import files, gates, render

    top = _top_level(repo)
    context: dict[str, object] = {"version": __version__, "forge": forge, "suite_file": None, "data_path": None,
                                  "default_branch": git.current_branch(top) or "main", "gates": gates.examples(top)}
    planned: list[files.Planned] = []
    if from_data is not None:
        planned.extend(_suite(top, _data_path(top, from_data), context))
    ci_path, ci_template = CI_FILES[forge]
    planned[:0] = [files.Planned("mlci.yaml", render.render("mlci.yaml.j2", **context), only_if_missing=True),
                   files.Planned(ci_path, render.render(ci_template, **context)),
                   files.Planned(".dvcignore", render.render("dvcignore.j2", **context), only_if_missing=True)]
    changes = files.plan(top, planned)
    differing = [c for c in changes if c.status == "differs"]
    if differing and not force:
        for change in differing:
            log.out(change.diff.rstrip("\n"))
        names = ", ".join(c.planned.path for c in differing)
        raise UsageError(f"{names}: exists and differs (diff above); nothing written: --force replaces it")
    written = files.write(top, changes)
    by_status = {s: [c.planned.path for c in changes if c.status == s] for s in ("same", "kept")}
    if as_json:
        log.out_json({"written": written, "unchanged": by_status["same"], "kept": by_status["kept"]})
    else:
        lines = [f"wrote {p}" for p in written] + [f"unchanged {p}" for p in by_status["same"]] + \
            [f"kept {p} (exists)" for p in by_status["kept"]]
        hint = _suite_hint(top) if from_data is not None and "mlci.yaml" in by_status["kept"] else None
        log.out("\n".join([*lines, *([hint] if hint else [])]) +
                "\nnext: mlci config check, then commit these files and push")
    return ExitCode.OK


def _suite_hint(top: Path) -> str | None:
    """What the user's own mlci.yaml (kept as it is) needs for the suite just written to run, if anything."""
    from mlci.core import yamlsafe
    from mlci.core.config import read_text

    text = read_text(top / "mlci.yaml", "mlci.yaml", [])
    try:
        config = yamlsafe.load(text) if text is not None else None
    except yamlsafe.YamlProblem:
        config = None
    section = config.get("data_tests") if isinstance(config, dict) else None
    named = section.get("file") if isinstance(section, dict) else None
    if named == SUITE:
        return None
    if section is None:
        return f"mlci.yaml names no suite: add `data_tests: {{file: {SUITE}}}` to it to run the one written"
    return f"mlci.yaml's data_tests is not {SUITE}: point `data_tests.file` at it to run the suite written"


def _top_level(repo: Path) -> Path:
    """The repository's top level, which `repo` must be (the CI file lives there); exit 2 otherwise."""
    from mlci.core import git

    if not repo.is_dir():
        raise UsageError(f"--repo {repo}: not a directory")
    found = git.git(repo, "rev-parse", "--show-toplevel")
    if found.returncode != 0 or not found.stdout.strip():
        raise UsageError(f"{repo}: not a git repository; mlci init adds to an existing one (`git init` first)")
    top = Path(found.stdout.strip())
    if top.resolve() != repo.resolve():
        raise UsageError(f"{repo}: inside the git repository {top}; run mlci init at its top level (--repo {top})")
    return repo


def _data_path(top: Path, given: str) -> str:
    """--from-data as a path relative to the repository, which it must stay in (also through symlinks)."""
    from mlci.core.fsutil import outside

    if any(not c.isprintable() for c in given):
        raise UsageError("--from-data: the path holds a control character")
    relative = os.path.relpath(os.path.abspath(given), os.path.abspath(top))
    if relative.split(os.sep)[0] == os.pardir or outside(top, Path(relative)) is not None:
        raise UsageError(f"--from-data {given}: outside the repository {top}; the suite names data inside it "
                         "(tracked with DVC, or committed)")
    if not (top / relative).is_file():
        raise UsageError(f"--from-data {given}: not a file")
    if not relative.lower().endswith(FORMATS):
        raise UsageError(f"--from-data {given}: not CSV, Parquet or JSON lines (by its name: "
                         f"{', '.join(FORMATS)})")
    return Path(relative).as_posix()


def _suite(top: Path, data_path: str, context: dict[str, object]) -> list[Planned]:
    """The suite and its reference profile; fills the context mlci.yaml is rendered with."""
    from mlci.datatest import drift
    from mlci.scaffold import files, render, suite

    name = suite.dataset_name(data_path)
    generated = suite.generate(top, data_path, f"reference/{name}.profile.json", bins=10)
    suite.warn_malformed(generated)
    context.update(suite_file=SUITE, data_path=data_path)
    text = render.render("data-tests.yaml.j2", **context, name=generated.name, reference=generated.reference,
                         rows=generated.rows, schema=generated.schema, exact=generated.exact,
                         columns=generated.columns, max_categories=drift.MAX_CATEGORIES)
    return [files.Planned(SUITE, text), files.Planned(generated.reference, generated.profile.to_json())]
