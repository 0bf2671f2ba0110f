"""`mlci verify IMAGE --key PUB`: is there a valid cosign signature of the image's digest by this public key
(the `sha256-<hex>.sig` manifest mlci promote writes, or `cosign sign --key` made); what PROD's admission
controller will check, offline."""
from __future__ import annotations

import argparse
from pathlib import Path

from mlci.core import log


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Register `verify`."""
    parser = sub.add_parser("verify", parents=[common], help="check the image's cosign signature with a public key",
                            description="Check that the image (docker://, oci:, oci-archive:; a tag is resolved to "
                                        "its digest now) has a valid cosign key-based signature by the public key: "
                                        "the `sha256-<hex>.sig` manifest in its repository, its simple-signing "
                                        "payload naming that digest. No transparency log: as `cosign verify --key "
                                        "cosign.pub --insecure-ignore-tlog`. Exit 0 when one is valid, 1 when none "
                                        "is (one line saying why), 3 when the registry cannot be reached.")
    parser.add_argument("image", help="the image, e.g. docker://registry.bank:5000/team/model:v1.2.0")
    parser.add_argument("--key", required=True, metavar="PUB",
                        help="the public key, a PEM `PUBLIC KEY` file (cosign.pub); never the private key")
    parser.set_defaults(handler=lambda a: run(config_path=a.config, image=a.image, key=Path(a.key), as_json=a.json))


def run(*, config_path: str | None, image: str, key: Path, as_json: bool) -> int:
    """Verify and print the signatures found; NotVerified (exit 1) when there is no valid one."""
    from mlci import settings as cfg
    from mlci.oci.reference import parse
    from mlci.sign import cosign
    from mlci.sign.keys import load_public_key

    ref = parse(image)
    public_key = load_public_key(key, f"--key {key}")
    config = cfg.load(config_path, Path.cwd()).config
    try:
        digest, verified = cosign.verify_image(ref, public_key, registries=config.registries,
                                               plain_http=config.image.plain_http, ca_bundle=config.image.ca_bundle)
    except cosign.NotVerified as exc:
        failure = cosign.NotVerified(f"{ref}: {exc}")
        if as_json:
            log.out_json({"image": str(ref), "verified": False, "key": public_key.fingerprint, "reason": str(failure)})
        raise failure from None
    if as_json:
        log.out_json({"image": str(ref), "digest": digest, "verified": True, "key": public_key.fingerprint,
                      "signatures": [v.to_json() for v in verified]})
        return 0
    references = sorted({v.docker_reference for v in verified})
    log.out(f"verified: {ref}{'' if str(ref).endswith(digest) else '@' + digest}: {len(verified)} signature"
            f"{'s' if len(verified) != 1 else ''} by key {public_key.fingerprint} (docker-reference "
            f"{', '.join(references)})")
    return 0
