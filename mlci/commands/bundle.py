"""`mlci bundle export|verify|import`: an image with its evidence and the model's data carried across an air
gap as one signed bundle, verified in full before anything is written inside (docs/airgap.md)."""
from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlci.commands import handed_on_image
from mlci.core import log
from mlci.core.errors import UsageError

if TYPE_CHECKING:
    from mlci.bundle.archive import Format
    from mlci.settings import Config

_SIZE = re.compile(r"(\d+)\s*([kmgt]?)(i?b?)", re.I)
_FORMATS = ("tar", "tar.zst", "dir")


def size(text: str) -> int:
    """The argparse type of --part-size: bytes, or with K, M, G, T (powers of 1024; KiB, MB... read the same)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r}: a size in bytes, e.g. 4G, 700M, 1048576")
    return int(match[1]) << (10 * "kmgt".find(match[2].lower()) + 10 if match[2] else 0)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Register `bundle export`, `bundle verify` and `bundle import`."""
    parser = sub.add_parser("bundle", parents=[common], help="air-gap bundles: export, verify, import",
                            description="Carry a promoted image, its scan record, SBOM and signature, and the "
                                        "model's DVC objects and artifacts across an air gap as one signed bundle.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    export = actions.add_parser(
        "export", parents=[common], help="write a signed bundle for an environment without a link",
        description="Check the target environment's policy on this side, then write the bundle (a directory, a "
                    "tar or a tar.zst, optionally split) signed with promote.signing's key. Exit 1 when the "
                    "policy refuses (nothing written).")
    export.add_argument("source", metavar="SRC", nargs="?",
                        help="the image (default: MLCI_IMAGE pinned by MLCI_IMAGE_DIGEST, from `mlci build --dotenv`)")
    export.add_argument("--env", metavar="ENV", default=os.environ.get("CI_ENVIRONMENT_NAME") or None,
                        help="the target environment inside (promote.environments; default: CI_ENVIRONMENT_NAME)")
    export.add_argument("--out", metavar="PATH", help="the bundle (default: bundle.output + the format's suffix)")
    export.add_argument("--format", choices=_FORMATS, help="tar, tar.zst or dir (default: bundle.format)")
    export.add_argument("--part-size", type=size, metavar="SIZE",
                        help="split a tar bundle into parts of SIZE (e.g. 4G; default: bundle.part_size)")
    export.add_argument("--since", metavar="BUNDLE_JSON",
                        help="the previous bundle's bundle.json: carry only what it did not (incremental)")
    export.add_argument("--trivy-db", action=argparse.BooleanOptionalAction, default=None,
                        help="carry the trivy DB snapshot (default: bundle.trivy_db)")
    export.add_argument("--tag", help="the tag inside (default: the release tag, else the source's)")
    export.add_argument("--repo", default=".", help="the model repository (default: the current directory)")
    export.set_defaults(handler=run_export)
    verify = actions.add_parser(
        "verify", parents=[common], help="check a bundle's signature and every file; writes nothing",
        description="Check the signature (DSSE over an in-toto Statement), bundle.json, the aggregate checksum, "
                    "every file's size and sha256, and that nothing unlisted is present. Exit 0 when all pass, 1 "
                    "at the first problem (one line naming the member).")
    verify.add_argument("bundle", metavar="BUNDLE", help="a bundle directory, FILE.tar[.zst] or FILE.tar.000")
    verify.add_argument("--key", metavar="PUB", type=Path,
                        help="the PEM public key (default: bundle.public_key / public_key_env)")
    verify.set_defaults(handler=run_verify)
    load = actions.add_parser(
        "import", parents=[common], help="verify a bundle in full, then import it into the environment",
        description="Verify everything first, apply the environment's promotion policy, then push the blobs, "
                    "manifests, referrers and signatures, the DVC objects and the Nexus raw artifacts, the tags "
                    "last, and write the GitOps record. Nothing is written anywhere when a check fails (exit 1).")
    load.add_argument("bundle", metavar="BUNDLE", nargs="?", default=os.environ.get("MLCI_BUNDLE") or None,
                      help="a bundle directory, FILE.tar[.zst] or FILE.tar.000 (default: MLCI_BUNDLE, else "
                           "bundle.output with its format's suffix)")
    load.add_argument("--to", metavar="REGISTRY", dest="destination",
                      help="docker://HOST/REPO (default: promote.environments.ENV.image)")
    load.add_argument("--env", metavar="ENV", default=os.environ.get("CI_ENVIRONMENT_NAME") or None,
                      help="the environment (default: CI_ENVIRONMENT_NAME, else the bundle's)")
    load.add_argument("--key", metavar="PUB", type=Path,
                      help="the PEM public key (default: bundle.public_key / public_key_env)")
    load.add_argument("--dvc-remote", metavar="NAME", help="the inside DVC remote (default: the environment's)")
    load.add_argument("--nexus-raw", metavar="URL", help="the inside Nexus raw repository (default: the environment's)")
    load.add_argument("--force", action="store_true",
                      help="move a tag that names another digest (needs promote.allow_force; recorded)")
    load.add_argument("--dotenv", metavar="PATH", help="write MLCI_PROMOTED_IMAGE=... and MLCI_PROMOTED_DIGEST=...")
    load.add_argument("--repo", default=".", help="the model repository (default: the current directory)")
    load.set_defaults(handler=run_import)


def _fmt(name: str | None, default: str) -> Format:
    value = name or default
    if value not in _FORMATS:
        raise UsageError(f"--format {value}: one of {', '.join(_FORMATS)}")
    return value  # type: ignore[return-value]


def _suffix(fmt: str) -> str:
    return "" if fmt == "dir" else f".{fmt}"


def run_export(args: argparse.Namespace) -> int:
    """Export; print the bundle's path(s) (or JSON with what it carries)."""
    from mlci import settings as cfg

    if not args.env:
        raise UsageError("name the target environment: --env ENV (or run in a job with a GitLab `environment:`)")
    source = args.source or handed_on_image()
    if source is None:
        raise UsageError("name the image to export (SRC), or run after `mlci build --dotenv` (MLCI_IMAGE)")
    repo = Path(args.repo).resolve()
    loaded = cfg.load(args.config, repo)
    root = loaded.path.parent if loaded.path else repo
    return export_bundle(loaded.config, repo, root, source, args.env, as_json=args.json, out=args.out,
                         fmt=args.format, part_size=args.part_size, since=args.since, trivy_db=args.trivy_db,
                         tag=args.tag)


def export_bundle(config: Config, repo: Path, root: Path, source: str, env: str, *, as_json: bool,
                  out: str | None = None, fmt: str | None = None, part_size: int | None = None,
                  since: str | None = None, trivy_db: bool | None = None, tag: str | None = None,
                  dotenv: str | None = None) -> int:
    """Export a bundle of `source` for `env` (flags over the `bundle` section); also `mlci promote` into an
    environment reached through bundles (`via: bundle`)."""
    from mlci.bundle import export
    from mlci.core.fsutil import atomic_write

    settings = config.bundle
    chosen = _fmt(fmt, settings.format)
    part = part_size if part_size is not None else settings.part_size
    if part is not None and chosen == "dir":
        raise UsageError("--part-size: only a tar bundle is split into parts (--format tar or tar.zst)")
    output = Path(out) if out else repo / (settings.output + _suffix(chosen))
    request = export.ExportRequest(
        source=source, environment=env, output=output, format=chosen, part_size=part,
        zstd_level=settings.zstd_level, since=Path(since) if since else None,
        trivy_db=settings.trivy_db if trivy_db is None else trivy_db, tag=tag)
    result = export.export(request, config, repo, root, os.environ)
    log.logger.info("mlci: bundle for %s: %d file(s), %.1f MB%s", env, result.files, result.bytes / 1e6,
                    f"; left to the base: {result.omitted_blobs} blob(s), {result.omitted_objects} DVC object(s)"
                    if request.since else "")
    if dotenv:
        atomic_write(Path(dotenv), f"MLCI_BUNDLE={result.paths[0]}\n")
    if as_json:
        log.out_json({"paths": [str(p) for p in result.paths], "files": result.files, "bytes": result.bytes,
                      "aggregate": result.manifest.aggregate, **result.summary})
    else:
        for path in result.paths:
            log.out(str(path))
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """Verify; print what the bundle holds and who signed it."""
    from mlci import settings as cfg
    from mlci.bundle import archive, keys, verify

    loaded = cfg.load(args.config, Path.cwd())
    base = loaded.path.parent if loaded.path else Path.cwd()
    public = keys.public_key(args.key, loaded.config.bundle, base, os.environ)
    reader = archive.open_bundle(Path(args.bundle))
    try:
        verified = verify.verify(reader, public)
    finally:
        reader.close()
    manifest = verified.manifest
    facts: dict[str, Any] = {
        "bundle": args.bundle, "verified": True, "key": public.fingerprint, "aggregate": manifest.aggregate,
        "files": len(manifest.files), "bytes": sum(f.size for f in manifest.files),
        "images": [{"tag": i.tag, "digest": i.digest} for i in manifest.images],
        "model": manifest.provenance.model, "version": manifest.provenance.version,
        "git_sha": manifest.provenance.git_sha, "environment": manifest.provenance.environment,
        "incremental": manifest.base is not None}
    if args.json:
        log.out_json(facts)
    else:
        images = ", ".join(f"{i.tag}@{i.digest}" for i in manifest.images)
        model = " ".join(filter(None, (facts["model"], facts["version"])))
        log.out(f"verified: {args.bundle}: {facts['files']} files, {facts['bytes'] / 1e6:.1f} MB, signed by key "
                f"{public.fingerprint}; {images}; model {model} for "
                f"{facts['environment']}{' (incremental)' if manifest.base else ''}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    """Import; print the destination `ref:tag@digest` (or JSON with what was written)."""
    from mlci import settings as cfg
    from mlci.bundle import importer, keys
    from mlci.core.fsutil import atomic_write, check_writable

    if args.dotenv is not None:
        check_writable(Path(args.dotenv), "--dotenv")
    repo = Path(args.repo).resolve()
    loaded = cfg.load(args.config, repo)
    root = loaded.path.parent if loaded.path else repo
    public = keys.public_key(args.key, loaded.config.bundle, root, os.environ)
    settings = loaded.config.bundle
    bundle = Path(args.bundle) if args.bundle else repo / (settings.output + _suffix(settings.format))
    request = importer.ImportRequest(
        bundle=bundle, public_key=public, destination=args.destination, environment=args.env,
        dvc_remote=args.dvc_remote, nexus_raw=args.nexus_raw, force=args.force)
    result = importer.import_bundle(request, loaded.config, repo, root, os.environ)
    log.logger.info("mlci: %s: %d blob(s) sent, %d already there; tagged %s", result.environment,
                    len(result.copied), len(result.reused), ", ".join(result.tags))
    if args.dotenv:
        atomic_write(Path(args.dotenv), f"MLCI_PROMOTED_IMAGE={result.destination.rsplit('@', 1)[0]}\n"
                                        f"MLCI_PROMOTED_DIGEST={result.digest}\n")
    if args.json:
        log.out_json({"image": result.destination, "digest": result.digest, "environment": result.environment,
                      "tagged": result.tags, "copied": result.copied, "reused": result.reused, **result.summary})
    else:
        log.out(result.destination)
    return 0
