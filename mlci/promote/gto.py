"""GTO's model-registry convention (PyPI `gto`, what DVC Studio's model registry reads), written by mlci for each
promotion in the model repository: the version as an annotated tag `MODEL@vX.Y.Z` on the promoted commit, and the
stage assignment as an annotated tag `MODEL#STAGE#N` (the stage is the environment; N is one more than the largest
counter among the model's tags, as `gto assign` counts). The tagger is the promoter, the tag time the promotion's,
so `gto show` and `gto history` show who promoted what where. The model's name comes from the `artifacts:`
section of dvc.yaml (or promote.model)."""
from __future__ import annotations

import datetime
import re
from pathlib import Path

from mlci.core import fsutil, log, yamlsafe
from mlci.core.errors import ConfigError, EnvironmentProblem, GateFailed
from mlci.core.git import git, remote_url
from mlci.promote.gitops import reason
from mlci.promote.settings import MODEL_NAME

# GTO 1.10's grammar (gto/constants.py): a name, a SemVer version with a `v`, and the tags made of them.
_NAME = MODEL_NAME
_IDENT = r"(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
_SEMVER = (r"(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)"
           rf"(?:-{_IDENT}(?:\.{_IDENT})*)?(?:\+[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*)?")
NAME = re.compile(_NAME)
VERSION = re.compile(rf"v{_SEMVER}")
TAG = re.compile(rf"(?P<artifact>{_NAME})(?:(?:#(?P<stage>{_NAME})|@(?P<version>v{_SEMVER}))!?"
                 r"|@(?:deprecated|created))(?:#(?P<counter>[0-9]+))?")
ATTEMPTS = 5  # pushes of a stage tag that another promotion's took the counter of
TAGGER_EMAIL = "noreply@mlci.invalid"
NETWORK_TIMEOUT = 120.0
_ENV = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "LANGUAGE": "C"}


def model_name(root: Path, configured: str | None) -> str:
    """The model's GTO name: promote.model, else the only entry of dvc.yaml's `artifacts:`, else the repository
    directory's name. Exit 2 when that is no GTO name, or dvc.yaml names several artifacts and none is chosen."""
    artifacts = dvc_artifacts(root)
    if configured:
        name, where = configured, "promote.model"
        if artifacts and configured not in artifacts:
            log.logger.warning("mlci: warning: promote.model %s is not in dvc.yaml's artifacts (%s)", configured,
                               ", ".join(artifacts))
    elif len(artifacts) == 1:
        name, where = artifacts[0], "dvc.yaml: artifacts"
    elif artifacts:
        raise ConfigError([f"dvc.yaml: artifacts: {', '.join(artifacts)}: several models; name the one promoted "
                           "in promote.model"])
    else:
        name, where = root.resolve().name, "the repository's directory name (no promote.model, no dvc.yaml artifacts)"
    if not NAME.fullmatch(name):
        raise ConfigError([f"{where}: {log.one_line(name)[:80]!r} is not a GTO artifact name (letters, digits, "
                           "-, _ and /, starting and ending with a letter or digit); set promote.model"])
    return name


def dvc_artifacts(root: Path) -> list[str]:
    """The names in dvc.yaml's top-level `artifacts:` (in file order); [] without dvc.yaml or that section."""
    path = root / "dvc.yaml"
    if not path.is_file():
        return []
    if fsutil.outside(root, Path("dvc.yaml")) is not None:
        raise ConfigError(["dvc.yaml: leads out of the repository through a symlink; mlci does not read it"])
    try:
        data = yamlsafe.load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"dvc.yaml: cannot be read ({exc.__class__.__name__})"]) from None
    except yamlsafe.YamlProblem as exc:
        raise ConfigError([f"dvc.yaml:{exc.line}: {exc.message}"]) from None
    section = data.get("artifacts") if isinstance(data, dict) else None
    return [str(name) for name in section] if isinstance(section, dict) else []


def version_of(ref: str | None) -> str | None:
    """The GTO version of a release tag: `v1.2.3` (or `1.2.3`) -> `v1.2.3`; None for anything else (a branch)."""
    if not ref:
        return None
    version = ref if ref.startswith("v") else f"v{ref}"
    return version if VERSION.fullmatch(version) else None


def check_stage(env: str) -> None:
    """Exit 2 when an environment's name is no GTO stage name (it must end in a letter or digit)."""
    if not NAME.fullmatch(env):
        raise ConfigError([f"promote.environments.{env}: not a GTO stage name (letters, digits, -, _, ending in a "
                           "letter or digit); rename it or set promote.gitops.gto: false"])


def check_version(repo: Path, model: str, version: str | None, sha: str) -> None:
    """Refuse (exit 1), before anything is copied, a version whose tag already names another commit."""
    if version is None:
        return
    tagged = _tag_commit(repo, f"{model}@{version}")
    if tagged is not None and tagged != sha:
        raise GateFailed(f"GTO: tag {model}@{version} already registers commit {tagged[:12]}, not {sha[:12]}: a "
                         "version names one commit; release a new version")


def write_gto_tags(repo: Path, model: str, version: str | None, env: str, *, sha: str, message: str,
                   by: str | None, when: datetime.datetime, push: bool) -> list[str]:
    """Write the version tag (unless it is there, or `version` is None: a branch build) and a new stage tag for
    `env` on `sha` in the model repository `repo`; push them to its `origin` when `push` (a stage tag whose
    counter another promotion took meanwhile is made again with the next one). Returns the tags written."""
    check_stage(env)
    origin = remote_url(repo) if push else None
    if push and origin is None:
        log.logger.warning("mlci: warning: the model repository has no origin remote: GTO tags are written "
                           "locally only")
    if origin is not None:
        _register_url_secrets(origin)
        _fetch_tags(repo, model)
    check_version(repo, model, version, sha)
    written = []
    if version is not None:
        registered = _version_at(repo, model, sha)
        if registered is None:
            name = f"{model}@{version}"
            _tag(repo, name, sha, message, by, when)
            written.append(name)
        elif registered != version:
            log.logger.warning("mlci: warning: GTO: commit %s already registers %s %s; %s is not registered again "
                               "(GTO allows one version per commit)", sha[:12], model, registered, version)
    for _ in range(ATTEMPTS):
        stage_tag = f"{model}#{env}#{_next_counter(repo, model)}"
        _tag(repo, stage_tag, sha, message, by, when)
        if origin is None or _push(repo, [*written, stage_tag]):
            return [*written, stage_tag]
        git(repo, "tag", "-d", stage_tag)
        log.logger.info("mlci: GTO: %s was pushed by another promotion meanwhile; counting again", stage_tag)
        _fetch_tags(repo, model)
        check_version(repo, model, version, sha)
        written = [t for t in written if not _on_remote(repo, t)]
    raise EnvironmentProblem(f"GTO: the stage tags of {model} kept being taken by other promotions "
                             f"({ATTEMPTS} tries); run the promotion again")


def _next_counter(repo: Path, model: str) -> int:
    """One more than the largest `#N` among the model's tags (gto/tag.py name_tag)."""
    listed = git(repo, "for-each-ref", "--format=%(refname:strip=2)", "refs/tags/")
    counters = [int(m["counter"]) for line in listed.stdout.splitlines()
                if (m := TAG.fullmatch(line)) and m["artifact"] == model and m["counter"]]
    return max(counters, default=0) + 1


def _version_at(repo: Path, model: str, sha: str) -> str | None:
    """The version of `model` an annotated tag already registers at `sha`."""
    listed = git(repo, "for-each-ref", "--format=%(refname:strip=2) %(objecttype) %(*objectname)",
                 f"refs/tags/{model}@*")
    for line in listed.stdout.splitlines():
        name, _, rest = line.partition(" ")
        kind, _, target = rest.partition(" ")
        match = TAG.fullmatch(name)
        if match and match["version"] and not name.endswith("!") and kind == "tag" and target == sha \
                and match["artifact"] == model:
            return match["version"]
    return None


def _tag_commit(repo: Path, name: str) -> str | None:
    result = git(repo, "rev-parse", "-q", "--verify", f"refs/tags/{name}^{{commit}}")
    return result.stdout.strip() if result.returncode == 0 else None


def _tag(repo: Path, name: str, sha: str, message: str, by: str | None, when: datetime.datetime) -> None:
    tagger = {"GIT_COMMITTER_NAME": log.one_line(log.redact(by or "mlci"))[:100], "GIT_COMMITTER_EMAIL": TAGGER_EMAIL,
              "GIT_COMMITTER_DATE": when.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")}
    result = git(repo, "tag", "-a", "-m", log.redact(message), "--", name, sha, env={**_ENV, **tagger})
    if result.returncode != 0:
        raise EnvironmentProblem(f"GTO: cannot write tag {name} in the model repository: {reason(result)}")


def _fetch_tags(repo: Path, model: str) -> None:
    """The model's GTO tags as origin has them (forced: origin is the registry)."""
    result = git(repo, "fetch", "-q", "--no-tags", "origin", f"+refs/tags/{model}@*:refs/tags/{model}@*",
                 f"+refs/tags/{model}#*:refs/tags/{model}#*", env=_ENV, timeout=NETWORK_TIMEOUT)
    if result.returncode != 0:
        raise EnvironmentProblem(f"GTO: the model repository's origin {log.redact(remote_url(repo) or '')} cannot "
                                 f"be reached: {reason(result)}")


def _push(repo: Path, tags: list[str]) -> bool:
    """Push the tags at once (--atomic); False when one of them exists there already (another promotion's)."""
    result = git(repo, "push", "--porcelain", "--atomic", "origin", *(f"refs/tags/{t}:refs/tags/{t}" for t in tags),
                 env=_ENV, timeout=NETWORK_TIMEOUT)
    statuses = [line for line in result.stdout.splitlines() if line[:1] in "!= *+-" and "\t" in line]
    if result.returncode == 0 and statuses:
        return True
    shown = log.redact(remote_url(repo) or "origin")
    if not statuses:
        raise EnvironmentProblem(f"GTO: the model repository's origin {shown} cannot be reached: {reason(result)}")
    refused = [line for line in statuses if line.startswith("!") and "atomic push failed" not in line]
    if refused and all("already exists" in line for line in refused):
        return False
    why = (refused or statuses)[0].split("\t")[-1]
    raise EnvironmentProblem(f"GTO: pushing {', '.join(tags)} to {shown} was refused: {log.one_line(why)}")


def _on_remote(repo: Path, tag: str) -> bool:
    result = git(repo, "ls-remote", "--tags", "origin", f"refs/tags/{tag}", env=_ENV, timeout=NETWORK_TIMEOUT)
    return bool(result.stdout.strip())


def _register_url_secrets(url: str) -> None:
    """A token in origin's URL (GitLab's runners clone as `https://gitlab-ci-token:TOKEN@host/...`) is masked."""
    log.register_env_secrets({"ORIGIN_URL": url})
