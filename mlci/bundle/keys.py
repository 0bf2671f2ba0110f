"""The public key the inside verifies bundles with: `--key PUB`, else `bundle.public_key` (a file, relative to
mlci.yaml's directory), else `bundle.public_key_env` (a variable holding the PEM, or the path of a file holding
it: a GitLab file-type variable)."""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from mlci.core.errors import UsageError

if TYPE_CHECKING:
    from mlci.bundle.settings import BundleSettings
    from mlci.sign.keys import PublicKey


def public_key(flag: Path | None, settings: BundleSettings, base: Path, environ: Mapping[str, str]) -> PublicKey:
    """The verification key, from the first of --key, bundle.public_key, bundle.public_key_env."""
    from mlci.sign.keys import load_public_key, public_from_pem

    if flag is not None:
        return load_public_key(flag, f"--key {flag}")
    if settings.public_key:
        path = base / settings.public_key
        return load_public_key(path, f"bundle.public_key ({path})")
    if settings.public_key_env:
        where = f"bundle.public_key_env (${settings.public_key_env})"
        value = environ.get(settings.public_key_env)
        if not value:
            raise UsageError(f"{where}: the variable is not set (or empty); it holds the PEM public key")
        if "-----BEGIN" not in value and os.path.isfile(value):
            return load_public_key(Path(value), f"{where}, a file")
        return public_from_pem(value.encode("utf-8", "surrogateescape"), where)
    raise UsageError("no key to verify the bundle with: --key PUB, or bundle.public_key / public_key_env in "
                     "mlci.yaml (the PEM public key matching promote.signing's key)")
