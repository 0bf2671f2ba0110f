"""The GitOps record of a promotion: `environments/<env>.yaml` in the GitOps repository (promote.gitops) states what
the environment runs now (the image by digest, for ArgoCD/Flux-style tooling) and its last promotions, committed
with an audit message and pushed to the branch. A push that another promotion beat (non-fast-forward) is retried on
top of it: fetch, apply again, push (bounded, jittered), so no record is lost.

All git work happens in a private temporary repository, removed on every way out (SIGTERM too), through the git
command line (mlci/core/git.py over core.proc): every network operation runs the git binary anyway, and core.proc
stops it with its children (git-remote-https, ssh) on SIGTERM or a timeout and redacts its failures; git's own
configuration (credential helpers, url.*.insteadOf, http.sslCAInfo, commit.gpgSign) applies as in a shell."""
from __future__ import annotations

import dataclasses
import datetime
import os
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

from mlci.core import fsutil, log, proc, signals, yamlsafe
from mlci.core.errors import ConfigError, EnvironmentProblem
from mlci.core.git import git
from mlci.core.scratch import scratch_dir
from mlci.promote.record import FORMAT, PromotionRecord
from mlci.promote.settings import GitOps, PromoteSettings

ATTEMPTS = 8  # pushes tried before giving up on a branch that keeps moving
BACKOFF = 0.2  # seconds; attempt n waits uniform(0, min(BACKOFF_CAP, BACKOFF * 2**n))
BACKOFF_CAP = 5.0
NETWORK_TIMEOUT = 120.0  # one ls-remote, fetch or push
HISTORY = 20  # earlier states kept in the file, newest first; git history holds them all
MAX_FILE = 1 << 20
COMMITTER = ("mlci", "noreply@mlci.invalid")
_SCHEMES = frozenset({"https", "http", "ssh", "git", "file", "git+ssh", "ssh+git"})
_SCP = re.compile(r"^(?:[^@/:]+@)?[^/:]+:(?!//)")  # git's `user@host:path`
_HELPER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+.-]*::")  # `ext::CMD`, `fd::N`: a remote helper runs a program
# A push that lost a race with another one: the remote's branch moved after our fetch (refused by git before
# sending, or by the remote while updating the ref). Anything else refused (a protected branch, a hook) is final.
_RACE = ("fetch first", "non-fast-forward", "stale info", "failed to update ref", "cannot lock ref",
         "failed to lock", "incorrect old value", "reference already exists")
HEADER = """\
# The state of environment {env}, written by `mlci promote` on every promotion into it (format {format}:
# docs/promote.md). `image.ref` is what runs there; `history` lists the states before, newest first.
# Promote to change it (a rollback is a promotion of an earlier digest); git log has every promotion.
"""


@dataclass(frozen=True)
class RecordResult:
    """What record_promotion did: the commit (None when no GitOps repository is configured), whether it was pushed,
    how many pushes were retried, and the record as written (previous_digest and rollback filled in)."""

    commit: str | None
    pushed: bool
    retries: int
    record: PromotionRecord
    path: str | None = None
    document: str | None = None


def record_promotion(settings: PromoteSettings, record: PromotionRecord) -> RecordResult:
    """Commit the record to `promote.gitops.path` in `promote.gitops.repository` and push it to its branch
    (`promote.gitops.push`; without it the commit is made in the private clone and only reported). Exit 3 when the
    repository cannot be reached or refuses the push; exit 2 when the file there is not an mlci record."""
    gitops = settings.gitops
    if not gitops.repository:
        return RecordResult(commit=None, pushed=False, retries=0, record=record)
    url, shown = remote(gitops.repository)
    rel = file_path(gitops, record.environment)
    with signals.sigterm_raises(), scratch_dir("mlci-gitops-") as work:
        return _Clone(work, url, shown, gitops.branch).record(rel, record, push=gitops.push)


def repository_problem(repository: str) -> str | None:
    """Why git must not be given promote.gitops.repository (an option, a remote helper that runs a program, a
    scheme git would not speak here), or None."""
    if repository.startswith("-"):
        return "promote.gitops.repository: must not start with '-' (git would read an option)"
    if _HELPER.match(repository):
        return ("promote.gitops.repository: git's TRANSPORT::ADDRESS remote helpers are not used; give an https://, "
                "ssh:// or git:// URL, git's user@host:path, or a local path")
    if "://" in repository or _SCP.match(repository):
        try:
            parts = urlsplit(repository)
        except ValueError:
            return f"promote.gitops.repository: {log.redact(repository)!r}: not a URL"
        if "://" in repository and parts.scheme.lower() not in _SCHEMES:
            return (f"promote.gitops.repository: scheme {parts.scheme!r}: use one of {', '.join(sorted(_SCHEMES))}, "
                    "git's user@host:path, or a local path")
    return None


def path_problem(path: str) -> str | None:
    """Why promote.gitops.path cannot name the record's file (checked with `{env}` filled in by a name), or None."""
    rel = path.replace("{env}", "env")
    parts = PurePosixPath(rel).parts
    if not rel or rel.startswith("/") or "\\" in rel or any(p in ("..", ".git") for p in parts) or rel.endswith("/"):
        return (f"promote.gitops.path: {path!r}: must be a file path relative to the GitOps repository's root "
                "(no .., no .git)")
    if "{" in rel or "}" in rel or log.one_line(rel) != rel:
        return (f"promote.gitops.path: {log.one_line(path)!r}: {{env}} is its only placeholder, and it holds no "
                "control character")
    return None


def check_before_writes(settings: PromoteSettings) -> None:
    """What of promote.gitops only git can judge (the branch name), before a promotion writes anything: the
    record is written after the image is tagged. The rest is checked where mlci.yaml is read."""
    if settings.gitops.repository:
        problem = branch_problem(settings.gitops.branch, Path.cwd())
        if problem:
            raise ConfigError([problem])


def branch_problem(branch: str, cwd: Path) -> str | None:
    """Why promote.gitops.branch is no branch name git accepts (`git check-ref-format`), or None."""
    if branch.startswith("-") or git(cwd, "check-ref-format", f"refs/heads/{branch}").returncode != 0:
        return f"promote.gitops.branch: {log.one_line(branch)!r} is not a branch name git accepts"
    return None


def remote(repository: str) -> tuple[str, str]:
    """The URL git is given (a local path made absolute) and the form shown in messages (userinfo masked). A
    credential in the URL is registered as a secret; prefer git's credential helpers (docs/promote.md)."""
    problem = repository_problem(repository)
    if problem:
        raise ConfigError([problem])
    if "://" in repository or _SCP.match(repository):
        parts = urlsplit(repository)
        if parts.password:
            log.add_secret(unquote(parts.password))
        elif parts.username and parts.scheme.lower() not in ("ssh", "git+ssh", "ssh+git"):
            log.add_secret(unquote(parts.username))  # https://TOKEN@host: the user part is the token
        if parts.password or (parts.username and parts.scheme.lower().startswith("http")):
            log.logger.warning("mlci: warning: promote.gitops.repository holds a credential; it is masked, but "
                               "git's credential helpers keep it out of config (docs/promote.md)")
        return repository, log.one_line(log.redact(repository))
    path = Path(repository).expanduser().absolute()
    return str(path), log.one_line(str(path))


def file_path(gitops: GitOps, env: str) -> str:
    """promote.gitops.path for `env`: relative, inside the repository, not in .git (environment names are
    checked: letters, digits, - and _)."""
    problem = path_problem(gitops.path)
    if problem:
        raise ConfigError([problem])
    return str(PurePosixPath(*PurePosixPath(gitops.path.replace("{env}", env)).parts))


def commit_message(record: PromotionRecord) -> str:
    """The audit commit message: a subject, then one git trailer per fact (`git interpret-trailers --parse`)."""
    what = f"{record.model} {record.version}" if record.version else record.model
    notes = [n for n, on in (("rollback", record.rollback), ("forced", record.forced)) if on]
    subject = f"promote {what} to {record.environment}: {record.digest[:19]}" + (
        f" ({', '.join(notes)})" if notes else "")
    approvers = ", ".join(f"{a.login} ({a.mode})" for a in record.approvals) or "none"
    trailers = [
        ("Environment", record.environment), ("Image", record.ref), ("Source", record.source or "unknown"),
        ("Model", what), ("Model-Commit", record.git_sha), ("Previous-Digest", record.previous_digest or "none"),
        ("Rollback", _yes(record.rollback)), ("Forced", _yes(record.forced)),
        ("Promoted-By", record.promoted_by or "unknown"), ("Approved-By", approvers),
        ("Approval-Mode", record.approval_mode + (" (weak)" if record.approval_mode == "variable" else "")),
        ("Promotion-Id", record.id),
    ]
    if record.job:
        trailers.append(("Job", record.job))
    if record.bundle:
        trailers.append(("Bundle", f"{record.bundle} (signed by {record.bundle_signer or 'unknown'})"))
    body = "\n".join(f"{key}: {log.one_line(value)}" for key, value in trailers)
    return log.redact(f"{log.one_line(subject)}\n\n{body}\n")


def render(record: PromotionRecord, history: list[dict[str, Any]]) -> str:
    """The environment file: a comment header, the record's state, then `history`."""
    state = record.to_json()
    state["history"] = history
    text = yaml.safe_dump(log.redact_data(state), sort_keys=False, allow_unicode=True, default_flow_style=False,
                          width=4096)
    return HEADER.format(env=record.environment, format=FORMAT) + text


@dataclass(frozen=True)
class Current:
    """What the environment file says now: the digest running there and the promotion that put it there (its id,
    previous digest and rollback flag), and the history with that state prepended (what the next file keeps)."""

    digest: str | None
    id: str | None
    previous_digest: str | None
    rollback: bool
    earlier: list[dict[str, Any]]
    state: dict[str, Any] | None = None

    @property
    def history(self) -> list[dict[str, Any]]:
        """The next file's history: this state first, then the earlier ones (at most HISTORY)."""
        return ([self.state] if self.state else []) + self.earlier[:HISTORY - 1 if self.state else HISTORY]


def read_current(text: str | None, where: str) -> Current:
    """The state in an environment file (None: no file yet). A file that is not an mlci record, or of a newer
    format, is refused (exit 2): it is not overwritten."""
    if text is None:
        return Current(None, None, None, False, [])
    try:
        data = yamlsafe.load(text)
    except yamlsafe.YamlProblem as exc:
        raise ConfigError([f"{where}:{exc.line}: {exc.message}; fix or remove the file in the GitOps "
                           "repository"]) from None
    if not isinstance(data, Mapping) or data.get("format") != FORMAT:
        raise ConfigError([f"{where}: not an mlci promotion record (format {FORMAT}); it is not overwritten: "
                           "move it, or point promote.gitops.path elsewhere"])
    state = _summary(data)
    previous = _section(data, "promotion").get("previous_digest")
    listed = data.get("history")
    earlier = [_entry(e) for e in listed if isinstance(e, Mapping)] if isinstance(listed, list) else []
    digest = state["digest"] if isinstance(state["digest"], str) else None
    return Current(digest, state["id"] if isinstance(state["id"], str) else None,
                   previous if isinstance(previous, str) else None, state["rollback"] is True, earlier,
                   state if digest else None)


_ENTRY_KEYS = ("digest", "version", "git_sha", "by", "at", "rollback", "id")


def _summary(data: Mapping[str, Any]) -> dict[str, Any]:
    """One history entry: the state's image, model version and who promoted it when."""
    image, model, promotion = (_section(data, key) for key in ("image", "model", "promotion"))
    return _entry({"digest": image.get("digest"), "version": model.get("version"), "git_sha": model.get("git_sha"),
                   "by": promotion.get("by"), "at": promotion.get("at"), "rollback": promotion.get("rollback", False),
                   "id": promotion.get("id")})


def _entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A history entry as kept: its known keys, scalar values only (a hand-edited file cannot make it grow)."""
    return {key: value if isinstance(value, (str, int, float, bool)) else None
            for key in _ENTRY_KEYS for value in [entry.get(key)]}


def _section(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if isinstance(value, Mapping) else {}


class _Clone:
    """A private repository that fetches the branch, writes the record on top and pushes it."""

    def __init__(self, work: Path, url: str, shown: str, branch: str) -> None:
        self.root = work / "repo"
        self.url, self.shown, self.branch = url, shown, branch
        self.env = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "LANGUAGE": "C", "GIT_EDITOR": "true"}
        self.root.mkdir()
        problem = branch_problem(branch, work)
        if problem:
            raise ConfigError([problem])
        self._git("init", "-q", "--template=")  # no template: no sample hooks to copy, nothing of the host's
        self._git("remote", "add", "origin", url)
        self.fresh = True

    def record(self, rel: str, record: PromotionRecord, *, push: bool) -> RecordResult:
        for attempt in range(ATTEMPTS):
            head = self._fetch()
            current = read_current(self._read(rel), f"{self.shown}: {rel}")
            if current.id == record.id:  # an earlier attempt's push landed although git reported a failure
                landed = dataclasses.replace(record, previous_digest=current.previous_digest,
                                             rollback=current.rollback)
                return RecordResult(head, True, attempt, landed, rel, self._read(rel))
            written = _filled(record, current)
            document = render(written, current.history)
            commit = self._commit(rel, document, commit_message(written), written)
            if not push:
                return RecordResult(commit, False, attempt, written, rel, document)
            lost = self._push()
            if lost is None:
                log.logger.info("mlci: recorded %s in %s: %s (%s)", written.digest, rel, self.shown, commit[:12])
                return RecordResult(commit, True, attempt, written, rel, document)
            wait = random.uniform(0, min(BACKOFF_CAP, BACKOFF * 2 ** attempt))
            log.logger.info("mlci: %s: branch %s moved since it was fetched (%s: another promotion); applying the "
                            "record on top again in %.1f s", self.shown, self.branch, lost, wait)
            time.sleep(wait)
        raise EnvironmentProblem(f"promote.gitops.repository {self.shown}: branch {self.branch} moved under "
                                 f"{ATTEMPTS} pushes in a row; the record of {record.digest} was not pushed; "
                                 "run the promotion again")

    def _fetch(self) -> str | None:
        """Check out the remote branch's head (None: no branch yet, an empty tree)."""
        listed = self._network("ls-remote", "--heads", "origin", f"refs/heads/{self.branch}")
        head = next((line.split()[0] for line in listed.stdout.splitlines()
                     if line.endswith(f"\trefs/heads/{self.branch}")), None)
        fresh, self.fresh = self.fresh, False
        if head is None:
            if not fresh:  # an earlier attempt committed here: start again from nothing
                self._git("update-ref", "-d", "refs/heads/mlci-record")
                self._git("symbolic-ref", "HEAD", "refs/heads/mlci-record")
                self._git("read-tree", "--empty")
                self._git("clean", "-q", "-f", "-d", "-x")
            return None
        self._network("fetch", "-q", "--no-tags", "--depth", "1", "origin",
                      f"+refs/heads/{self.branch}:refs/remotes/origin/{self.branch}")
        self._git("checkout", "-q", "-f", "--no-track", "-B", "mlci-record", f"refs/remotes/origin/{self.branch}")
        return head

    def _read(self, rel: str) -> str | None:
        if fsutil.outside(self.root, Path(rel)) is not None:
            raise ConfigError([f"{self.shown}: {rel}: leads out of the GitOps repository through a symlink; mlci "
                               "neither reads nor writes it"])
        path = self.root / rel
        if not os.path.lexists(path):
            return None
        try:
            if not path.is_file() or path.stat().st_size > MAX_FILE:
                raise ConfigError([f"{self.shown}: {rel}: not an mlci promotion record (not a file of at most "
                                   f"{MAX_FILE} bytes)"])
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([f"{self.shown}: {rel}: cannot be read ({exc.__class__.__name__})"]) from None

    def _commit(self, rel: str, document: str, message: str, record: PromotionRecord) -> str:
        fsutil.atomic_write(self.root / rel, document)
        message_file = self.root.parent / "message"
        fsutil.atomic_write(message_file, message)
        self._git("add", "--", rel)
        author = log.one_line(log.redact(record.promoted_by or COMMITTER[0]))[:100]
        identity = {"GIT_AUTHOR_NAME": author, "GIT_AUTHOR_EMAIL": COMMITTER[1]}
        if not (os.environ.get("GIT_COMMITTER_EMAIL") or self._config("user.email")):
            identity |= {"GIT_COMMITTER_NAME": COMMITTER[0], "GIT_COMMITTER_EMAIL": COMMITTER[1]}
        self._git("commit", "-q", "--no-verify", "--allow-empty", "-F", str(message_file), env=identity)
        return self._git("rev-parse", "HEAD").stdout.strip()

    def _push(self) -> str | None:
        """Push the commit to the branch (never forced); when another push got there first, git's reason."""
        result = self._network("push", "--porcelain", "origin", f"HEAD:refs/heads/{self.branch}", check=False)
        status = next((line for line in result.stdout.splitlines() if line[:1] in "!= *+-" and "\t" in line), None)
        if result.returncode == 0 and status is not None and not status.startswith("!"):
            return None
        why = status.split("\t")[-1] if status else reason(result)
        if status is not None and status.startswith("!") and any(word in why for word in _RACE):
            return why
        if status is None:
            raise EnvironmentProblem(f"promote.gitops.repository {self.shown}: cannot be reached: {reason(result)}")
        remote_says = [line.removeprefix("remote:").strip() for line in result.stderr.splitlines()
                       if line.startswith("remote:") and line.removeprefix("remote:").strip()]
        said = f"; the remote says: {remote_says[-1]}" if remote_says else ""
        raise EnvironmentProblem(log.one_line(log.redact(
            f"promote.gitops.repository {self.shown}: the push to branch {self.branch} was refused: {why}{said}")))

    def _config(self, key: str) -> str:
        return self._git("config", "--get", key, check=False).stdout.strip()

    def _network(self, *args: str, check: bool = True) -> proc.Result:
        result = git(self.root, "-c", "core.hooksPath=/dev/null", *args, env=self.env, timeout=NETWORK_TIMEOUT)
        if check and result.returncode != 0:
            raise EnvironmentProblem(f"promote.gitops.repository {self.shown}: cannot be reached: {reason(result)}")
        return result

    def _git(self, *args: str, env: Mapping[str, str] | None = None, check: bool = True) -> proc.Result:
        result = git(self.root, "-c", "core.hooksPath=/dev/null", *args, env={**self.env, **(env or {})})
        if check and result.returncode != 0:
            raise EnvironmentProblem(f"git {args[0]} in the private clone of {self.shown} failed: {reason(result)}")
        return result


def _filled(record: PromotionRecord, current: Current) -> PromotionRecord:
    """The record with what the environment ran before: its digest, and whether this promotion goes back to a
    digest that ran there earlier (a rollback)."""
    earlier = {entry.get("digest") for entry in current.earlier}
    rollback = record.digest != current.digest and record.digest in earlier
    return dataclasses.replace(record, previous_digest=current.digest, rollback=rollback)


def reason(result: proc.Result) -> str:
    """The line of a failed git command that says why (its last fatal:/error: line), redacted, one line."""
    lines = [line.strip() for line in (result.stderr + "\n" + result.stdout).splitlines() if line.strip()]
    fatal = [line for line in lines if line.startswith(("fatal:", "error:"))]
    text = (fatal or lines or [f"git exited {result.returncode}"])[-1]
    return log.one_line(log.redact(text.removeprefix("fatal: ").removeprefix("error: ")))


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def now() -> datetime.datetime:
    """The time a promotion is recorded at (UTC, whole seconds)."""
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)
