"""The `promote` section of mlci.yaml: one entry per target environment (its destination, what it accepts,
what travels with the image), plus the signing key and the GitOps repository."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from mlci.nexus.location import parse_location

ENV_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
MODEL_NAME = r"[a-zA-Z0-9](?:[a-zA-Z0-9\-/_]*[a-zA-Z0-9])?"  # GTO 1.10's artifact name (gto/constants.py)
VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
# A forge environment's name as CI shows it (GitLab's rule without the variables `${}` it expands; GitHub's
# names are a superset): letters, digits, spaces and `-_/.`.
FORGE_ENV_NAME = re.compile(r"[A-Za-z0-9_./-]([A-Za-z0-9 _./-]{0,253}[A-Za-z0-9_./-])?")


@dataclass(frozen=True)
class Approval:
    """Who must have approved a promotion into the environment, and how mlci learns it."""

    mode: Literal["none", "forge", "variable"] = field(default="none", metadata={"doc": (
        "none; forge (GitLab deployment approvals of the protected environment, read through its API; GitHub "
        "environments' required reviewers, enforced by GitHub before the job starts); variable (a CI variable "
        "names the approver: weaker, anyone who can set variables can fake it; flagged in the record).")})
    variable: str | None = field(default=None, metadata={"doc": (
        "mode variable: the NAME of the CI variable that holds the approver's login.")})
    required: int = field(default=1, metadata={"doc": (
        "Approvals required (mode forge): distinct approvers, the promoter never counted.")})
    environment: str | None = field(default=None, metadata={"doc": (
        "mode forge: the forge's name of the environment the promote job deploys to (GitLab `environment:name`, "
        "GitHub `environment:`); default: the environment's own name (NAME).")})


@dataclass(frozen=True)
class Environment:
    """`promote.environments.NAME`: where images go and what that environment accepts."""

    image: str | None = field(default=None, metadata={"doc": (
        "The destination repository, docker://HOST[:PORT]/REPO (or oci:DIR, oci-archive:FILE); the tag is the "
        "source's (or --tag).")})
    branches: tuple[str, ...] = field(default=(), metadata={"doc": (
        "Source branches accepted (globs, e.g. main); the branch is CI_COMMIT_BRANCH / GITHUB_REF_NAME.")})
    tags: str | None = field(default=None, metadata={"doc": (
        "A regular expression the source's git tag must match in full (e.g. v\\\\d+\\\\.\\\\d+\\\\.\\\\d+), the "
        "tag being CI_COMMIT_TAG / GITHUB_REF_NAME on a tag; with branches empty only tags are accepted.")})
    require_scan: bool = field(default=True, metadata={"doc": (
        "A passing scan record of the digest (mlci scan), made with the scan policy now in force, is required.")})
    scan_max_age_days: int = field(default=7, metadata={"doc": "The scan record's maximum age."})
    approval: Approval = field(default_factory=Approval, metadata={"doc": "See `promote.environments.NAME.approval`."})
    aliases: bool = field(default=False, metadata={"doc": "Promoting vX.Y.Z also tags X.Y and X (moved forward)."})
    sign: bool = field(default=True, metadata={"doc": (
        "Sign the promoted digest (cosign's key format, `sha256-<hex>.sig`) with promote.signing's key.")})
    dvc_remote: str | None = field(default=None, metadata={"doc": (
        "The environment's DVC remote (a name in .dvc/config): the promoted version's model outputs are copied "
        "there so `dvc pull` works inside.")})
    dvc_outputs: tuple[str, ...] = field(default=(), metadata={"doc": (
        "Outputs copied besides the model's own (image.artifacts and the metrics): datasets, opt-in one by one "
        "(they can be terabytes).")})
    nexus_raw: str | None = field(default=None, metadata={"doc": (
        "A Nexus raw hosted repository, https://HOST/repository/REPO: the model file, metrics, dvc.lock and the "
        "scan record are uploaded there under MODEL/VERSION/.")})
    via: Literal["direct", "bundle"] = field(default="direct", metadata={"doc": (
        "direct: `mlci promote` copies into the environment's registry; bundle: the environment has no link, "
        "the pipeline exports a signed bundle (`mlci bundle export`) that an inside job verifies and imports "
        "(docs/airgap.md).")})


@dataclass(frozen=True)
class Signing:
    """The ECDSA P-256 key promotions sign with: a PKCS#8 PEM from a file or an environment variable."""

    key_file: str | None = field(default=None, metadata={"doc": "A PEM private key file (never in the repo)."})
    key_env: str | None = field(default=None, metadata={"doc": (
        "The NAME of the environment variable holding the PEM private key, or the path of a file holding it (a "
        "GitLab file-type variable); masked in all output.")})
    password_env: str | None = field(default=None, metadata={"doc": (
        "The NAME of the variable holding the key's password, for an encrypted PKCS#8 key.")})


@dataclass(frozen=True)
class GitOps:
    """The GitOps repository every promotion is recorded in."""

    repository: str | None = field(default=None, metadata={"doc": (
        "A local path or a git URL (credentials from git's own helpers, never in the URL).")})
    branch: str = field(default="main", metadata={"doc": "The branch records are committed to."})
    path: str = field(default="environments/{env}.yaml", metadata={"doc": (
        "The file of each environment in that repository ({env}: its name).")})
    push: bool = field(default=True, metadata={"doc": "Push the commit (retried on a non-fast-forward)."})
    gto: bool = field(default=True, metadata={"doc": (
        "Also write GTO's tags in the model repository (MODEL@vX.Y.Z, MODEL#ENV#N) for `gto show`/`gto history`; "
        "pushed to its origin with the record (when repository is set and push is true).")})


@dataclass(frozen=True)
class PromoteSettings:
    """`promote` in mlci.yaml."""

    environments: dict[str, Environment] = field(default_factory=dict, metadata={"doc": (
        "Per target environment (lower-case name, e.g. stage, prod); see `promote.environments.NAME`.")})
    model: str | None = field(default=None, metadata={"doc": (
        "The model's name (GTO's artifact name in dvc.yaml `artifacts:`); default: the only artifact there, "
        "else the repository's directory name.")})
    signing: Signing = field(default_factory=Signing, metadata={"doc": "See `promote.signing`."})
    gitops: GitOps = field(default_factory=GitOps, metadata={"doc": "See `promote.gitops`."})
    audit_log: str = field(default="mlci-promote-audit.jsonl", metadata={"doc": (
        "A JSON-lines file one line per promotion is appended to (a CI artifact).")})
    allow_force: bool = field(default=False, metadata={"doc": (
        "Whether --force may move an existing tag to another digest (recorded as forced).")})


def promote_problems(settings: PromoteSettings) -> list[str]:
    """Everything in `promote` that cannot work, as `KEY: message`."""
    problems = []
    for name, env in settings.environments.items():
        at = f"promote.environments.{name}"
        if not ENV_NAME.fullmatch(name):
            problems.append(f"{at}: an environment name is lower-case letters, digits, - and _ (at most 32)")
        if env.tags is not None:
            try:
                re.compile(env.tags)
            except re.error as exc:
                problems.append(f"{at}.tags: not a regular expression ({exc})")
        if not env.branches and env.tags is None:
            problems.append(f"{at}: accepts nothing: give branches, tags or both")
        if env.scan_max_age_days < 1:
            problems.append(f"{at}.scan_max_age_days: must be at least 1")
        if env.approval.mode == "variable" and not env.approval.variable:
            problems.append(f"{at}.approval.variable: name the CI variable that holds the approver (mode variable)")
        if env.approval.variable is not None and not VARIABLE_NAME.fullmatch(env.approval.variable):
            problems.append(f"{at}.approval.variable: must be the NAME of the CI variable that holds the approver, "
                            "not the approver")
        if env.approval.required < 1:
            problems.append(f"{at}.approval.required: must be at least 1")
        forge_env = env.approval.environment
        if forge_env is not None and not FORGE_ENV_NAME.fullmatch(forge_env):
            problems.append(f"{at}.approval.environment: a forge environment's name is letters, digits, spaces "
                            "and - _ / . (at most 255), as CI_ENVIRONMENT_NAME shows it")
        if env.dvc_outputs and env.dvc_remote is None:
            problems.append(f"{at}.dvc_outputs: set dvc_remote too (the DVC remote they are copied to)")
        for output in env.dvc_outputs:
            if not output or output.startswith("/") or ".." in output.split("/"):
                problems.append(f"{at}.dvc_outputs: {output!r} must be a path inside the repository")
        if env.nexus_raw is not None:
            try:
                parse_location(env.nexus_raw)
            except ValueError as exc:
                problems.append(f"{at}.nexus_raw: {exc}")
    if settings.signing.key_file and settings.signing.key_env:
        problems.append("promote.signing: give key_file or key_env, not both")
    if settings.gitops.repository:  # checked where the config is read, so never after an image was tagged
        from mlci.promote.gitops import path_problem, repository_problem  # it reads these settings

        found = [path_problem(settings.gitops.path), repository_problem(settings.gitops.repository)]
        problems += [p for p in found if p]
    return problems
