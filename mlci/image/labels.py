"""The labels (and manifest annotations) of a model image: OCI's revision, source, created and version,
and mlci's content digests of dvc.lock and of the metrics files dvc.yaml declares.

Labels never carry credentials: the source URL is CI_PROJECT_URL, else GITHUB_SERVER_URL +
GITHUB_REPOSITORY, else the `origin` remote URL, always with any userinfo, query and fragment removed
(not masked: removed). dvc.yaml is read node by node without constructing it, within core.yamlsafe's bounds."""
from __future__ import annotations

import datetime
import hashlib
import os
import posixpath
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from mlci.core import git, jsonsafe, yamlsafe
from mlci.core.errors import ConfigError, EnvironmentProblem, UsageError
from mlci.core.log import logger
from mlci.image.entries import Collector
from mlci.oci.manifest import DOCKER_LIST, OCI_INDEX, Descriptor, Manifest, ManifestError
from mlci.oci.smallblob import MAX_CONFIG, read_small

if TYPE_CHECKING:
    from mlci.oci.transport import ImageSource

REVISION = "org.opencontainers.image.revision"
SOURCE = "org.opencontainers.image.source"
CREATED = "org.opencontainers.image.created"
VERSION = "org.opencontainers.image.version"
DVC_LOCK = "io.mlci.dvc-lock.digest"
METRICS = "io.mlci.metrics.digest"
METRICS_FILES = "io.mlci.metrics.files"
_SCP = re.compile(r"^(?:[^@/:]+@)?(?P<host>[^/:]+):(?P<path>(?!//).+)$")  # git's user@host:path form


MAX_EPOCH = 253402300799  # 9999-12-31T23:59:59Z, the last second an RFC 3339 timestamp can name



def read_labels(source: ImageSource, manifest: Manifest) -> dict[str, str]:
    """The labels in the image's own config, read from `source` (for an index: its first image)."""
    try:
        body = jsonsafe.loads(manifest.data)
        if manifest.media_type in (OCI_INDEX, DOCKER_LIST):
            body = jsonsafe.loads(source.get_manifest(body["manifests"][0]["digest"]).data)
        where = f"{manifest.digest}: config"
        config = jsonsafe.loads(read_small(source, Descriptor.from_json(body["config"], where), MAX_CONFIG, where))
        labels = (config.get("config") or {}).get("Labels") or {}
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise EnvironmentProblem(f"{manifest.digest}: the image's config cannot be read back") from None
    return {str(k): str(v) for k, v in sorted(labels.items())} if isinstance(labels, dict) else {}


def read_revision(source: ImageSource, manifest: Manifest) -> str | None:
    """The commit the image says it was built from: the manifest's own REVISION annotation (mlci build writes its
    labels there too, and the image's digest covers both), else its config's label (read from `source`)."""
    try:
        annotations = manifest.body().get("annotations")
    except ManifestError:  # not a JSON object: read_labels says so in one line
        annotations = None
    if isinstance(annotations, dict) and isinstance(annotations.get(REVISION), str):
        return str(annotations[REVISION])
    return read_labels(source, manifest).get(REVISION)


def source_date_epoch(env: Mapping[str, str]) -> int | None:
    """SOURCE_DATE_EPOCH (reproducible-builds.org) as an integer, None when unset; exit 2 when not one."""
    text = env.get("SOURCE_DATE_EPOCH")
    if text is None or text == "":
        return None
    if not text.isascii() or not text.isdigit() or int(text) > MAX_EPOCH:
        shown = text if len(text) <= 24 else text[:21] + "..."
        raise UsageError(f"SOURCE_DATE_EPOCH={shown!r}: expected whole seconds since 1970-01-01 UTC, "
                         f"from 0 to {MAX_EPOCH}")
    return int(text)


def created(epoch: int) -> str:
    """An RFC 3339 UTC timestamp."""
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def without_credentials(url: str) -> str | None:
    """`url` with userinfo, query and fragment removed; git's `user@host:path` becomes ssh://host/path.
    None for text that is not a URL or a path."""
    url = url.strip()
    scp = _SCP.match(url)
    if scp and "://" not in url and not url.startswith(("/", ".")):
        return f"ssh://{scp['host']}/{scp['path'].lstrip('/')}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme:
        return url if url.startswith(("/", ".")) and "@" not in url else None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def source_url(root: Path, env: Mapping[str, str]) -> str | None:
    """Where the source lives, from the CI's own variables first, else the `origin` remote."""
    if env.get("CI_PROJECT_URL"):
        url: str | None = env["CI_PROJECT_URL"]
    elif env.get("GITHUB_SERVER_URL") and env.get("GITHUB_REPOSITORY"):
        url = f"{env['GITHUB_SERVER_URL'].rstrip('/')}/{env['GITHUB_REPOSITORY']}"
    else:
        url = git.remote_url(root)
    return without_credentials(url) if url else None


def compute(root: Path, sha: str, tag: str, epoch: int, env: Mapping[str, str],
            collector: Collector, metrics: list[str]) -> dict[str, str]:
    """Every label of the image built from `sha` at `root` (files read under the symlink rules of
    entries.Collector: a dvc.lock or metrics link out of the repo is refused, not hashed)."""
    labels = {REVISION: sha, CREATED: created(epoch), VERSION: tag}
    source = source_url(root, env)
    if source:
        labels[SOURCE] = source
    lock = _file_sha256(root, "dvc.lock", collector)
    if lock:
        labels[DVC_LOCK] = f"sha256:{lock}"
    digests = {p: _file_sha256(root, p, collector) for p in metrics}
    present = sorted(p for p, digest in digests.items() if digest)
    for missing in sorted(set(digests) - set(present)):
        logger.warning("mlci: metrics file %s (declared in dvc.yaml) is not in the workspace; "
                       "%s does not cover it", missing, METRICS)
    if present:
        listing = "".join(f"{digests[p]}  {p}\n" for p in present)  # `sha256sum` format
        labels[METRICS] = "sha256:" + hashlib.sha256(listing.encode()).hexdigest()
        labels[METRICS_FILES] = ",".join(present)
    return labels


def _file_sha256(root: Path, rel: str, collector: Collector) -> str | None:
    if not os.path.lexists(root / rel):
        return None
    entry = next(e for e in collector.entries([(rel, rel)]) if e.name == rel)
    path = entry.source if entry.kind == "file" else root / rel if entry.kind == "symlink" else None
    return hashlib.sha256(path.read_bytes()).hexdigest() if path is not None and path.is_file() else None


def metrics_files(root: Path, collector: Collector) -> list[str]:
    """The metrics files dvc.yaml declares (top-level `metrics` and each stage's), relative to the repo,
    sorted; templated paths (`${...}`) are skipped with a warning. Exit 2 for one outside the repo."""
    path = root / "dvc.yaml"
    if not os.path.lexists(path):
        return []
    collector.entries([("dvc.yaml", "dvc.yaml")])  # a dvc.yaml linked from outside the repo is refused
    try:
        loader, node = yamlsafe.compose(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"dvc.yaml: cannot read ({exc.__class__.__name__}); `dvc repro` would fail too"]) \
            from None
    except yamlsafe.YamlProblem as exc:
        raise ConfigError([f"dvc.yaml:{exc.line}: {exc.message}"]) from None
    if loader is not None:
        loader.dispose()  # only the node tree is read: nothing is constructed
    found: set[str] = set()
    for item in _sequence(_get(node, "metrics")):
        _add(found, _metric_path(item), ".")
    for _, stage in _pairs(_get(node, "stages")):
        wdir = _scalar(_get(stage, "wdir")) or "."
        for item in _sequence(_get(stage, "metrics")):
            _add(found, _metric_path(item), wdir)
    return sorted(found)


def _add(found: set[str], value: str | None, wdir: str) -> None:
    if not value:
        return
    if "${" in value or "${" in wdir:
        logger.warning("mlci: dvc.yaml: metrics path %s is templated; %s does not cover it", value, METRICS)
        return
    joined = posixpath.normpath(posixpath.join(wdir, value))
    if posixpath.isabs(joined) or os.path.isabs(joined) or joined == ".." or joined.startswith("../"):
        raise UsageError(f"dvc.yaml: metrics path {value}: must be inside the repo")
    found.add(joined)


def _metric_path(node: Any) -> str | None:
    if _scalar(node):
        return _scalar(node)
    pairs = _pairs(node)
    return _scalar(pairs[0][0]) if len(pairs) == 1 else None


def _get(node: Any, key: str) -> Any:
    return next((value for name, value in _pairs(node) if _scalar(name) == key), None)


def _pairs(node: Any) -> list[tuple[Any, Any]]:
    import yaml

    return list(node.value) if isinstance(node, yaml.MappingNode) else []


def _sequence(node: Any) -> list[Any]:
    import yaml

    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _scalar(node: Any) -> str | None:
    import yaml

    return str(node.value) if isinstance(node, yaml.ScalarNode) and node.value != "" else None
