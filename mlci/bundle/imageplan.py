"""The image side of a bundle: an OCI image layout holding the promoted image by digest (an index with every
platform's image), the referrers of each of its manifests (scan records, SBOM) and its cosign signatures, planned
as files whose size and sha256 are known before a byte is written.

* `index.json` lists the image under the promotion tag (`org.opencontainers.image.ref.name`), its signature
  manifest under `sha256-<hex>.sig`, and each referrer untagged with its artifactType and annotations, as
  mlci.oci.referrers writes them into a layout: LayoutEndpoint, referrers.referrers, scan.record.find and
  cosign.verify read the bundle as it is. Index children are blobs only (no entry), as a copy writes them.
* Only what the image is: the manifests under the top one, their referrers and the `.sig` manifest, and the
  blobs those name. No `mlci-key-*` tag, no `mlci-cache-*` record (no subject: never a referrer; one listed
  anyway is skipped).
* Signed for the inside: with a key, the image's signature is made as promote makes it (cosign.sign, the same
  payload, the same append to the source's `.sig` manifest, the same duplicate check), in a private temporary
  layout holding just the top manifest and the source's signature manifest with its config; the result (a few
  KB) is kept in memory and the temporary layout removed at once. This reuses cosign.sign unchanged rather than
  a second copy of its read-modify-write in another shape.
* Manifests (and the new signature's blobs) are carried from the bytes read while planning; every other blob
  streams from the source's verifying open_blob at write time, read once.
* Incremental: the layers of the image's manifests that the base carried are left out (listed as BaseBlob).
  Manifests, image configs and every blob of a referrer or of the signature are always carried (a few KB): the
  bundle's layout is then always whole enough for the inside's policy (labels, scan record, signature) to be read
  from the bundle alone."""
from __future__ import annotations

import io
import json
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from mlci.bundle.manifest import BaseBlob, Kind
from mlci.core.scratch import scratch_dir
from mlci.oci import referrers as oci_referrers
from mlci.oci.copy import LayoutEndpoint, RegistryEndpoint, manifest_tree
from mlci.oci.layout import LAYOUT_VERSION, Layout
from mlci.oci.manifest import OCI_INDEX, REF_NAME, Descriptor, Manifest, NotFound
from mlci.oci.transport import ImageSource, Opener
from mlci.sign import cosign
from mlci.sign.keys import SigningKey
from mlci.sign.tag import signature_tag

BUILD_CACHE = "application/vnd.mlci.build-cache.v1+json"  # mlci.image.cache.ARTIFACT_TYPE (not imported: heavy)


@dataclass(frozen=True)
class Planned:
    """One file of the bundle: its name, size and sha256 (hex) known now; its bytes from `open()` at write time."""

    name: str
    size: int
    sha256: str
    kind: Kind
    open: Opener = field(repr=False)


def in_memory(name: str, data: bytes, kind: Kind) -> Planned:
    """A file whose bytes are already here (a manifest, index.json, a small artifact)."""
    import hashlib

    return Planned(name, len(data), hashlib.sha256(data).hexdigest(), kind, lambda: io.BytesIO(data))


def blob_name(digest: str) -> str:
    """A blob's file in the bundle's layout."""
    return "blobs/sha256/" + digest.removeprefix("sha256:")


@dataclass(frozen=True)
class InsideSignature:
    """Sign the image for the inside with `key` as `docker_reference` (the inside repository, HOST/REPO)."""

    key: SigningKey = field(repr=False)
    docker_reference: str


@dataclass
class ImagePlan:
    """What the bundle carries of the image, in the order it is written."""

    top: Manifest
    tag: str
    manifests: list[Manifest]  # the image's (children first, the top one last), then referrers, then the `.sig`
    referrers: list[str]  # referrer manifest digests
    signature: str | None  # the `.sig` manifest carried (None: the image travels unsigned)
    signed: bool  # this export added (or found) the inside signature
    files: list[Planned]  # oci-layout, index.json, manifests, configs, layers
    omitted: tuple[BaseBlob, ...] = ()  # layers left to the base, sorted by digest


def plan_image(src: ImageSource, top: Manifest, tag: str, *, sign: InsideSignature | None = None,
               base: Collection[str] = ()) -> ImagePlan:
    """The layout files of the image `top` at `src` under `tag`, with its referrers and signatures; layers whose
    digest is in `base` (the previous bundle's blobs) are left out."""
    tree = manifest_tree(src, top)
    found = _referrers(src, tree)
    signature, extra = _signature(src, top, sign)
    manifests = [*tree, *found, *([signature] if signature is not None else [])]
    index = _index(top, tag, found, signature)
    files = [in_memory("oci-layout", LAYOUT_VERSION.encode(), "oci"), in_memory("index.json", index, "oci")]
    seen: set[str] = set()
    for manifest in manifests:
        if manifest.digest not in seen:
            seen.add(manifest.digest)
            files.append(in_memory(blob_name(manifest.digest), manifest.data, "oci"))
    image_layers = {layer.digest for manifest in tree for layer in manifest.blobs()[1:]}
    configs = [m.blobs()[0] for m in manifests if not m.is_index]
    layers = [layer for m in manifests if not m.is_index for layer in m.blobs()[1:]]
    omitted: dict[str, BaseBlob] = {}
    for blob in [*configs, *layers]:
        if blob.digest in seen:
            continue
        seen.add(blob.digest)
        if blob.digest in base and blob.digest in image_layers:
            omitted[blob.digest] = BaseBlob(blob.digest, blob.size)
        elif blob.digest in extra:
            files.append(in_memory(blob_name(blob.digest), extra[blob.digest], "oci"))
        else:
            files.append(Planned(blob_name(blob.digest), blob.size, blob.digest.removeprefix("sha256:"), "oci",
                                 _opener(src, blob)))
    return ImagePlan(top, tag, manifests, [m.digest for m in found],
                     signature.digest if signature is not None else None, sign is not None, files,
                     tuple(omitted[d] for d in sorted(omitted)))


def _opener(src: ImageSource, blob: Descriptor) -> Opener:
    return lambda: src.open_blob(blob.digest)


def _referrers(src: ImageSource, tree: list[Manifest]) -> list[Manifest]:
    """The referrers of every manifest of the image (an oci-archive keeps none), each once."""
    if not isinstance(src, RegistryEndpoint | LayoutEndpoint):
        return []
    found: dict[str, Manifest] = {}
    for manifest in tree:
        for descriptor in oci_referrers.referrers(src, manifest.digest):
            if descriptor.artifact_type == BUILD_CACHE or descriptor.digest in found:
                continue
            found[descriptor.digest] = src.get_manifest(descriptor.digest)
    return list(found.values())


def _signature(src: ImageSource, top: Manifest, sign: InsideSignature | None
               ) -> tuple[Manifest | None, dict[str, bytes]]:
    """The `.sig` manifest to carry (the source's, with the inside signature appended when `sign`) and the bytes
    of the blobs it names that the source does not have (the new payload and config)."""
    try:
        existing: Manifest | None = src.get_manifest(signature_tag(top.digest))
    except NotFound:
        existing = None
    if sign is None:
        return existing, {}
    with scratch_dir("mlci-bundle-sign-") as tmp:
        scratch = LayoutEndpoint(Layout(Path(tmp)))
        scratch.put_manifest(top, None, child=True)  # cosign.sign checks that the image is there
        if existing is not None:
            _copy_config(src, top.digest, existing, scratch)
            scratch.put_manifest(existing, signature_tag(top.digest))
        signed = cosign.sign(scratch, top.digest, sign.key, docker_reference=sign.docker_reference)
        manifest = scratch.get_manifest(signed.manifest.digest)
        extra = {}
        for blob in manifest.blobs():
            if scratch.has_blob(blob.digest):
                with scratch.open_blob(blob.digest) as handle:
                    extra[blob.digest] = handle.read()
        return manifest, extra


def _copy_config(src: ImageSource, top: str, signatures: Manifest, scratch: LayoutEndpoint) -> None:
    """The source's signature manifest's config into the scratch layout (bounded by cosign's limit)."""
    tag = signature_tag(top)
    config = signatures.blobs()[0] if not signatures.is_index else None
    if config is None or config.size > cosign.MAX_CONFIG:
        raise cosign.SignError(f"{tag}: not a signature image mlci appends to (no config, or one of more than "
                               f"{cosign.MAX_CONFIG} bytes)")
    with src.open_blob(config.digest) as stream:
        data = stream.read(config.size + 1)  # to the end: a verifying stream checks the digest there
    scratch.layout.init()
    scratch.layout.put_blob(config.digest, io.BytesIO(data))


def _index(top: Manifest, tag: str, found: list[Manifest], signature: Manifest | None) -> bytes:
    """index.json: the image tagged, its signature manifest tagged, its referrers listed untagged."""
    entries = [top.descriptor({REF_NAME: tag}).to_json()]
    if signature is not None:
        entries.append(signature.descriptor({REF_NAME: signature_tag(top.digest)}).to_json())
    entries += [oci_referrers.referrer_descriptor(manifest).to_json() for manifest in found]
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries},
                      separators=(",", ":")).encode()

