"""Keys made by the real `openssl` CLI with the commands docs/promote.md gives, and a small image in an
OCI layout; shared by the signature tests."""
from __future__ import annotations

import io
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mlci.oci.layout import Layout
from mlci.oci.manifest import OCI_CONFIG, OCI_MANIFEST, Manifest, sha256_digest

OPENSSL = "/usr/bin/openssl"
LAYER = "application/vnd.oci.image.layer.v1.tar"


@dataclass(frozen=True)
class KeyPair:
    """A private key file (`key.pem`), its public key (`cosign.pub`) and the password it is encrypted with."""

    private: Path
    public: Path
    password: str | None = None

    def pem_lines(self) -> list[str]:
        """The base64 lines of the private key's PEM: what must never appear anywhere."""
        return [line for line in self.private.read_text().splitlines() if line and not line.startswith("-----")]


def openssl(*args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run([OPENSSL, *args], check=True, capture_output=True, env={**os.environ, **(env or {})})


def p256(directory: Path, name: str = "key", password: str | None = None) -> KeyPair:
    """`openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256` (with `-aes-256-cbc` and a password
    when given), then `openssl pkey -pubout`: the documented way to make a signing key and its cosign.pub."""
    directory.mkdir(parents=True, exist_ok=True)
    private, public = directory / f"{name}.pem", directory / f"{name}.pub"
    encrypt = ["-aes-256-cbc", "-pass", "env:MLCI_TEST_KEY_PASSWORD"] if password else []
    env = {"MLCI_TEST_KEY_PASSWORD": password} if password else None
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", *encrypt, "-out", str(private),
            env=env)
    passin = ["-passin", "env:MLCI_TEST_KEY_PASSWORD"] if password else []
    openssl("pkey", "-in", str(private), *passin, "-pubout", "-out", str(public), env=env)
    return KeyPair(private, public, password)


def other_key(directory: Path, *algorithm: str) -> Path:
    """A private key of another type or curve (`openssl genpkey ARGS`), as a PKCS#8 PEM."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"other-{len(list(directory.iterdir()))}.pem"
    openssl("genpkey", *algorithm, "-out", str(path))
    return path


def layout_image(root: Path, tag: str = "v1", content: bytes = b"model weights") -> str:
    """A one-layer image tagged `tag` in the OCI layout `root`; returns its manifest digest."""
    layout = Layout(root)
    layout.init()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha256_digest(content)]}}).encode()
    for blob in (content, config):
        layout.put_blob(sha256_digest(blob), io.BytesIO(blob))
    body = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(config), "size": len(config)},
            "layers": [{"mediaType": LAYER, "digest": sha256_digest(content), "size": len(content)}]}
    manifest = Manifest.of(json.dumps(body).encode(), OCI_MANIFEST)
    layout.put_manifest(manifest, tag)
    return manifest.digest
