"""Inputs for model-image tests, made by scripts/test (never downloaded by a test): a Debian bookworm
base with python3 as an OCI layout, and the example's pinned wheels."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from mlci.oci.layout import Layout
from mlci.oci.manifest import OCI_MANIFEST, Manifest, sha256_digest
from tests.testing.repos import ROOT

TOOLS = ROOT / ".tools"
BASE_TAG = "bookworm"


@pytest.fixture
def buildah_env(tmp_path: Path) -> dict[str, str]:
    """Environment for buildah with its own vfs storage under tmp_path (never /var/lib/containers)."""
    if shutil.which("buildah") is None:
        pytest.fail("buildah is not installed: run scripts/test (it installs the Debian package)", pytrace=False)
    conf = tmp_path / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{tmp_path}/graph"\nrunroot = "{tmp_path}/run"\n')
    return {"CONTAINERS_STORAGE_CONF": str(conf), "BUILDAH_ISOLATION": "chroot"}


def _need(path: Path) -> Path:
    if not (path / "done").is_file():
        pytest.fail(f"{path} is missing: run scripts/test once (it makes it)", pytrace=False)
    return path


def wheelhouse() -> Path:
    """The example's pinned wheels (pip download of its requirements.lock)."""
    return _need(TOOLS / "wheelhouse")


def job_wheelhouse() -> Path:
    """The job image's locked wheels (ci/job-image/lock.py download)."""
    return _need(TOOLS / "job-wheelhouse")


def base_layout() -> Path:
    """The debootstrapped rootfs as an OCI layout with one uncompressed layer (built once, cached).

    Several xdist workers may ask at once: each builds into its own directory and renames it into place, so no
    worker ever reads a half-written layout (an index.json without the tag yet)."""
    layout_dir = TOOLS / "base" / "layout"
    if layout_dir.is_dir():
        return layout_dir
    rootfs = _need(TOOLS / "base") / "rootfs"
    scratch = TOOLS / "base" / f"layout.{os.getpid()}.partial"
    shutil.rmtree(scratch, ignore_errors=True)
    layout = Layout(scratch)
    layout.init()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(rootfs.rglob("*")):
            if path.is_symlink() or path.is_dir() or path.is_file():  # device nodes stay out
                tar.add(path, arcname=path.relative_to(rootfs).as_posix(), recursive=False)
    layer = buffer.getvalue()
    layout.put_blob(sha256_digest(layer), io.BytesIO(layer))
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "Cmd": ["/bin/sh"]},
                         "history": [{"created_by": "debootstrap --variant=minbase --include="
                                                    f"{(TOOLS / 'base' / 'done').read_text().strip()} bookworm"}],
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]}},
                        sort_keys=True).encode()
    layout.put_blob(sha256_digest(config), io.BytesIO(config))
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": sha256_digest(config), "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                       "digest": sha256_digest(layer), "size": len(layer)}]}).encode()
    layout.put_manifest(Manifest(manifest, OCI_MANIFEST, sha256_digest(manifest)), BASE_TAG)
    try:
        scratch.rename(layout_dir)
    except OSError:  # another worker renamed its identical layout first
        shutil.rmtree(scratch)
    return layout_dir
