"""`mlci build` as a library: checks first, then the content-addressed skip around any builder.

`plan` does every check that needs neither network nor build (exit 2 before any work); `open_destination`
checks that the destination is reachable and writable with the credentials it has (exit 3 before any
build); `build` gathers the inputs, computes the build key and either reuses the image tagged
`mlci-key-<key>` (re-tagging it) or builds it, tags it with the key tag too, and commits the destination
once. Only "not found" for the key tag means "not built yet"; any other failure is an error.
Promotion never copies `mlci-key-*` or `mlci-cache-*` tags."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mlci.core.errors import UsageError
from mlci.image import cache, lockfile
from mlci.image.dockerfile import BUILDERS
from mlci.image.entries import Collector, repo_path
from mlci.image.labels import REVISION, read_labels, read_revision
from mlci.image.native import base_image, build_key, build_native, gather, open_endpoint
from mlci.image.scan import Scanner
from mlci.image.settings import ImageSettings
from mlci.oci.copy import Endpoint
from mlci.oci.manifest import Manifest, NotFound
from mlci.oci.reference import DockerRef, ImageRef, check_tag, parse
from mlci.oci.settings import RegistrySettings, options_for
from mlci.oci.transport import discarding

if TYPE_CHECKING:
    from mlci.dvcstage.fetch import Recorded

KEY_PREFIX = "mlci-key-"
# `mlci-rev-<commit>` names the image a commit's build reused (built from an earlier commit: none of the image's
# inputs changed): promote's revision check finds it (promote/policy.check_revision); never copied onwards.
REVISION_PREFIX = "mlci-rev-"


@dataclass(frozen=True)
class Plan:
    """The checked settings of one build: where it goes, and the repo paths it reads (normalised)."""

    settings: ImageSettings
    root: Path
    destination: ImageRef
    name_tag: str | None  # a tag written in image.name itself
    paths: dict[str, tuple[str, ...]]  # code, artifacts, lock, context, dockerfile
    registries: dict[str, RegistrySettings] = field(default_factory=dict)  # the `registries` section


@dataclass
class BuildResult:
    """What `mlci build` made (or reused), with the labels the image really carries."""

    reference: str
    digest: str
    key: str
    reused: bool
    uploaded: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)


def plan(settings: ImageSettings, root: Path, tag_option: str | None, collector: Collector,
         registries: dict[str, RegistrySettings] | None = None) -> Plan:
    """Every check of the settings and `--tag` that needs no network and no build (exit 2)."""
    assert settings.name, "the caller skips the build when image.name is empty"
    destination = parse(settings.name)
    if isinstance(destination, DockerRef) and destination.digest:
        raise UsageError(f"image.name: {settings.name}: a destination is a repository (and tag), not a digest")
    if tag_option is not None:
        check_tag(tag_option, "--tag")
        if destination.tag:
            raise UsageError(f"--tag {tag_option}: image.name already has the tag {destination.tag!r} "
                             f"({settings.name}); give the tag in one place")
    if settings.builder in ("kaniko", "docker") and not isinstance(destination, DockerRef):
        raise UsageError(f"image.name: {settings.name}: the {settings.builder} builder pushes to a registry; "
                         "name one as docker://HOST/REPO")
    if settings.base:
        parse(settings.base)
    if settings.ca_bundle and not Path(settings.ca_bundle).is_file():
        raise UsageError(f"image.ca_bundle: {settings.ca_bundle}: not found (or not a file)")
    native = settings.builder == "native"
    paths = {
        "code": tuple(repo_path(p, "image.code") for p in settings.code) if native else (),
        "artifacts": tuple(repo_path(p, "image.artifacts") for p in settings.artifacts),
        "lock": (repo_path(settings.lock, "image.lock"),) if settings.lock and native else (),
        "context": () if native else (repo_path(settings.context, "image.context"),),
        "dockerfile": () if native else (repo_path(settings.dockerfile, "image.dockerfile"),),
    }
    for lock in paths["lock"]:
        entry = next(e for e in collector.entries([(lock, lock)]) if e.name == lock)  # links out refused
        if entry.kind == "dir" or not (root / lock).is_file():
            raise UsageError(f"image.lock: {lock}: not a file in {root}")
        lockfile.check(root / lock, lock)
    return Plan(settings, root, destination, destination.tag, paths, dict(registries or {}))


def reference(plan: Plan, tag: str) -> str:
    """`image.name` with `tag`: what the printed reference and MLCI_IMAGE name."""
    ref = plan.destination
    if isinstance(ref, DockerRef):
        return str(DockerRef(ref.registry, ref.repository, tag))
    return f"{ref.transport}:{ref.path}:{tag}"


def open_destination(plan: Plan) -> Endpoint:
    """The destination, checked before any build: reachable, credentials accepted, writable."""
    dest, _ = open_endpoint(plan.destination, plan.settings, plan.registries)
    dest.check_writable()
    return dest


def build(plan: Plan, dest: Endpoint, tag: str, epoch: int, labels: dict[str, str], scanner: Scanner,
          collector: Collector, recorded: list[Recorded], pull: Callable[[], object]) -> BuildResult:
    """Reuse the image whose key tag exists, else build it with the configured builder and tag it. The
    native builder keys the artifacts by what DVC `recorded` and calls `pull` (the weights from DVC) only
    when their layer is not in the destination; the Dockerfile builders pull first. A build that fails
    leaves a destination it created as it was: absent."""
    with discarding(dest):
        return _build(plan, dest, tag, epoch, labels, scanner, collector, recorded, pull)


def _build(plan: Plan, dest: Endpoint, tag: str, epoch: int, labels: dict[str, str], scanner: Scanner,
           collector: Collector, recorded: list[Recorded], pull: Callable[[], object]) -> BuildResult:
    settings, root = plan.settings, plan.root
    for name, value in labels.items():
        scanner.check(value, f"label {name}")
    base = base_image(settings, plan.registries) if settings.builder == "native" else (None, None, {})
    try:
        inputs = gather(settings, collector, plan.paths, recorded, pull)
        key = build_key(settings, root, inputs, base, labels)
    finally:
        cache.save_file_hashes()
    key_tag = KEY_PREFIX + key[:40]
    existing = _existing(dest, key_tag)
    if existing is not None:
        if inputs.artifacts is not None:
            try:
                inputs.artifacts.verify()  # the image holds what DVC recorded: so must the workspace
            finally:
                cache.save_file_hashes()
        dest.put_manifest(existing, tag)
        revision = labels.get(REVISION)
        if revision and read_revision(dest, existing) != revision:  # this commit's build is that image too
            dest.put_manifest(existing, REVISION_PREFIX + revision)
        dest.commit()
        return BuildResult(reference(plan, tag), existing.digest, key, reused=True,
                           labels=read_labels(dest, existing))
    uploaded: list[str] = []
    if settings.builder == "native":
        try:
            manifest, uploaded = build_native(settings, root, inputs, dest, tag, epoch, labels, base, scanner)
        finally:
            cache.save_file_hashes()
    else:
        options = (options_for(plan.destination.registry, plan.registries, settings.plain_http, settings.ca_bundle)
                   if isinstance(plan.destination, DockerRef) else None)
        digest = BUILDERS[settings.builder](settings, root, plan.destination, tag, labels, epoch, options)
        manifest = dest.get_manifest(digest)
    dest.put_manifest(manifest, key_tag)
    dest.commit()
    return BuildResult(reference(plan, tag), manifest.digest, key, reused=False, uploaded=uploaded,
                       labels=read_labels(dest, manifest))


def _existing(dest: Endpoint, key_tag: str) -> Manifest | None:
    try:
        return dest.get_manifest(key_tag)
    except NotFound:  # only this means "not built yet": a refusal or an outage is an error
        return None

