"""Whether an image may enter an environment: the source's git ref against the environment's rule (a release
tag pattern, branches), and a passing scan record of the digest made with the scan policy now in force, no
older than the environment allows. A refusal names the rule, the digest and what would satisfy it."""
from __future__ import annotations

import datetime
import fnmatch
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlci.core import log
from mlci.core.errors import ConfigError, GateFailed
from mlci.promote.settings import Environment

if TYPE_CHECKING:
    from mlci.oci.transport import ImageSource
    from mlci.scan.record import ScanRecord

MATCH_SECONDS = 5.0  # the child's start included, on a loaded runner
_MATCH = "import re, sys; sys.exit(0 if re.fullmatch(sys.argv[1], sys.argv[2]) else 1)"
CLOCK_SKEW = datetime.timedelta(minutes=10)  # a record this far ahead of this machine is a clock skew


@dataclass(frozen=True)
class SourceRef:
    """The git ref the promoted build came from: a tag or a branch (and where mlci learnt it)."""

    kind: str  # "tag" or "branch"
    name: str
    origin: str  # the CI variable, or "git"


def source_ref(environ: Mapping[str, str], repo: Path) -> SourceRef | None:
    """The pipeline's ref: GitLab's CI_COMMIT_TAG / CI_COMMIT_BRANCH, GitHub's GITHUB_REF_TYPE + GITHUB_REF_NAME,
    else the checkout's own (a tag on HEAD, else its branch); None when there is none (a detached HEAD)."""
    if environ.get("CI_COMMIT_TAG"):
        return SourceRef("tag", environ["CI_COMMIT_TAG"], "CI_COMMIT_TAG")
    if environ.get("CI_COMMIT_BRANCH"):
        return SourceRef("branch", environ["CI_COMMIT_BRANCH"], "CI_COMMIT_BRANCH")
    if environ.get("GITHUB_REF_NAME") and environ.get("GITHUB_REF_TYPE") in ("tag", "branch"):
        return SourceRef(environ["GITHUB_REF_TYPE"], environ["GITHUB_REF_NAME"], "GITHUB_REF_NAME")
    from mlci.core import git

    tag = git.exact_tag(repo)
    if tag:
        return SourceRef("tag", tag, "git")
    branch = git.current_branch(repo)
    return SourceRef("branch", branch, "git") if branch else None


def _tag_matches(env_name: str, pattern: str, tag: str) -> bool:
    """`tag` matches promote.environments.NAME.tags in full, decided by a child Python stopped after MATCH_SECONDS:
    Python's re cannot be interrupted, and a pattern that backtracks (`(a+)+$`) against a pushed tag spun until
    the job was killed. Then it is exit 2 naming the pattern. (A tag is at most 128 characters: a sane pattern
    matches in microseconds; the child costs about 20 ms, once per promotion.)"""
    from mlci.core import proc

    try:
        result = proc.run([sys.executable, "-I", "-S", "-c", _MATCH, pattern, tag], check=False,
                          timeout=MATCH_SECONDS, private_tmp=False)
    except proc.TimedOut:
        raise ConfigError([f"promote.environments.{env_name}.tags: {pattern!r} took over {MATCH_SECONDS:g} s to "
                           f"match the tag {log.one_line(tag)[:80]!r}: a pattern that backtracks (nested "
                           "repetition, as (a+)+); write it without"]) from None
    if result.returncode not in (0, 1):
        raise ConfigError([f"promote.environments.{env_name}.tags: {pattern!r} cannot be matched: "
                           f"{log.one_line(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else '?')}"])
    return result.returncode == 0


def check_source(env_name: str, env: Environment, ref: SourceRef | None, digest: str) -> None:
    """The environment accepts builds of this ref (exit 1 otherwise, naming the rule)."""
    accepted = ref is not None and (
        (ref.kind == "tag" and env.tags is not None and _tag_matches(env_name, env.tags, ref.name))
        or (ref.kind == "branch" and any(fnmatch.fnmatchcase(ref.name, glob) for glob in env.branches)))
    if accepted:
        return
    rules = [f"tags matching {env.tags!r}"] if env.tags else []
    rules += [f"branches {', '.join(env.branches)}"] if env.branches else []
    seen = f"{ref.kind} {ref.name!r} ({ref.origin})" if ref is not None else "no tag or branch (a detached HEAD)"
    raise GateFailed(f"promote.environments.{env_name} accepts {' or '.join(rules)}; {digest} was built from "
                     f"{seen}: promote a build of an accepted ref")


def tag_digest(source: ImageSource) -> Callable[[str], str | None]:
    """The digest a tag of `source` names (None when the tag does not exist)."""
    from mlci.oci.manifest import NotFound

    def look(tag: str) -> str | None:
        try:
            return source.get_manifest(tag).digest
        except NotFound:
            return None
    return look


def check_revision(built: str | None, sha: str, digest: str, reused: Callable[[str], str | None]) -> None:
    """The image is the build of the commit this pipeline runs on, so a release tag's pipeline cannot promote
    some other build (exit 1 otherwise): built from it (`built`: its `org.opencontainers.image.revision`,
    mlci.image.labels.read_revision), or reused by its build because none of the image's inputs changed since
    the commit it was built from (`reused(tag)`: the digest the source's `mlci-rev-<sha>` tag names, if any)."""
    from mlci.image.build import REVISION_PREFIX
    from mlci.image.labels import REVISION

    if built is None:
        raise GateFailed(f"{digest} carries no {REVISION} label: mlci cannot tell which commit it was built from "
                         "(build it with mlci build)")
    if built == sha:
        return
    if reused(REVISION_PREFIX + sha) == digest:
        log.logger.info("mlci: %s was built from commit %s; the build of %s reused it (no image input changed)",
                        digest, built[:12], sha[:12])
        return
    raise GateFailed(f"{digest} was built from commit {built[:12]}, this pipeline runs on {sha[:12]} (whose build "
                     "did not produce it): promote from the pipeline of the commit the image was built from, or run "
                     "this commit's mlci build first")


def check_scan(env_name: str, env: Environment, records: Sequence[ScanRecord], policy_hash: str, digest: str,
               now: datetime.datetime) -> ScanRecord | None:
    """The newest record of `digest` made under `policy_hash`, when it passed within scan_max_age_days (None when
    the environment requires none); exit 1 naming what was found otherwise. The newest decides: an older pass
    does not outvote a re-scan that failed (a CVE published since). A record dated in the future (a scanner's
    wrong clock) would count as fresh for ever: it is refused."""
    if not env.require_scan:
        return None
    limit = datetime.timedelta(days=env.scan_max_age_days)
    ours = sorted((r for r in records if r.digest == digest and r.policy_hash == policy_hash),
                  key=lambda r: r.scanned_at, reverse=True)
    ahead = [r for r in ours if r.scanned_at - now > CLOCK_SKEW]
    if ahead:
        raise GateFailed(f"promote.environments.{env_name}: a scan record of {digest} is dated "
                         f"{ahead[0].scanned_at:%Y-%m-%d %H:%M} UTC, in the future: the clock of the machine that "
                         "scanned is wrong; fix it and run `mlci scan` again")
    if ours and ours[0].passed and ours[0].age(now) <= limit:
        return ours[0]
    if ours and not ours[0].passed:
        raise GateFailed(f"promote.environments.{env_name}: the newest scan record of {digest} under the scan policy "
                         f"now in force fails (scanned {ours[0].scanned_at:%Y-%m-%d %H:%M} UTC): an older pass "
                         "does not count; fix the findings, or accept them in scan.exceptions, and scan again")
    found = "; ".join(f"{r.verdict} on {r.scanned_at:%Y-%m-%d %H:%M} UTC"
                      + (" under another scan policy" if r.policy_hash != policy_hash else "")
                      for r in records[:3]) or "no scan record at all"
    raise GateFailed(f"promote.environments.{env_name} requires a passing scan record of {digest} made with the "
                     f"scan policy now in force ({policy_hash[:19]}...) in the last {env.scan_max_age_days} days; "
                     f"found: {found}: run `mlci scan` on the image first")
