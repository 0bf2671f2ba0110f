#!/usr/bin/env python3
"""A recording stand-in for kaniko's executor and `docker buildx build`, which cannot run here.

It follows their documented interface: it records its argv (to $STANDIN_RECORD), pushes a small
image built from the context's Dockerfile bytes to the destination (plain HTTP when kaniko gets
--insecure), and writes the digest where the real tool would: kaniko's --digest-file, or buildx's
--metadata-file as {"containerimage.digest": ...}."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import requests


def _push(destination: str, context: Path, dockerfile: Path, labels: list[str], scheme: str) -> str:
    host, _, rest = destination.partition("/")
    repo, _, tag = rest.rpartition(":")
    base = f"{scheme}://{host}/v2/{repo}"

    def blob(data: bytes) -> dict[str, object]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        location = requests.post(f"{base}/blobs/uploads/", timeout=10).headers["Location"]
        joiner = "&" if "?" in location else "?"
        requests.put(f"{location}{joiner}digest={digest}", data=data, timeout=10).raise_for_status()
        return {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": len(data)}

    layer = blob(dockerfile.read_bytes() + b"".join(p.read_bytes() for p in sorted(context.glob("*.txt"))))
    config = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
              "config": {"Labels": dict(label.split("=", 1) for label in labels)}}
    config_desc = blob(json.dumps(config, sort_keys=True).encode())
    config_desc["mediaType"] = "application/vnd.oci.image.config.v1+json"
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": config_desc, "layers": [layer]}, sort_keys=True).encode()
    requests.put(f"{base}/manifests/{tag}", data=manifest, timeout=10,
                 headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"}).raise_for_status()
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


def main() -> int:
    record = os.environ["STANDIN_RECORD"]
    Path(record).write_text(json.dumps({"tool": Path(sys.argv[0]).name, "argv": sys.argv[1:]}))
    parser = argparse.ArgumentParser()
    parser.add_argument("--build-arg", action="append", default=[])
    parser.add_argument("--label", action="append", default=[])
    if Path(sys.argv[0]).name == "docker":  # docker buildx build ... CONTEXT
        parser.add_argument("cmd", nargs=2)
        parser.add_argument("--file", required=True)
        parser.add_argument("--tag", required=True)
        parser.add_argument("--push", action="store_true", required=True)
        parser.add_argument("--provenance")
        parser.add_argument("--metadata-file", required=True)
        parser.add_argument("context")
        args = parser.parse_args()
        context = Path(args.context)
        digest = _push(args.tag, context, context / args.file, args.label, "http")
        Path(args.metadata_file).write_text(json.dumps({"containerimage.digest": digest}))
        return 0
    parser.add_argument("--context", required=True)
    parser.add_argument("--dockerfile", required=True)
    parser.add_argument("--destination", required=True)
    parser.add_argument("--digest-file", required=True)
    parser.add_argument("--reproducible", action="store_true")
    parser.add_argument("--insecure", action="store_true")
    parser.add_argument("--insecure-registry", action="append", default=[])
    parser.add_argument("--registry-certificate", action="append", default=[])
    args = parser.parse_args()
    context = Path(args.context.removeprefix("dir://"))
    digest = _push(args.destination, context, Path(args.dockerfile), args.label, "http" if args.insecure else "https")
    Path(args.digest_file).write_text(digest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
