"""Hand-made base images for the dependency layer's tests: layers of the few files detection reads."""
from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path
from typing import Any

from mlci.oci.copy import LayoutEndpoint
from mlci.oci.layout import Layout
from mlci.oci.manifest import OCI_MANIFEST, Manifest, sha256_digest

GLIBC_236 = b"\x7fELF...GNU C Library (Debian GLIBC 2.36-9+deb12u7) stable release version 2.36.\n..."
Entry = tuple[str, str, bytes | str]  # name, kind (file|link|hard|dir), content or link target


def layer(entries: list[Entry], compress: bool) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, value in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                assert isinstance(value, bytes)
                info.size, info.mode = len(value), 0o755
                tar.addfile(info, io.BytesIO(value))
                continue
            info.type = {"link": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE, "dir": tarfile.DIRTYPE}[kind]
            info.linkname = str(value)
            tar.addfile(info)
    return gzip.compress(buffer.getvalue(), mtime=0) if compress else buffer.getvalue()


def image(tmp_path: Path, layers: list[list[Entry]], *, compress: bool = False,
          config: dict[str, Any] | None = None) -> tuple[LayoutEndpoint, Manifest, dict[str, Any]]:
    """A base image of these layers in the layout tmp_path/base, tagged t."""
    layout = Layout(tmp_path / "base")
    layout.init()
    descriptors = []
    for entries in layers:
        blob = layer(entries, compress)
        layout.put_blob(sha256_digest(blob), io.BytesIO(blob))
        descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if compress else ""),
                            "digest": sha256_digest(blob), "size": len(blob)})
    doc = {"architecture": "amd64", "os": "linux", "config": {}, **(config or {})}
    data = json.dumps(doc).encode()
    layout.put_blob(sha256_digest(data), io.BytesIO(data))
    manifest_data = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": descriptors, "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256_digest(data),
        "size": len(data)}}).encode()
    manifest = Manifest(manifest_data, OCI_MANIFEST, sha256_digest(manifest_data))
    layout.put_manifest(manifest, "t")
    return LayoutEndpoint(layout), manifest, doc


DEBIAN_311: list[Entry] = [("usr/bin/python3.11", "file", b"\x7fELF"), ("usr/bin/python3", "link", "python3.11"),
              ("usr/lib/python3.11", "dir", ""), ("usr/lib/x86_64-linux-gnu/libc.so.6", "file", GLIBC_236),
              ("bin", "link", "usr/bin"), ("lib", "link", "usr/lib")]
