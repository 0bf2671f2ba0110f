"""What the example's GitLab pipelines run against, made once and shared (tests/e2e/pipeline_test.py,
benchmarks/pipeline.py): the example model repo as a team's repository with mlci's templates in its include cache
(project mlci/mlci at v0.1.0, and at 0.1.0 for the component), its merge request's commit, a dev registry, the
GitLab stand-in with that merge request, a trivy DB and a signing key; and the CI variables of each pipeline kind."""
from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.sign.support import KeyPair, p256
from tests.testing import repos
from tests.testing.forge import ForgeServer, start_forge
from tests.testing.gitlab_ci_local import seed_project_include
from tests.testing.gitremote import bare_repo
from tests.testing.images import BASE_TAG, base_layout, wheelhouse
from tests.testing.registry import Registry, plain_http, start_registry, stop_registry
from tests.testing.trivydb import make_db

PROJECT, REF, COMPONENT_REF = "mlci/mlci", "v0.1.0", "0.1.0"
TEMPLATE_DIRS = (repos.ROOT / ".gitlab-ci", repos.ROOT / "templates")
COMPONENT_FORM = f"""\
include:
  - component: $CI_SERVER_FQDN/{PROJECT}/ml-pipeline@{COMPONENT_REF}

variables:
  MLCI_IMAGE_NAME: docker://$CI_REGISTRY_IMAGE/model
"""  # the example's .gitlab-ci.yml in the component form (gitlab-ci-local reads it with --file)
# Loopback ports in the network namespaces (every port is free there): the dev registry's files and stage's registry
# on the default branch's side, prod's registry and Nexus inside prod's air gap (tests/testing/inside.py).
DEV_INSIDE, STAGE_INSIDE = "127.0.0.1:5001", "127.0.0.1:5002"
INSIDE_REGISTRY, INSIDE_NEXUS = "127.0.0.1:5000", "127.0.0.1:8081"
TOKEN, MR_IID, PROJECT_ID = "glpat-e2e-token", 3, "bank/credit-model"
MR_BRANCH = "faster-learning"
NOTES = rf"/merge_requests/{MR_IID}/notes$"


@dataclass
class World:
    """What the pipelines share."""

    tmp: Path
    repo: Path
    dev: Registry
    forge: ForgeServer
    keys: KeyPair
    clean_db: Path  # trivy's cache dir with a DB that knows nothing in the example
    base: str  # main before the merge request
    mr: str  # the merge request's commit (fast-forwarded into main later)


def seed_templates(repo: Path) -> None:
    """mlci's generated `.gitlab-ci/` and `templates/`, as project mlci/mlci has them at v0.1.0 (the include) and at
    0.1.0 (the component's version), in the repo's include cache."""
    files = {p.relative_to(repos.ROOT).as_posix(): p for d in TEMPLATE_DIRS if d.is_dir()
             for p in sorted(d.rglob("*")) if p.is_file()}
    for ref in (REF, COMPONENT_REF):
        seed_project_include(repo, None, PROJECT, ref, files)


def _configure(repo: Path, tmp: Path) -> None:
    """The team's CI settings here: DVC remotes for CI, stage and prod, stage's registry, prod's registry and Nexus
    at the loopback ports of their namespaces, a GitOps repository (no GTO tags)."""
    repos.dvc(repo, "remote", "add", "-d", "ci", str(tmp / "dvc-remote"))
    repos.dvc(repo, "remote", "add", "stage", str(tmp / "dvc-stage"))
    repos.dvc(repo, "remote", "add", "prod", str(tmp / "dvc-prod"))
    bare_repo(tmp / "environments.git")
    config = repo / "mlci.yaml"
    text = config.read_text().replace("registry.stage.bank.example", STAGE_INSIDE)
    text = text.replace("registry.prod.bank.example", INSIDE_REGISTRY).replace(
        "https://nexus.prod.bank.example/repository/models", f"http://{INSIDE_NEXUS}/repository/mlci-raw")
    if text.count("      aliases: true\n") != 1 or text.count("  signing:\n") != 1:
        raise AssertionError(f"the example's mlci.yaml changed shape:\n{text}")
    text = text.replace("      aliases: true\n", "      aliases: true\n      dvc_remote: stage\n")
    text = text.replace("  signing:\n", f"  gitops:\n    repository: {tmp / 'environments.git'}\n    gto: false\n"
                        "  signing:\n")
    config.write_text(text)


@contextmanager
def made(tmp: Path) -> Iterator[World]:
    """The world in `tmp` (servers stopped on the way out). The merge request's commit raises the learning rate, its
    dvc.lock made by a local `mlci repro` with nothing pushed: its first pipeline trains."""
    repo = repos.example_repo(tmp / "credit-model")
    _configure(repo, tmp)
    base = repos.commit_all(repo, "CI: DVC remotes, stage and prod, the GitOps repository")
    repos.git(repo, "update-ref", "refs/remotes/origin/main", base)
    seed_templates(repo)
    repos.git(repo, "checkout", "-q", "-b", MR_BRANCH)
    params = repo / "params.yaml"
    params.write_text(re.sub(r"learning_rate: \S+", "learning_rate: 0.2", params.read_text()))
    repos.run_mlci(repo, "repro", "--no-push", "--no-pull", check=True)  # its author's cache only
    mr = repos.commit_all(repo, "Raise the learning rate")
    dev = start_registry(directory=tmp / "registry-dev")
    forge = None
    try:
        forge = start_forge()
        forge.add_user(TOKEN, "mlci-bot")
        forge.add_merge_request(PROJECT_ID, MR_IID)
        forge.add_notes(PROJECT_ID, MR_IID, [f"review {i}" for i in range(130)], author="alice")
        clean = make_db(tmp / "trivy-clean", advisories=())  # nothing in the example is known vulnerable
        yield World(tmp, repo, dev, forge, p256(tmp / "keys"), clean.cache_dir, base, mr)
    finally:
        if forge is not None:
            forge.stop()
        stop_registry(dev)


def image_variables(world: World, registry: str) -> dict[str, str]:
    """Where the model image goes and what it is built from (offline), the clean DB, the signing key."""
    return {"MLCI_IMAGE_NAME": f"docker://{registry}/ml/credit-model", **plain_http(registry, STAGE_INSIDE),
            "MLCI_IMAGE_BASE": f"oci:{base_layout()}:{BASE_TAG}",
            "MLCI_IMAGE_PIP_ARGS": f"--no-index,--find-links,{wheelhouse()}",
            "MLCI_SCAN_CACHE_DIR": str(world.clean_db), "MLCI_SIGNING_KEY": str(world.keys.private)}


def mr_variables(world: World) -> dict[str, str]:
    """A merge request pipeline's predefined variables (GitLab sets no CI_COMMIT_BRANCH there) and the bot's token."""
    return {**image_variables(world, world.dev.host), "CI_PIPELINE_SOURCE": "merge_request_event",
            "CI_COMMIT_BRANCH": "", "CI_COMMIT_REF_NAME": MR_BRANCH, "CI_MERGE_REQUEST_IID": str(MR_IID),
            "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": MR_BRANCH, "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
            "CI_MERGE_REQUEST_DIFF_BASE_SHA": world.base, "CI_API_V4_URL": world.forge.gitlab_api,
            "CI_PROJECT_ID": PROJECT_ID, "GITLAB_TOKEN": TOKEN}
