"""Run a GitLab CI pipeline locally with the pinned gitlab-ci-local, offline.

Jobs run in the shell executor (``--force-shell-executor``), each in its own
rsync'ed copy of the repo (``--shell-isolation``), so a job only sees the
repo's git-tracked files plus what ``artifacts:``/``needs:`` hand it.

``include: project:`` entries resolve from gitlab-ci-local's include cache
inside the repo being run, which :func:`seed_project_include` pre-seeds::

    <repo>/.gitlab-ci-local/includes/<host>/<group/project>/<ref>/<file>

``<host>`` is the host of the repo's ``gcl-origin`` remote, else ``origin``
(port dropped), else ``gitlab.com``; ``<ref>`` is ``HEAD`` when the include has
no ``ref:``. A seeded file is used as is and never re-fetched.

Facts this module relies on (gitlab-ci-local 4.73.0):

* per-job log: ``.gitlab-ci-local/output/<safe job name>.log`` (script lines as
  ``$ cmd`` plus the job's stdout/stderr, no prefixes; truncated when the job
  starts, so a job that did not run keeps a stale log unless cleaned);
* status: the ``<job> finished in <t>[  FAIL|WARN <code>][  after_script]``
  line and the closing `` PASS|WARN|FAIL  <job>`` report; jobs that never
  started appear in neither (they are listed with ``--list-json``);
* the process exits 1 when any job failed without ``allow_failure``, else 0;
* shell jobs get the host environment with the job's CI variables on top.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.testing.procs import communicate_or_stop

GCL_VERSION = "4.73.0"
REPO_ROOT = Path(__file__).resolve().parents[2]
GCL_PREFIX = REPO_ROOT / ".tools" / "gcl"
INSTALL_SCRIPT = REPO_ROOT / ".ci" / "install-gitlab-ci-local.sh"
STATE_DIR = ".gitlab-ci-local"
DEFAULT_REMOTE_URL = "https://gitlab.example.com/bank/credit-model.git"
DEFAULT_TIMEOUT = 300.0
FALLBACK_HOST = "gitlab.com"

_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_VARIABLE_KEY_RE = re.compile(r"^\w+$")
_FINISHED_RE = re.compile(
    r"^finished in (?P<duration>.+?)"
    r"(?:\s+(?P<kind>FAIL|WARN) (?P<code>-?\d+))?"
    r"(?P<after>\s+after_script)?\s*$"
)
_REPORT_RE = re.compile(r"^ (?P<kind>PASS|WARN|FAIL) {2}(?P<rest>.*)$")
_SAFE_NAME_RE = re.compile(r"[^\w-]+", re.ASCII)
_MAX_SAFE_NAME = 238
_HTTP_REMOTE_RE = re.compile(
    r"(?P<schema>https?)://(?:([^:]+):([^@]+)@)?(?P<host>[^/:]+):?(?P<port>\d+)?/(?P<group>\S+)/(?P<project>\S+)"
)
_SSH_REMOTE_RE = re.compile(
    r"(?P<schema>ssh)://(\w+)@(?P<host>[^/:]+):?(?P<port>\d+)?/(?P<group>\S+)/(?P<project>\S+)"
)
_SCP_REMOTE_RE = re.compile(r"(?P<username>\S+)@(?P<host>[^:]+):(?P<group>\S+)/(?P<project>\S+)")

NOT_STARTED_STATUSES = frozenset({"skipped", "manual", "never"})


class GitlabCiLocalUnavailable(RuntimeError):
    """The pinned gitlab-ci-local (or a tool it needs) is not installed."""


class PipelineTimeout(RuntimeError):
    """gitlab-ci-local ran past its timeout and was killed."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(message)
        self.output = output


@dataclass(frozen=True)
class GitRemote:
    """What gitlab-ci-local derives from the repo's remote URL."""

    url: str | None
    schema: str
    host: str
    port: str
    group: str
    project: str

    @property
    def path(self) -> str:
        """The GitLab project path, as in CI_PROJECT_PATH."""
        return f"{self.group}/{self.project}"


@dataclass(frozen=True)
class JobResult:
    """Outcome of one job of a local pipeline run."""

    name: str
    status: str
    exit_code: int | None
    log: str
    stage: str | None = None
    when: str | None = None
    allow_failure: bool = False
    after_script_exit_code: int | None = None  # set only when after_script failed

    @property
    def started(self) -> bool:
        """True when the job ran at all."""
        return self.status not in NOT_STARTED_STATUSES

    @property
    def ok(self) -> bool:
        """True for success or a failure that allow_failure tolerates."""
        return self.status in ("success", "warning")


@dataclass(frozen=True)
class PipelineResult:
    """Outcome of one gitlab-ci-local run."""

    returncode: int
    output: str
    jobs: dict[str, JobResult]
    repo: Path
    command: list[str] = field(default_factory=list)
    duration: float = 0.0

    def job(self, name: str) -> JobResult:
        """The named job's result, with a helpful error if it is unknown."""
        try:
            return self.jobs[name]
        except KeyError:
            raise KeyError(f"no job {name!r}; jobs: {sorted(self.jobs)}\n{self.describe()}") from None

    def artifacts_dir(self, name: str) -> Path:
        """Where gitlab-ci-local stored the named job's artifacts."""
        return artifacts_dir(self.repo, name)

    @property
    def failed_jobs(self) -> list[str]:
        """Names of jobs whose status is 'failed'."""
        return [name for name, job in self.jobs.items() if job.status == "failed"]

    def describe(self, tail: int = 60) -> str:
        """Per-job statuses plus the output tail, for assertion messages."""
        lines = [f"gitlab-ci-local exited {self.returncode} in {self.duration:.1f}s"]
        for job in self.jobs.values():
            lines.append(f"  {job.name}: {job.status} (exit {job.exit_code})")
        lines.append("--- output tail ---")
        lines.extend(self.output.splitlines()[-tail:])
        return "\n".join(lines)


def gcl_executable() -> Path:
    """The pinned gitlab-ci-local binary; raises GitlabCiLocalUnavailable if unusable."""
    binary = GCL_PREFIX / "node_modules" / ".bin" / "gitlab-ci-local"
    hint = f"run `bash {INSTALL_SCRIPT.relative_to(REPO_ROOT)}`"
    version = installed_gcl_version()
    if version is None or not binary.exists():
        raise GitlabCiLocalUnavailable(f"gitlab-ci-local is not installed at {binary}; {hint}")
    if version != GCL_VERSION:
        raise GitlabCiLocalUnavailable(f"gitlab-ci-local {version} at {binary}, want {GCL_VERSION}; {hint}")
    for tool in ("node", "git", "rsync", "bash"):
        if shutil.which(tool) is None:
            raise GitlabCiLocalUnavailable(f"gitlab-ci-local needs `{tool}` on PATH; {hint}")
    return binary


def installed_gcl_version() -> str | None:
    """Version of gitlab-ci-local under .tools/gcl, or None when absent."""
    package_json = GCL_PREFIX / "node_modules" / "gitlab-ci-local" / "package.json"
    try:
        return str(json.loads(package_json.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def state_dir(repo: Path) -> Path:
    """gitlab-ci-local's state directory inside a repo."""
    return Path(repo) / STATE_DIR


def safe_job_name(name: str) -> str:
    """gitlab-ci-local's file-system-safe form of a job name (safeDockerString)."""
    safe = _SAFE_NAME_RE.sub(_b64url, name)
    if len(safe) <= _MAX_SAFE_NAME:
        return safe
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return f"{safe[: _MAX_SAFE_NAME - 1 - len(digest)]}-{digest}"


def _b64url(match: re.Match[str]) -> str:
    """Unpadded base64url of a matched run, as gitlab-ci-local encodes it."""
    return base64.urlsafe_b64encode(match.group(0).encode()).decode().rstrip("=")


def job_log_path(repo: Path, name: str) -> Path:
    """Path of a job's own log file."""
    return state_dir(repo) / "output" / f"{safe_job_name(name)}.log"


def artifacts_dir(repo: Path, name: str) -> Path:
    """Path where a job's exported artifacts are kept."""
    return state_dir(repo) / "artifacts" / safe_job_name(name)


def job_build_dir(repo: Path, name: str) -> Path:
    """Path of a job's isolated working copy under --shell-isolation."""
    return state_dir(repo) / "builds" / safe_job_name(name)


def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run git in a repo with a neutral identity and no signing."""
    command = [
        "git",
        "-c", "user.name=mlci-test",
        "-c", "user.email=mlci-test@example.invalid",
        "-c", "commit.gpgsign=false",
        "-c", "tag.gpgsign=false",
        "-c", "core.hooksPath=/dev/null",
        *args,
    ]
    return subprocess.run(command, cwd=repo, check=check, capture_output=True, text=True)


def parse_remote_url(url: str | None) -> GitRemote:
    """Derive schema/host/port/group/project from a remote URL like gitlab-ci-local."""
    fallback = GitRemote(url, "git", FALLBACK_HOST, "22", "fallback.group", "fallback.project")
    if not url:
        return fallback
    stripped = url.strip().rstrip("/")
    stripped = stripped[: -len(".git")] if stripped.endswith(".git") else stripped
    if stripped.startswith("http"):
        match = _HTTP_REMOTE_RE.search(stripped)
        if match is None:
            return fallback
        schema = match["schema"]
        port = match["port"] or ("443" if schema == "https" else "80")
        return GitRemote(url, schema, match["host"], port, match["group"], match["project"])
    if stripped.startswith("ssh://"):
        match = _SSH_REMOTE_RE.search(stripped)
        if match is None:
            return fallback
        return GitRemote(url, "ssh", match["host"], match["port"] or "22", match["group"], match["project"])
    match = _SCP_REMOTE_RE.search(stripped)
    if match is None or shutil.which("ssh") is None:
        # gitlab-ci-local asks `ssh -G` for the port; without ssh it falls back.
        return fallback
    return GitRemote(url, "git", match["host"], "22", match["group"], match["project"])


def gitlab_remote(repo: Path) -> GitRemote:
    """The remote gitlab-ci-local will see for a repo (gcl-origin, else origin)."""
    for remote in ("gcl-origin", "origin"):
        result = _git(Path(repo), "remote", "get-url", remote, check=False)
        if result.returncode == 0:
            return parse_remote_url(result.stdout.strip())
    return parse_remote_url(None)


def _ensure_state_gitignore(repo: Path) -> None:
    """Keep the state dir out of `git status`, as gitlab-ci-local itself does."""
    gitignore = state_dir(repo) / ".gitignore"
    if not gitignore.exists():
        gitignore.parent.mkdir(parents=True, exist_ok=True)
        gitignore.write_text("*\n!.gitignore\n")


def include_cache_dir(repo: Path, host: str, project: str, ref: str) -> Path:
    """Directory gitlab-ci-local reads a project include at host/project/ref from."""
    return state_dir(repo) / "includes" / host / project.strip("/") / ref


def _checked_relative(path: str) -> Path:
    """A project-relative file path, refusing absolute escapes and '..'."""
    relative = Path(path.lstrip("/"))
    if not relative.parts or ".." in relative.parts:
        raise ValueError(f"bad include file path: {path!r}")
    return relative


def seed_project_include(
    repo: Path,
    host: str | None,
    project: str,
    ref: str,
    files: Mapping[str, str | bytes | Path] | Path,
) -> list[Path]:
    """Pre-seed the include cache for `include: project:` (host None = from the repo's remote).

    ``files`` maps a path inside the included project (``/.gitlab-ci/x.yml`` or
    ``.gitlab-ci/x.yml``) to text, bytes or a file to copy; or it is a directory
    whose whole tree is copied (so local includes nested in the included files,
    which gitlab-ci-local rewrites to the same project and ref, resolve too).
    """
    repo = Path(repo)
    if "/" not in project.strip("/"):
        raise ValueError(f"project must be 'group/project', got {project!r}")
    if not ref:
        raise ValueError("ref must not be empty (an include without ref: uses 'HEAD')")
    target = include_cache_dir(repo, host or gitlab_remote(repo).host, project, ref)
    if isinstance(files, Path):
        if not files.is_dir():
            raise ValueError(f"{files} is not a directory")
        entries: dict[str, str | bytes | Path] = {
            p.relative_to(files).as_posix(): p for p in sorted(files.rglob("*")) if p.is_file()
        }
    else:
        entries = dict(files)
    _ensure_state_gitignore(repo)
    written = []
    for name, content in entries.items():
        destination = target / _checked_relative(name)
        _write_entry(destination, content)
        written.append(destination)
    return written


def _write_entry(destination: Path, content: str | bytes | Path) -> None:
    """One seeded file: copied from a path, or written from text or bytes (parents made)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, Path):
        shutil.copyfile(content, destination)
    elif isinstance(content, bytes):
        destination.write_bytes(content)
    else:
        destination.write_text(content)


def seed_remote_include(repo: Path, url: str, content: str | bytes) -> Path:
    """Pre-seed the include cache for `include: remote:` (the URL minus its scheme)."""
    relative = _checked_relative(re.sub(r"^https?://", "", url))
    destination = state_dir(Path(repo)) / "includes" / relative
    _ensure_state_gitignore(Path(repo))
    destination.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        destination.write_bytes(content)
    else:
        destination.write_text(content)
    return destination


def seed_artifacts(
    repo: Path,
    job: str,
    files: Mapping[str, str | bytes | Path],
    *,
    dotenv: str | None = None,
) -> Path:
    """Prepare a job's artifacts as if it had run, so a later job can run alone from them (``jobs=[...]`` with
    ``keep_artifacts=True``): gitlab-ci-local copies ``artifacts/<job>/`` into the jobs that need it and reads
    ``dotenv:`` reports from ``artifacts/<job>/.gitlab-ci-reports/dotenv/``; ``dotenv`` names one of ``files``
    that is the job's dotenv report."""
    target = artifacts_dir(Path(repo), job)
    _ensure_state_gitignore(Path(repo))
    shutil.rmtree(target, ignore_errors=True)
    entries = dict(files)
    if dotenv is not None:
        if dotenv not in entries:
            raise ValueError(f"dotenv {dotenv!r} is not one of the files")
        entries[f".gitlab-ci-reports/dotenv/{dotenv}"] = entries[dotenv]
    for name, content in entries.items():
        destination = target / _checked_relative(name)
        _write_entry(destination, content)
    return target


def write_files(root: Path, files: Mapping[str, str | bytes]) -> None:
    """Write text/bytes files under root, creating parent directories."""
    for name, content in files.items():
        path = Path(root) / _checked_relative(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def git_commit_all(repo: Path, message: str = "update") -> str:
    """Stage everything in a repo, commit (even if empty) and return the new HEAD sha."""
    _git(Path(repo), "add", "-A")
    _git(Path(repo), "commit", "-q", "--allow-empty", "-m", message)
    return _git(Path(repo), "rev-parse", "HEAD").stdout.strip()


def make_git_repo(
    path: Path,
    files: Mapping[str, str | bytes] | None = None,
    *,
    remote_url: str | None = DEFAULT_REMOTE_URL,
    branch: str = "main",
) -> Path:
    """Create a git repo with files, one commit, an origin remote and origin/HEAD.

    Only git-tracked files reach jobs under --shell-isolation, hence the commit.
    ``refs/remotes/origin/<branch>`` and ``origin/HEAD`` are set locally (no
    fetch) so gitlab-ci-local finds the default branch without warnings and
    ``rules: changes:`` has a base to compare with. The https form of the URL is
    the safer default: for ``git@host:group/project`` gitlab-ci-local runs
    ``ssh -G`` and silently falls back to host gitlab.com when ssh is missing.
    """
    repo = Path(path)
    repo.mkdir(parents=True, exist_ok=True)
    _git(repo, "init", "-q", "-b", branch)
    _git(repo, "config", "user.name", "mlci-test")  # gitlab-ci-local reads these for GITLAB_USER_*
    _git(repo, "config", "user.email", "mlci-test@example.invalid")
    write_files(repo, files or {})
    git_commit_all(repo, "initial commit")
    if remote_url:
        _git(repo, "remote", "add", "origin", remote_url)
        _git(repo, "update-ref", f"refs/remotes/origin/{branch}", "HEAD")
        _git(repo, "symbolic-ref", "refs/remotes/origin/HEAD", f"refs/remotes/origin/{branch}")
    return repo


def _gcl_env(env: Mapping[str, str] | None, *, inherit_env: bool, offline: bool) -> dict[str, str]:
    """Environment for gitlab-ci-local, which its shell jobs inherit."""
    if inherit_env:
        base = dict(os.environ)
    else:
        base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    # GCL_* variables configure gitlab-ci-local itself (GCL_VARIABLE_X=... adds job variables).
    merged = {k: v for k, v in base.items() if not k.startswith("GCL_")}
    if offline:
        # Any include fetch (git clone over https, git archive over ssh) fails at once.
        merged["GIT_ALLOW_PROTOCOL"] = "file"
    merged.update(env or {})
    return merged


def _common_args(repo: Path, variables: Mapping[str, str] | None, ci_file: str | None = None) -> list[str]:
    """Flags shared by the run and the job listing (``ci_file``: the pipeline file, relative to the repo)."""
    # gitlab-ci-local rejects an absolute --cwd: the caller runs it with cwd=repo instead.
    args = ["--no-color", "--home", str(state_dir(repo) / "home")]
    if ci_file is not None:
        args += ["--file", str(_checked_relative(ci_file))]
    for key, value in (variables or {}).items():
        if not _VARIABLE_KEY_RE.match(key):
            raise ValueError(f"gitlab-ci-local ignores variable names that are not \\w+: {key!r}")
        args += ["--variable", f"{key}={value}"]
    return args


def list_jobs(
    repo: Path,
    *,
    env: Mapping[str, str] | None = None,
    variables: Mapping[str, str] | None = None,
    inherit_env: bool = True,
    offline: bool = True,
    timeout: float = 120.0,
    ci_file: str | None = None,
) -> list[dict[str, object]]:
    """All jobs of the pipeline (--list-json: name, stage, when, allow_failure, needs)."""
    repo = Path(repo).resolve()
    command = [str(gcl_executable()), *_common_args(repo, variables, ci_file), "--list-json",
               "--no-json-schema-validation"]
    result = subprocess.run(
        command,
        cwd=repo,
        env=_gcl_env(env, inherit_env=inherit_env, offline=offline),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(f"gitlab-ci-local --list-json failed ({result.returncode}):\n{result.stderr}{result.stdout}")
    return list(json.loads(result.stdout))


def _clean_state(repo: Path, *, keep_artifacts: bool = False) -> None:
    """Drop logs, artifacts (unless kept) and build copies of earlier runs (keeps the include cache)."""
    for name in ("output", "builds", "scripts") if keep_artifacts else ("output", "artifacts", "builds", "scripts"):
        shutil.rmtree(state_dir(repo) / name, ignore_errors=True)


def _communicate(process: subprocess.Popen[str], timeout: float) -> str:
    output, stopped = communicate_or_stop(process, timeout)
    if stopped:
        raise PipelineTimeout(f"gitlab-ci-local did not finish within {timeout}s", output)
    return output

def run_pipeline(
    repo: Path,
    *,
    env: Mapping[str, str] | None = None,
    variables: Mapping[str, str] | None = None,
    jobs: Sequence[str] | None = None,
    needs: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    clean: bool = True,
    keep_artifacts: bool = False,
    offline: bool = True,
    inherit_env: bool = True,
    extra_args: Sequence[str] = (),
    ci_file: str | None = None,
) -> PipelineResult:
    """Run the repo's pipeline with gitlab-ci-local and return per-job results.

    ``env`` is laid over this process's environment (without ``GCL_*``) and is
    what shell jobs see, e.g. a venv's bin dir on PATH; ``variables`` become
    ``--variable K=V`` CI variables, which override same-named YAML and host
    variables. ``jobs`` runs only those jobs (``needs=True`` adds what they
    need). ``clean`` first drops logs/artifacts/builds of earlier runs (``keep_artifacts``: all but the
    artifacts, which jobs run alone take from; see :func:`seed_artifacts`). ``ci_file`` is another pipeline
    file than ``.gitlab-ci.yml`` (relative to the repo; e.g. one under the ignored state directory).
    ``offline`` sets GIT_ALLOW_PROTOCOL=file (jobs inherit it) so an unseeded
    include fails at once instead of reaching for the network.
    """
    repo = Path(repo).resolve()
    command = [
        str(gcl_executable()),
        *_common_args(repo, variables, ci_file),
        "--shell-isolation",
        "--force-shell-executor",
        "--no-artifacts-to-source",
        "--max-job-name-padding",
        "0",
        *extra_args,
    ]
    if needs:
        command.append("--needs")
    command += list(jobs or [])
    if clean:
        _clean_state(repo, keep_artifacts=keep_artifacts)
    gcl_env = _gcl_env(env, inherit_env=inherit_env, offline=offline)
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=repo,
        env=gcl_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    output = _communicate(process, timeout)
    duration = time.monotonic() - started
    try:
        listed = list_jobs(repo, env=env, variables=variables, inherit_env=inherit_env, offline=offline,
                           ci_file=ci_file)
    except (RuntimeError, ValueError, subprocess.TimeoutExpired):
        listed = []  # e.g. an invalid pipeline: the run's output says why
    results = parse_job_results(repo, output, listed)
    return PipelineResult(process.returncode, output, results, repo, command, duration)


@dataclass
class _Seen:
    """What the run's output says about one job."""

    started: bool = False
    kind: str | None = None  # FAIL / WARN on the main 'finished' line; '' if none
    exit_code: int | None = None
    after_script_exit_code: int | None = None
    report: str | None = None  # success / warning / failed from the closing report


def _match_name(text: str, names: Sequence[str]) -> tuple[str, str] | None:
    """Split 'name<space>rest' for the longest known job name that fits."""
    for name in names:
        if text == name:
            return name, ""
        if text.startswith(name) and text[len(name)].isspace():
            return name, text[len(name) :].strip()
    return None


def _scan_output(output: str, names: Sequence[str]) -> dict[str, _Seen]:
    """Collect start, finish and report lines per job from gitlab-ci-local's output."""
    ordered = sorted(names, key=len, reverse=True)
    seen = {name: _Seen() for name in names}
    for raw in output.splitlines():
        line = _ANSI_RE.sub("", raw).rstrip()
        report = _REPORT_RE.match(line)
        if report:
            found = _match_name(report["rest"], ordered)
            if found and not (report["kind"] == "WARN" and found[1] == "after_script"):
                status = {"PASS": "success", "WARN": "warning", "FAIL": "failed"}[report["kind"]]
                seen[found[0]].report = status
            continue
        found = _match_name(line, ordered)
        if found is None:
            continue
        name, rest = found
        if rest.startswith("starting "):
            seen[name].started = True
            continue
        finished = _FINISHED_RE.match(rest)
        if finished is None:
            continue
        code = int(finished["code"]) if finished["code"] else 0
        if finished["after"]:
            seen[name].after_script_exit_code = code
        else:
            seen[name].started = True
            seen[name].kind = finished["kind"] or ""
            seen[name].exit_code = code
    return seen


def _status(seen: _Seen, when: str | None) -> str:
    """One job's status from what the output said about it."""
    if seen.report is not None:
        return seen.report
    if seen.kind is not None:
        return {"": "success", "WARN": "warning", "FAIL": "failed"}[seen.kind]
    if seen.started:
        return "failed"  # started but never finished (killed or crashed)
    if when in ("manual", "never"):
        return when
    return "skipped"


def _read_log(repo: Path, name: str) -> str:
    """A job's log text, or '' when it has none."""
    try:
        return job_log_path(repo, name).read_text(errors="replace")
    except OSError:
        return ""


def parse_job_results(repo: Path, output: str, listed: Sequence[Mapping[str, object]]) -> dict[str, JobResult]:
    """Per-job results from a run's output plus the --list-json job list.

    status: 'success'; 'warning' (failed, tolerated by allow_failure); 'failed';
    'skipped' (did not run: an earlier failure, or not selected); 'manual' /
    'never' (did not run because of its ``when``).
    """
    info = {str(job["name"]): job for job in listed}
    names = list(info)
    for line in output.splitlines():  # jobs run but unlisted (should not happen)
        match = re.match(r"^(\S.*?)\s+starting \S+ \(", _ANSI_RE.sub("", line))
        if match and match[1] not in info:
            names.append(match[1])
    seen = _scan_output(output, names)
    results = {}
    for name in names:
        meta = info.get(name, {})
        when = str(meta["when"]) if "when" in meta else None
        status = _status(seen[name], when)
        results[name] = JobResult(
            name=name,
            status=status,
            exit_code=seen[name].exit_code,
            log=_read_log(repo, name) if status not in NOT_STARTED_STATUSES else "",
            stage=str(meta["stage"]) if "stage" in meta else None,
            when=when,
            allow_failure=bool(meta.get("allow_failure", False)),
            after_script_exit_code=seen[name].after_script_exit_code,
        )
    return results
