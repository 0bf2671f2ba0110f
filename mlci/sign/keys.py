"""The keys image signatures are made and checked with: an ECDSA P-256 private key as a PKCS#8 PEM (plain, or
encrypted with its password from an environment variable), from the file or the variable `promote.signing` names,
never from argv; and its public key as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo: cosign's `cosign.pub`).

Everything read here is registered as a secret before it is parsed (the PEM, each of its lines, the password), so
no error, log line or file can show it. Any other key type or curve, a PEM of another kind and a wrong password are
refused in one line naming where the key came from, never quoting it."""
from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mlci.core import log
from mlci.core.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

    from mlci.promote.settings import Signing

CURVE = "secp256r1"  # NIST P-256, the one curve cosign's key-based signatures must support
MAX_PEM = 64 << 10  # a P-256 key is about 250 bytes; anything this large is not one
_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.S)
_OPENSSL_HINT = ("make one with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out key.pem` "
                 "(docs/promote.md)")


class KeyProblem(ConfigError):
    """A key that cannot be used: one line naming where it came from (exit 2)."""

    def __init__(self, message: str) -> None:
        super().__init__([message])


@dataclass(frozen=True)
class PublicKey:
    """An ECDSA P-256 public key that signatures are checked with."""

    key: ec.EllipticCurvePublicKey = field(repr=False)

    def der(self) -> bytes:
        """The SubjectPublicKeyInfo DER."""
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        return self.key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)

    def pem(self) -> bytes:
        """The key as a PEM `PUBLIC KEY`: cosign's `cosign.pub`, Kyverno's `publicKeys`."""
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        return self.key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)

    @property
    def fingerprint(self) -> str:
        """`sha256:<hex>` of the SubjectPublicKeyInfo DER (what sigstore calls the key's id): safe to print."""
        return "sha256:" + hashlib.sha256(self.der()).hexdigest()

    def verifies(self, signature: bytes, data: bytes) -> bool:
        """Whether `signature` (ASN.1 DER, ECDSA with SHA-256) is this key's over `data`."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        try:
            self.key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):  # ValueError: not a DER signature at all
            return False
        return True


@dataclass(frozen=True)
class SigningKey:
    """An ECDSA P-256 private key (never shown: no repr, registered as a secret when it was read)."""

    key: ec.EllipticCurvePrivateKey = field(repr=False)
    source: str  # where it came from, for messages: `promote.signing.key_file (/run/key.pem)`

    @property
    def public(self) -> PublicKey:
        return PublicKey(self.key.public_key())

    def sign(self, data: bytes) -> bytes:
        """ECDSA over SHA-256 of `data`, ASN.1 DER (what cosign's `dev.cosignproject.cosign/signature` holds,
        base64). Deterministic (RFC 6979): the same key and data give the same signature, so signing again is
        byte-identical, and no random number generator's quality is relied on."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        return self.key.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))


def load_signing_key(signing: Signing, base: Path, environ: Mapping[str, str] | None = None) -> SigningKey:
    """The key `promote.signing` names: `key_file` (relative to `base`, the config's directory) or `key_env` (the
    variable holds the PEM, or, a GitLab file-type variable, the path of a file holding it); its password from the
    variable `password_env` names."""
    env = os.environ if environ is None else environ
    if signing.key_file and signing.key_env:
        raise KeyProblem("promote.signing: give key_file or key_env, not both")
    if signing.key_file:
        path = base / signing.key_file
        where = f"promote.signing.key_file ({path})"
        pem = _read(path, where)
    elif signing.key_env:
        where = f"promote.signing.key_env (${signing.key_env})"
        value = env.get(signing.key_env)
        if not value:
            raise KeyProblem(f"{where}: the variable is not set (or empty); it holds the PEM private key")
        log.add_secret(value)
        if "-----BEGIN" in value or not os.path.isfile(value):
            pem = value.encode("utf-8", "surrogateescape")
        else:  # a file-type CI variable: the value is where the key is
            where = f"promote.signing.key_env (${signing.key_env}, a file)"
            pem = _read(Path(value), where)
    else:
        raise KeyProblem("promote.signing: no key: set key_file or key_env (an ECDSA P-256 PKCS#8 PEM; "
                        + _OPENSSL_HINT + ")")
    password = None
    if signing.password_env:
        secret = env.get(signing.password_env)
        if not secret:
            raise KeyProblem(f"promote.signing.password_env (${signing.password_env}): the variable is not set "
                            "(or empty)")
        log.add_secret(secret)
        password = secret.encode("utf-8", "surrogateescape")
    return private_from_pem(pem, password, where)


def private_from_pem(pem: bytes, password: bytes | None, where: str) -> SigningKey:
    """A P-256 private key from a PKCS#8 PEM (`PRIVATE KEY`, or `ENCRYPTED PRIVATE KEY` with `password`)."""
    _register(pem)
    label, _body = _one_pem(pem, where)
    if label == "ENCRYPTED PRIVATE KEY" and password is None:
        raise KeyProblem(f"{where}: the key is encrypted; name the variable that holds its password in "
                        "promote.signing.password_env")
    if label == "PRIVATE KEY" and password is not None:
        log.logger.warning("mlci: warning: %s: the key is not encrypted; promote.signing.password_env is not used",
                           where)
        password = None
    if label not in ("PRIVATE KEY", "ENCRYPTED PRIVATE KEY"):
        raise KeyProblem(f"{where}: a PEM {label!r}, not a PKCS#8 private key ({_label_hint(label)})")
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(pem, password)
    except (ValueError, TypeError):
        raise KeyProblem(f"{where}: " + ("cannot be decrypted: a wrong password (promote.signing.password_env), or "
                                         "a damaged key" if label == "ENCRYPTED PRIVATE KEY"
                                         else "not a readable PKCS#8 private key")) from None
    except UnsupportedAlgorithm:
        raise KeyProblem(f"{where}: a private key of an algorithm this build cannot read; {_OPENSSL_HINT}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != CURVE:
        raise KeyProblem(f"{where}: {_kind(key)}, not an ECDSA P-256 key; {_OPENSSL_HINT}")
    return SigningKey(key, where)


def load_public_key(path: Path, where: str | None = None) -> PublicKey:
    """The public key in a PEM file (`cosign.pub`)."""
    shown = where or str(path)
    return public_from_pem(_read(path, shown, secret=False), shown)


def public_from_pem(pem: bytes, where: str) -> PublicKey:
    """A P-256 public key from a PEM `PUBLIC KEY`; a private key given instead is refused without being shown."""
    label, _body = _one_pem(pem, where, secret=False)
    if "PRIVATE" in label:
        _register(pem)
        raise UsageError(f"{where}: is a private key; verification takes the public key "
                         "(`openssl pkey -in key.pem -pubout -out cosign.pub`); keep the private key out of PROD")
    if label != "PUBLIC KEY":
        raise UsageError(f"{where}: a PEM {label!r}, not a `PUBLIC KEY` (cosign.pub)")
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UsageError(f"{where}: not a readable public key ({exc.__class__.__name__})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != CURVE:
        raise UsageError(f"{where}: {_kind(key)}, not an ECDSA P-256 public key")
    return PublicKey(key)


def _read(path: Path, where: str, *, secret: bool = True) -> bytes:
    from mlci.core.bounded import Unreadable, open_regular

    if path.is_dir():
        raise UsageError(f"{where}: is a directory, not a PEM file")
    try:
        with open_regular(path, where) as handle:  # a FIFO is refused, never waited on
            data = handle.read(MAX_PEM + 1)
    except Unreadable as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"{where}: cannot be read ({exc.strerror or exc.__class__.__name__})") from None
    if secret:
        _register(data)
    if len(data) > MAX_PEM:
        raise UsageError(f"{where}: larger than {MAX_PEM} bytes: not a PEM key")
    return data


def _register(pem: bytes) -> None:
    """The PEM as a secret, each of its base64 lines (a tool may print one line of it) and its body as one line."""
    text = pem.decode("utf-8", "replace").strip()
    log.add_secret(text)
    for line in text.splitlines():
        line = line.strip()
        if len(line) >= 16 and not line.startswith("-----"):
            log.add_secret(line)
    for match in _PEM.finditer(pem):
        body = b"".join(line for line in match[2].splitlines() if b":" not in line)  # no `Proc-Type:` headers
        log.add_secret(b"".join(body.split()).decode("ascii", "replace"))


def _one_pem(pem: bytes, where: str, *, secret: bool = True) -> tuple[str, bytes]:
    """The label and body of the one PEM block in `pem` (encryption headers of the old OpenSSL format refused)."""
    blocks = _PEM.findall(pem)
    if not blocks:
        what = "a PEM private key" if secret else "a PEM public key"
        raise (KeyProblem if secret else UsageError)(f"{where}: not {what} (no -----BEGIN ...----- block)")
    labels = sorted({label.decode() for label, _ in blocks})
    if len(blocks) > 1:
        raise (KeyProblem if secret else UsageError)(
            f"{where}: {len(blocks)} PEM blocks ({', '.join(labels)}); give one key")
    label, body = blocks[0]
    return label.decode(), body


def _label_hint(label: str) -> str:
    if label == "EC PRIVATE KEY":
        return "convert it: `openssl pkcs8 -topk8 -in old.pem -out key.pem` (add -nocrypt for no password)"
    if "SIGSTORE" in label or "COSIGN" in label:
        return ("cosign's own encrypted format is not read; " + _OPENSSL_HINT
                + ", and `cosign import-key-pair --key key.pem` if cosign should sign with it too")
    return _OPENSSL_HINT


def _kind(key: object) -> str:
    """What a key is, without any of its material: `an RSA key (2048 bits)`, `an EC key on secp384r1`."""
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return f"an EC key on {key.curve.name}"
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"an RSA key ({key.key_size} bits)"
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "an Ed25519 key"
    if isinstance(key, ed448.Ed448PrivateKey | ed448.Ed448PublicKey):
        return "an Ed448 key"
    if isinstance(key, dsa.DSAPrivateKey | dsa.DSAPublicKey):
        return "a DSA key"
    return f"a {key.__class__.__name__.lstrip('_')}"
