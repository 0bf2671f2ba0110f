"""`mlci data-test`: run the data checks of mlci.yaml where the data lives; `profile` makes a reference."""
from __future__ import annotations

import argparse
from pathlib import Path

from mlci.core import log
from mlci.core.errors import ConfigError, EnvironmentProblem, ExitCode


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Register `data-test` (run the suite) and `data-test profile`."""
    parser = sub.add_parser("data-test", parents=[common], help="test the data (schema, ranges, drift, ...)",
                            description="Run the data_tests suite of mlci.yaml: one aggregate scan per dataset, "
                                        "on DuckDB (files, s3://) or PostgreSQL/Greenplum.")
    parser.add_argument("--dataset", action="append", metavar="NAME", help="only this dataset (repeatable)")
    parser.add_argument("--junit", metavar="PATH", help="write JUnit XML (one testcase per check)")
    parser.add_argument("--json-out", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--md", metavar="PATH", help="write the Markdown section for the MR report")
    parser.set_defaults(handler=_handle_run)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    profile = actions.add_parser("profile", parents=[common], help="compute a reference profile for drift checks")
    profile.add_argument("data", help="a dataset name from mlci.yaml, or a file path/glob (csv, parquet, jsonl)")
    profile.add_argument("-o", "--output", required=True, metavar="PATH", help="where to write the profile JSON")
    profile.set_defaults(handler=_handle_profile)


def _handle_run(args: argparse.Namespace) -> int:
    return run(config_path=args.config, datasets=args.dataset or [], junit=args.junit, json_out=args.json_out,
               md=args.md, as_json=args.json)


def _handle_profile(args: argparse.Namespace) -> int:
    return profile(config_path=args.config, data=args.data, output=Path(args.output), as_json=args.json)


def run(*, config_path: str | None, datasets: list[str], junit: str | None, json_out: str | None,
        md: str | None, as_json: bool) -> int:
    """Run the suite, write the requested reports, exit 1 if a fail-severity check failed."""
    from mlci import settings as cfg
    from mlci.datatest import reports
    from mlci.datatest.run import needed, run_suite
    from mlci.dvcstage.fetch import pull_missing

    outputs = {"--junit": junit, "--json-out": json_out, "--md": md}
    check_outputs({flag: Path(path) for flag, path in outputs.items() if path})
    loaded = cfg.load(config_path, Path.cwd())
    settings = loaded.config.data_tests
    if not settings.datasets and settings.file is None and not datasets:
        # Nothing configured (a repo that has no suite yet): the pipeline's job passes, as build and scan do.
        if as_json:
            log.out_json({"skipped": "no data_tests"})
        else:
            log.out("skipped: no data_tests in mlci.yaml")
        return ExitCode.OK
    if not settings.datasets:
        raise ConfigError([f"{loaded.source}: data_tests: no datasets to test"])
    unknown = [n for n in datasets if n not in {d.name for d in settings.datasets}]
    if unknown:
        raise ConfigError([f"--dataset {n}: not a dataset of {loaded.source}" for n in unknown])
    only = set(datasets) or None
    base = loaded.path.parent if loaded.path else Path.cwd()
    if settings.pull:
        chosen = [ds for ds in settings.datasets if only is None or ds.name in only]
        pull_missing([p for ds in needed(settings, chosen) for p in (ds.path, ds.reference) if p], base)
    results = run_suite(settings, base, only=only)
    for flag, render in (("--junit", reports.junit), ("--json-out", reports.as_json), ("--md", reports.markdown)):
        if outputs[flag]:
            write(flag, Path(str(outputs[flag])), render(results))
    log.out(reports.as_json(results) if as_json else reports.console(results))
    return ExitCode.GATE_FAILED if reports.counts(results)["fail"] else ExitCode.OK


def profile(*, config_path: str | None, data: str, output: Path, as_json: bool) -> int:
    """Profile a configured dataset or a file, and write the profile JSON atomically."""
    from contextlib import ExitStack

    from mlci import settings as cfg
    from mlci.datatest import spec
    from mlci.datatest.profile import build_profile
    from mlci.datatest.run import read_types
    from mlci.datatest.sources import DuckSession, postgres

    check_outputs({"--output": output})
    loaded = cfg.load(config_path, Path.cwd())
    settings = loaded.config.data_tests
    named = {d.name: d for d in settings.datasets}
    ds = named.get(data) or spec.Dataset(name=data, path=data)
    base = loaded.path.parent if loaded.path and data in named else Path.cwd()
    with ExitStack() as stack:
        if ds.path:
            source = DuckSession.for_profile(settings).open(ds, base, read_types(ds, None), detect=True)
        else:
            source = stack.enter_context(postgres(ds))
        result = build_profile(source, settings.bins, ds.path or ds.name)
    write("--output", output, result.to_json())
    kinds_by_column = {name: col.kind for name, col in result.columns.items()}
    if as_json:
        log.out_json({"output": str(output), "rows": result.rows, "columns": kinds_by_column})
    else:
        kinds = ", ".join(f"{n} ({k})" for n, k in kinds_by_column.items())
        log.out(f"profiled {result.rows} rows of {data} -> {output}\ncolumns: {kinds}")
    return ExitCode.OK


def check_outputs(outputs: dict[str, Path]) -> None:
    """Exit 2 before any work when a file to write cannot be one: a directory, or under a file."""
    from mlci.core.fsutil import check_writable

    for flag, path in outputs.items():
        check_writable(path, flag)


def write(flag: str, path: Path, text: str) -> None:
    """Write an output file atomically; exit 3 when the file system refuses (permissions, space)."""
    from mlci.core.fsutil import atomic_write

    try:
        atomic_write(path, text)
    except OSError as exc:
        raise EnvironmentProblem(f"{flag} {path}: cannot write: {exc.strerror or exc}") from None
