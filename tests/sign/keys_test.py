"""The signing key as promote.signing names it: openssl-made PKCS#8 PEMs (plain, and encrypted with a password from
a variable), from a file, a variable or a file-type variable; every refusal is one line that shows no key material,
and the key is never an argument."""
from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import pytest

from mlci import cli
from mlci.core import log
from mlci.core.errors import ConfigError, UsageError
from mlci.promote.settings import Signing
from mlci.sign import keys
from tests.sign.support import KeyPair, openssl, other_key, p256


def _problem(exc: pytest.ExceptionInfo[ConfigError] | pytest.ExceptionInfo[UsageError]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def _shows_no_key(text: str, pair: KeyPair) -> None:
    for line in pair.pem_lines():
        assert line not in text
        assert line[:20] not in text
    if pair.password:
        assert pair.password not in text


def test_an_openssl_key_from_a_file_signs_and_its_public_key_is_the_openssl_cosign_pub(tmp_path: Path) -> None:
    pair = p256(tmp_path / "keys")
    key = keys.load_signing_key(Signing(key_file="keys/key.pem"), base=tmp_path, environ={})
    assert key.public.pem() == pair.public.read_bytes()  # what `openssl pkey -pubout` wrote: cosign.pub
    public = keys.load_public_key(pair.public)
    assert public.fingerprint == key.public.fingerprint and re.fullmatch(r"sha256:[0-9a-f]{64}", public.fingerprint)
    signature = key.sign(b"payload")
    assert public.verifies(signature, b"payload") and not public.verifies(signature, b"payload!")
    assert key.sign(b"payload") == signature  # RFC 6979: signing again gives the same bytes
    assert repr(key) == f"SigningKey(source={key.source!r})"  # no key material in a repr
    for line in pair.pem_lines():
        assert log.redact(f"printed: {line}") == f"printed: {log.MASK}"  # registered while it was read


def test_an_encrypted_key_takes_its_password_from_the_variable_config_names(tmp_path: Path) -> None:
    pair = p256(tmp_path, password="correct horse battery staple")
    assert "ENCRYPTED PRIVATE KEY" in pair.private.read_text()
    signing = Signing(key_env="PROMOTE_KEY", password_env="PROMOTE_KEY_PASSWORD")
    environ = {"PROMOTE_KEY": pair.private.read_text(), "PROMOTE_KEY_PASSWORD": "correct horse battery staple"}
    key = keys.load_signing_key(signing, base=tmp_path, environ=environ)
    assert key.public.pem() == pair.public.read_bytes()
    assert log.redact("pw=correct horse battery staple") == f"pw={log.MASK}"
    # a GitLab file-type variable holds the path of the key file instead
    as_file = keys.load_signing_key(signing, base=tmp_path, environ={**environ, "PROMOTE_KEY": str(pair.private)})
    assert as_file.public.fingerprint == key.public.fingerprint


def test_a_wrong_or_missing_password_and_missing_keys_are_one_line_without_the_key(tmp_path: Path) -> None:
    pair = p256(tmp_path, password="the right one")
    wrong = {"PW": "the wrong one"}
    with pytest.raises(ConfigError) as exc:
        keys.load_signing_key(Signing(key_file=str(pair.private), password_env="PW"), base=tmp_path, environ=wrong)
    text = _problem(exc)
    assert str(pair.private) in text and "wrong password" in text and "the wrong one" not in text
    _shows_no_key(text, pair)
    with pytest.raises(ConfigError) as exc:
        keys.load_signing_key(Signing(key_file=str(pair.private)), base=tmp_path, environ={})
    assert "encrypted" in _problem(exc) and "password_env" in _problem(exc)
    with pytest.raises(ConfigError) as exc:
        keys.load_signing_key(Signing(key_file=str(pair.private), password_env="PW"), base=tmp_path, environ={})
    assert "$PW" in _problem(exc) and "not set" in _problem(exc)
    with pytest.raises(ConfigError) as exc:
        keys.load_signing_key(Signing(key_env="NOPE"), base=tmp_path, environ={})
    assert "$NOPE" in _problem(exc)
    with pytest.raises(UsageError) as usage:
        keys.load_signing_key(Signing(key_file="missing.pem"), base=tmp_path, environ={})
    assert "missing.pem" in _problem(usage) and "not found" in _problem(usage)
    os.mkfifo(tmp_path / "fifo.pem")  # opened for reading, it waited for a writer for ever
    with pytest.raises(UsageError) as usage:
        keys.load_signing_key(Signing(key_file="fifo.pem"), base=tmp_path, environ={})
    assert "fifo.pem" in _problem(usage) and "is a FIFO, not a regular file" in _problem(usage)
    with pytest.raises(ConfigError) as exc:
        keys.load_signing_key(Signing(), base=tmp_path, environ={})
    assert "key_file or key_env" in _problem(exc) and "openssl genpkey" in _problem(exc)


@pytest.mark.parametrize(("algorithm", "kind"), [
    (("-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"), "an EC key on secp384r1"),
    (("-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"), "an RSA key (2048 bits)"),
    (("-algorithm", "ED25519"), "an Ed25519 key"),
])
def test_other_curves_and_key_types_are_refused_in_one_line(tmp_path: Path, algorithm: tuple[str, ...],
                                                            kind: str) -> None:
    path = other_key(tmp_path, *algorithm)
    with pytest.raises(ConfigError) as exc:
        keys.load_signing_key(Signing(key_file=str(path)), base=tmp_path, environ={})
    text = _problem(exc)
    assert text.startswith(f"promote.signing.key_file ({path}): {kind}, not an ECDSA P-256 key")
    _shows_no_key(text, KeyPair(path, path))
    public = tmp_path / "other.pub"
    openssl("pkey", "-in", str(path), "-pubout", "-out", str(public))
    with pytest.raises(UsageError) as usage:
        keys.load_public_key(public)
    assert f"{kind}, not an ECDSA P-256 public key" in _problem(usage)


def test_pems_that_are_not_pkcs8_keys_are_refused_with_what_to_do(tmp_path: Path) -> None:
    pair = p256(tmp_path)
    sec1 = tmp_path / "sec1.pem"
    openssl("ec", "-in", str(pair.private), "-out", str(sec1))  # the traditional `EC PRIVATE KEY` format
    assert "BEGIN EC PRIVATE KEY" in sec1.read_text()
    with pytest.raises(ConfigError) as exc:
        keys.load_signing_key(Signing(key_file=str(sec1)), base=tmp_path, environ={})
    assert "'EC PRIVATE KEY', not a PKCS#8 private key" in _problem(exc) and "openssl pkcs8 -topk8" in _problem(exc)
    cosign_key = tmp_path / "cosign.key"
    cosign_key.write_text("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\neyJrZGYiOnt9fQ==\n"
                          "-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    with pytest.raises(ConfigError) as exc:
        keys.load_signing_key(Signing(key_file=str(cosign_key)), base=tmp_path, environ={})
    assert "cosign's own encrypted format is not read" in _problem(exc)
    for text in ("not a key at all\n", pair.private.read_text() + pair.private.read_text()):
        (tmp_path / "odd.pem").write_text(text)
        with pytest.raises(ConfigError) as exc:
            keys.load_signing_key(Signing(key_file="odd.pem"), base=tmp_path, environ={})
        _shows_no_key(_problem(exc), pair)


def _options(parser: argparse.ArgumentParser) -> list[str]:
    """Every option of every command and subcommand."""
    found: list[str] = []
    for action in parser._actions:
        found += action.option_strings
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _options(sub)
    return found


def test_a_private_key_is_never_an_argument_and_is_refused_where_a_public_key_belongs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    options = _options(cli.build_parser())
    assert "--key" in options  # verify's public key
    assert not [o for o in options if re.search(r"private|passw|passphrase|signing|secret", o)]
    pair = p256(tmp_path, password="s3cret-pass")
    assert cli.main(["verify", "oci:" + str(tmp_path / "nothing:v1"), "--key", str(pair.private)]) == 2
    captured = capsys.readouterr()
    assert "is a private key; verification takes the public key" in captured.err
    assert len(captured.err.strip().splitlines()) == 1 and captured.out == ""
    _shows_no_key(captured.err, pair)
