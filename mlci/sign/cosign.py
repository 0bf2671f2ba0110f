"""cosign's key-based image signatures, byte for byte (sigstore's specs/SIGNATURE_SPEC.md, as cosign v3 writes it
with `cosign sign --key cosign.key --tlog-upload=false`), made and checked over the OCI engine.

* The payload is a simple-signing document: `{"critical":{"identity":{"docker-reference":REPO},"image":
  {"docker-manifest-digest":DIGEST},"type":"cosign container image signature"},"optional":null}`, compact, as Go
  writes it (sigstore/sigstore's pkg/signature/payload; the spec's example capitalises `Docker-manifest-digest`,
  cosign writes it lower-case and Go's decoder matches either).
* It is signed with ECDSA P-256 over SHA-256; the ASN.1 DER signature, base64, goes in the annotation
  `dev.cosignproject.cosign/signature` of the payload's layer descriptor (media type
  `application/vnd.dev.cosign.simplesigning.v1+json`).
* That layer sits in an OCI image manifest (config `application/vnd.oci.image.config.v1+json`: the config
  go-containerregistry writes for an empty image with those layers appended) tagged `sha256-<hex>.sig` in the
  image's repository (tag-based discovery). Each further signature of the digest is appended as another layer,
  never replacing one; the same payload already signed by the same key is not appended again (cosign's duplicate
  detector), so signing again changes nothing. A signature image copied in from another repository (promotion) is
  united the same way with the one already there (unite()).

Verification fetches the tag, each payload by its digest (checked), checks the signature with the public key, then
the claims: the type, and that `docker-manifest-digest` is the image's digest. That is what `cosign verify --key
cosign.pub --insecure-ignore-tlog`, Kyverno, sigstore policy-controller and Connaisseur check offline.

Two signers of one digest at the same moment can still lose a layer to each other's read-modify-write (the spec:
"support for multiple signatures works but is racy"); sign() reads the tag back and tries again when its own
layer was lost. Promotions into one environment run one at a time (one manual job), so this stays rare."""
from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlci.core import jsonsafe
from mlci.core.errors import EnvironmentProblem, GateFailed, UsageError
from mlci.core.log import logger
from mlci.oci.copy import LayoutEndpoint, RegistryEndpoint
from mlci.oci.manifest import (
    DOCKER_MANIFEST,
    MAX_MANIFEST,
    OCI_CONFIG,
    OCI_MANIFEST,
    REF_NAME,
    Descriptor,
    Manifest,
    ManifestError,
    NotFound,
    sha256_digest,
)
from mlci.oci.reference import DockerRef, ImageRef
from mlci.oci.registry import RegistryError
from mlci.oci.settings import RegistrySettings
from mlci.oci.smallblob import BlobInvalid, read_small
from mlci.oci.transport import Endpoint
from mlci.sign import gojson
from mlci.sign.keys import PublicKey, SigningKey
from mlci.sign.tag import SUFFIX, image_digest, signature_tag

if TYPE_CHECKING:
    from mlci.oci.referrers import ReferrerSource

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE = "dev.cosignproject.cosign/signature"
SIGNATURE_TYPE = "cosign container image signature"
ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time.Time, what go-containerregistry writes for `created`
MAX_LAYERS = 1000  # cosign refuses a signature image of more layers (pkg/oci/mutate: maxLayers)
MAX_PAYLOAD = 256 << 10  # a payload is about 250 bytes; optional claims may add some
MAX_CONFIG = 1 << 20
ATTEMPTS = 3  # read-modify-write rounds of one sign() when a concurrent signer wrote over the tag
SHOWN_PROBLEMS = 3  # why signatures failed, at most this many in the one line

# go-containerregistry's struct field orders (pkg/v1/config.go ConfigFile, pkg/v1/manifest.go Manifest, Descriptor):
# Go writes a struct's fields in this order, omitempty fields only when set.
_CONFIG_FIELDS = ("architecture", "author", "container", "created", "docker_version", "history", "os", "rootfs",
                  "config", "os.version", "variant", "os.features")
_MANIFEST_FIELDS = ("schemaVersion", "mediaType", "config", "layers", "annotations", "subject", "artifactType")
_DESCRIPTOR_FIELDS = ("mediaType", "size", "digest", "data", "urls", "annotations", "platform", "artifactType")
_IMAGE_MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)


class SignError(EnvironmentProblem):
    """The signature tag holds something mlci will not write over, or the signature did not stay (exit 3)."""


class NotVerified(GateFailed):
    """No valid signature of the digest by the key: one line naming the digest and why (exit 1)."""


@dataclass(frozen=True)
class Signed:
    """What sign() left in the repository: the `.sig` manifest now tagged, and the layer of this signature."""

    tag: str
    manifest: Descriptor  # the signature image's manifest (its digest changes as signatures are appended)
    layer: Descriptor  # the payload's descriptor, the base64 signature in its annotations
    added: bool  # False: the same payload signed by the same key was there already; nothing was written

    @property
    def signature(self) -> str:
        """The base64 ASN.1 DER signature (public: it reveals nothing of the key)."""
        return self.layer.annotations[SIGNATURE]


@dataclass(frozen=True)
class Verified:
    """One valid signature: which layer of the `.sig` manifest, and what its payload claims."""

    layer: int  # 1-based
    payload: str  # the payload's digest
    docker_reference: str
    optional: dict[str, Any] | None
    key: str  # the public key's fingerprint

    def to_json(self) -> dict[str, Any]:
        return {"layer": self.layer, "payload": self.payload, "docker_reference": self.docker_reference,
                "optional": self.optional, "key": self.key}


def identity(ref: DockerRef) -> str:
    """The docker-reference cosign writes by default: the repository the image is in, `HOST[:PORT]/REPO`."""
    return f"{ref.registry}/{ref.repository}"


def payload(docker_reference: str, digest: str, optional: Mapping[str, str] | None = None) -> bytes:
    """The simple-signing payload, exactly as cosign writes it (`"optional":null` without claims)."""
    image_digest(digest)
    if not docker_reference or not docker_reference.isprintable():
        raise UsageError(f"docker-reference {docker_reference!r}: give the repository the image is in (HOST/REPO)")
    claims: dict[str, Any] | None = None
    if optional is not None:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in optional.items()):
            raise UsageError("optional claims of a signature are strings (as cosign's -a key=value)")
        claims = gojson.sorted_map(dict(optional))
    document = {"critical": {"identity": {"docker-reference": docker_reference},
                             "image": {"docker-manifest-digest": digest}, "type": SIGNATURE_TYPE},
                "optional": claims}
    try:
        return gojson.dumps(document)
    except ValueError:
        raise UsageError("a signature's claims must be valid Unicode text") from None


def sign(endpoint: Endpoint, digest: str, key: SigningKey, *, docker_reference: str,
         optional: Mapping[str, str] | None = None) -> Signed:
    """Sign the image `digest` (it must be at `endpoint`) as `docker_reference` (see identity()) and append the
    signature to its `sha256-<hex>.sig` manifest there (created if missing). Idempotent: the same payload already
    signed by this key is left as it is (`added` False)."""
    _writable(endpoint)
    image_digest(digest)
    endpoint.get_manifest(digest)  # the image is there: NotFound names it otherwise
    data = payload(docker_reference, digest, optional)
    blob = Descriptor(SIMPLE_SIGNING, sha256_digest(data), len(data))
    tag = signature_tag(digest)
    _put_blob(endpoint, blob, data)
    public = key.public
    wrote = False
    for attempt in range(ATTEMPTS + 1):
        existing = _read(endpoint, tag)
        found = _same(existing, blob, data, public)
        if found is not None:
            assert existing is not None
            return Signed(tag, existing.manifest.descriptor(), found, added=wrote)
        if attempt == ATTEMPTS:
            break
        if wrote:
            logger.info("mlci: %s: another signer wrote over it; appending the signature again", tag)
        layer = Descriptor(SIMPLE_SIGNING, blob.digest, blob.size,
                           {SIGNATURE: base64.b64encode(key.sign(data)).decode("ascii")})
        manifest, config, config_data = _appended(existing, [layer.to_json()], tag)
        _put_blob(endpoint, config, config_data)
        endpoint.put_manifest(manifest, tag)
        wrote = True
    raise SignError(f"{digest}: the signature did not stay in {tag}: other signers wrote over it {ATTEMPTS} times")


def unite(endpoint: Endpoint, digest: str, incoming: Manifest) -> Descriptor:
    """Put another repository's signature image of `digest` (its `.sig` manifest; its config and payload blobs
    already copied to `endpoint`) under the tag at `endpoint`, keeping every signature there: stored as it is (the
    same digest) where the tag is new, else the layers the destination lacks appended, the config rebuilt as cosign
    would. Returns the descriptor of what the tag then holds; nothing is written when nothing is missing."""
    _writable(endpoint)
    tag = signature_tag(digest)
    try:
        wanted = _layers(incoming, tag)
        raw = incoming.body()["layers"]
    except ManifestError as exc:
        raise SignError(f"{exc}; not copied") from None
    for attempt in range(ATTEMPTS + 1):
        existing = _read(endpoint, tag)
        missing = wanted if existing is None else [layer for layer in wanted if layer not in existing.layers]
        if existing is not None and not missing:
            return existing.manifest.descriptor()
        if attempt == ATTEMPTS:
            break
        if existing is None:
            endpoint.put_manifest(incoming, tag)
            continue
        manifest, config, config_data = _appended(existing, [raw[wanted.index(layer)] for layer in missing], tag)
        _put_blob(endpoint, config, config_data)
        endpoint.put_manifest(manifest, tag)
    raise SignError(f"{digest}: the signatures did not stay in {tag}: other signers wrote over it {ATTEMPTS} times")


def verify(source: Endpoint | ReferrerSource, digest: str, public_key: PublicKey, *,
           docker_reference: str | None = None) -> list[Verified]:
    """The valid signatures of `digest` by `public_key` in its `.sig` manifest at `source` (each with what it
    claims); NotVerified (exit 1) naming the digest and why when there is none. `docker_reference`: also require
    the payload to name that repository (cosign's default does not check it)."""
    image_digest(digest)
    tag = signature_tag(digest)
    try:
        manifest = source.get_manifest(tag)
    except NotFound:
        raise NotVerified(f"{digest}: not signed: no signature tag {tag}") from None
    try:
        layers = _layers(manifest, tag)
    except ManifestError as exc:
        raise NotVerified(f"{digest}: no valid signature: {exc}") from None
    verified: list[Verified] = []
    problems: list[str] = []
    for number, layer in enumerate(layers[:MAX_LAYERS], 1):
        try:
            verified.append(_check(source, layer, number, digest, public_key, docker_reference))
        except _Invalid as exc:
            problems.append(f"signature {number}: {exc}")
    if len(layers) > MAX_LAYERS:
        problems.append(f"{len(layers) - MAX_LAYERS} layers past the first {MAX_LAYERS} not read")
    if not verified:
        shown = "; ".join(problems[:SHOWN_PROBLEMS]) or "it holds no layers"
        more = f" (and {len(problems) - SHOWN_PROBLEMS} more)" if len(problems) > SHOWN_PROBLEMS else ""
        raise NotVerified(f"{digest}: no valid signature by key {public_key.fingerprint} in {tag}: {shown}{more}")
    return verified


def _writable(endpoint: Endpoint) -> None:
    """Signatures are read back after each write, which an archive (written once, at commit) cannot do."""
    if not isinstance(endpoint, RegistryEndpoint | LayoutEndpoint):
        raise UsageError("signatures are written to a registry or an OCI layout (an oci-archive: write the layout, "
                         "then the archive)")


class _Invalid(Exception):
    """Why one signature layer does not count."""


@dataclass(frozen=True)
class _Existing:
    manifest: Manifest
    body: dict[str, Any]
    layers: list[Descriptor]
    config: dict[str, Any]


def _read(endpoint: Endpoint, tag: str) -> _Existing | None:
    """The signature image now tagged `tag` (None when there is none), checked to be one mlci may extend."""
    try:
        manifest = endpoint.get_manifest(tag)
    except NotFound:
        return None
    try:
        layers = _layers(manifest, tag)
        body = manifest.body()
        config_descriptor = Descriptor.from_json(body.get("config"), f"{tag}: config")
    except ManifestError as exc:
        raise SignError(f"{exc}; mlci does not write over it") from None
    try:
        data = read_small(endpoint, config_descriptor, MAX_CONFIG, f"{tag}: config")
    except BlobInvalid as exc:
        raise SignError(f"{exc}; mlci does not write over it") from None
    try:
        config = jsonsafe.loads(data, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        config = None
    if not isinstance(config, dict):
        raise SignError(f"{tag}: its config {config_descriptor.digest} is not a JSON object; mlci does not write "
                        "over it")
    return _Existing(manifest, body, layers, config)


def _layers(manifest: Manifest, tag: str) -> list[Descriptor]:
    """The layer descriptors of a signature image manifest (ManifestError naming `tag` when it is not one)."""
    if manifest.media_type not in _IMAGE_MANIFESTS:
        raise ManifestError(f"{tag}: holds a {manifest.media_type}, not a signature image manifest")
    layers = manifest.body().get("layers")
    if not isinstance(layers, list):
        raise ManifestError(f"{tag}: manifest {manifest.digest} has no `layers` list")
    return [Descriptor.from_json(layer, f"{tag}: layers[{i}]") for i, layer in enumerate(layers)]


def _same(existing: _Existing | None, blob: Descriptor, data: bytes, public: PublicKey) -> Descriptor | None:
    """The layer of `existing` that already is this payload signed by this key (cosign's duplicate detector)."""
    if existing is None:
        return None
    for layer in existing.layers:
        if layer.media_type != SIMPLE_SIGNING or layer.digest != blob.digest:
            continue
        signature = _decoded(layer.annotations.get(SIGNATURE))
        if signature is not None and public.verifies(signature, data):
            return layer
    return None


def _appended(existing: _Existing | None, layers: list[dict[str, Any]], tag: str
              ) -> tuple[Manifest, Descriptor, bytes]:
    """The signature image manifest with `layers` (descriptor JSON) appended, its config's descriptor and bytes."""
    if existing is not None and len(existing.layers) + len(layers) > MAX_LAYERS:
        raise SignError(f"{tag}: would hold more than {MAX_LAYERS} signatures, cosign's limit; not extended")
    config_data = _config_bytes(existing, [str(layer["digest"]) for layer in layers])
    if existing is None:
        config = Descriptor(OCI_CONFIG, sha256_digest(config_data), len(config_data))
        body: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": _descriptor(config.to_json()),
                                "layers": [_descriptor(layer) for layer in layers]}
        media_type = OCI_MANIFEST
    else:
        old = existing.body
        config = Descriptor(str(old["config"]["mediaType"]), sha256_digest(config_data), len(config_data))
        body = dict(old)
        body["config"] = _descriptor({**old["config"], "size": config.size, "digest": config.digest})
        body["layers"] = [*(_descriptor(entry) for entry in old["layers"]), *(_descriptor(layer) for layer in layers)]
        body = _ordered(body, _MANIFEST_FIELDS)
        media_type = existing.manifest.media_type
    data = gojson.dumps(body)
    if len(data) > MAX_MANIFEST:
        raise SignError(f"{tag}: the signature manifest would outgrow the {MAX_MANIFEST} bytes registries accept")
    return Manifest.of(data, media_type), config, config_data


def _config_bytes(existing: _Existing | None, diff_ids: list[str]) -> bytes:
    """The signature image's config with more layers: their diff_ids and an empty history entry each appended, as
    go-containerregistry's mutate.Append writes it (for cosign's own configs, byte for byte)."""
    config: dict[str, Any] = dict(existing.config) if existing is not None else {
        "architecture": "", "created": ZERO_TIME, "os": "", "rootfs": {"type": "layers", "diff_ids": []},
        "config": {}}
    rootfs = config.get("rootfs")
    rootfs = dict(rootfs) if isinstance(rootfs, dict) else {"type": "layers"}
    known = rootfs.get("diff_ids")
    history = config.get("history")
    rootfs["diff_ids"] = [*(known if isinstance(known, list) else []), *diff_ids]
    config["rootfs"] = _ordered(rootfs, ("type", "diff_ids"))
    config["history"] = [*(history if isinstance(history, list) else []), *({"created": ZERO_TIME} for _ in diff_ids)]
    try:
        return gojson.dumps(_ordered(config, _CONFIG_FIELDS))
    except ValueError:  # a float or an unwritable string in another tool's config
        raise SignError("the existing signature image's config holds values mlci cannot write back unchanged "
                        "(floats); not extended") from None


def _descriptor(entry: dict[str, Any]) -> dict[str, Any]:
    """A descriptor's JSON in go-containerregistry's field order (its annotations sorted, as Go writes a map)."""
    ordered = _ordered(entry, _DESCRIPTOR_FIELDS)
    if isinstance(ordered.get("annotations"), dict):
        ordered["annotations"] = gojson.sorted_map(ordered["annotations"])
    return ordered


def _ordered(mapping: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """`mapping` with the keys Go knows in its struct's order, then any others as they were (kept, not dropped)."""
    known = {name: mapping[name] for name in fields if name in mapping}
    return {**known, **{k: v for k, v in mapping.items() if k not in known}}


def _put_blob(endpoint: Endpoint, blob: Descriptor, data: bytes) -> None:
    import io

    if not endpoint.try_reuse_blob(blob):
        endpoint.put_blob(blob, lambda: io.BytesIO(data))


def _check(source: Endpoint | ReferrerSource, layer: Descriptor, number: int, digest: str, public_key: PublicKey,
           docker_reference: str | None) -> Verified:
    """One layer as a verifier checks it: the payload, the signature over it, then its claims."""
    if layer.media_type != SIMPLE_SIGNING:
        raise _Invalid(f"a layer of type {layer.media_type[:80]!r}, not a simple-signing payload")
    signature = _decoded(layer.annotations.get(SIGNATURE))
    if signature is None:
        raise _Invalid(f"no base64 `{SIGNATURE}` annotation")
    if not source.has_blob(layer.digest):
        raise _Invalid(f"its payload {layer.digest} is missing")
    try:
        data = read_small(source, layer, MAX_PAYLOAD, "its payload")
    except RegistryError:  # no answer, or a refusal: the registry's problem, not the signature's (exit 3)
        raise
    except EnvironmentProblem as exc:  # bytes that do not match the digest, a blob gone from an archive
        raise _Invalid(str(exc)) from None
    if not public_key.verifies(signature, data):
        raise _Invalid("does not verify with this key (signed by another key, or the payload was changed)")
    critical, optional = _claims(data)
    claimed = _field(critical.get("image"), "docker-manifest-digest", "critical.image")
    if claimed != digest:
        raise _Invalid(f"its payload is for {str(claimed)[:80]}, not for this image")
    reference = _field(critical.get("identity"), "docker-reference", "critical.identity")
    if not isinstance(reference, str):
        raise _Invalid("its payload's critical.identity.docker-reference is not a string")
    if docker_reference is not None and reference != docker_reference:
        raise _Invalid(f"its payload names {reference[:200]!r}, not {docker_reference!r}")
    return Verified(number, layer.digest, reference, optional, public_key.fingerprint)


def _claims(data: bytes) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """`critical` and `optional` of a signed payload, read as Go's decoder reads them (keys of the critical part
    in any ASCII case; a key given twice is refused rather than guessed)."""
    try:
        document = jsonsafe.loads(data, object_pairs_hook=_unique, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise _Invalid(f"its payload is not simple-signing JSON ({exc.__class__.__name__})") from None
    if not isinstance(document, dict):
        raise _Invalid("its payload is not a JSON object")
    critical = _field(document, "critical", "payload")
    if not isinstance(critical, dict):
        raise _Invalid("its payload has no `critical` object")
    kind = _field(critical, "type", "critical")
    if kind != SIGNATURE_TYPE:
        raise _Invalid(f"its payload's critical.type is {str(kind)[:80]!r}, not {SIGNATURE_TYPE!r}")
    optional = _field(document, "optional", "payload")
    if optional is not None and not isinstance(optional, dict):
        raise _Invalid("its payload's `optional` is not an object")
    return critical, optional


def _field(value: object, name: str, where: str) -> Any:
    """`value[name]`, the key matched in any ASCII case as Go's decoder matches struct fields."""
    if not isinstance(value, dict):
        raise _Invalid(f"its payload's {where} is not an object")
    matches = [key for key in value if key.isascii() and key.lower() == name]
    if len(matches) > 1:
        raise _Invalid(f"its payload's {where} gives {name} {len(matches)} times ({', '.join(matches)})")
    return value[matches[0]] if matches else None


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("a key given twice")
    return dict(pairs)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _decoded(text: str | None) -> bytes | None:
    """A base64 annotation's bytes (line breaks skipped, as Go's decoder skips them), None when it is not base64."""
    if not text:
        return None
    try:
        return base64.b64decode(text.replace("\r", "").replace("\n", ""), validate=True)
    except (binascii.Error, ValueError):
        return None


def verify_image(ref: ImageRef, public_key: PublicKey, *, registries: Mapping[str, RegistrySettings] | None = None,
                 plain_http: tuple[str, ...] = (), ca_bundle: str | None = None,
                 docker_reference: str | None = None) -> tuple[str, list[Verified]]:
    """The digest `ref` names (a tag resolved now) and its valid signatures by `public_key`, in any transport;
    NotVerified (exit 1) when there is none, an EnvironmentProblem (exit 3) when the image cannot be reached."""
    from mlci.oci.copy import open_endpoint

    endpoint, reference = open_endpoint(ref, plain_http, ca_bundle, dict(registries or {}))
    if isinstance(endpoint, RegistryEndpoint):
        endpoint.registry.ping()  # once, not retried: a registry that is down fails the check now
    if reference is None and isinstance(endpoint, LayoutEndpoint):
        reference = _only_image(endpoint)
    digest = endpoint.get_manifest(reference).digest
    return digest, verify(endpoint, digest, public_key, docker_reference=docker_reference)


def _only_image(endpoint: LayoutEndpoint) -> str | None:
    """The one image of a layout named without a tag, its signature tags and referrers aside (None: let the
    layout say what it holds)."""
    images = set()
    for entry in endpoint.layout.entries():
        annotations = entry.get("annotations")
        name = annotations.get(REF_NAME) if isinstance(annotations, dict) else None
        if not entry.get("artifactType") and not (isinstance(name, str) and name.endswith(SUFFIX)):
            images.add(str(entry.get("digest")))
    return images.pop() if len(images) == 1 else None
