"""cosign's encrypted private key (``cosign.key``), read and written without cosign.

Operators already hold keys made by ``cosign generate-key-pair``; accepting that file
as is spares them a risky export step. The format (cosign ``pkg/cosign/keys.go``, which
delegates to go-securesystemslib's ``encrypted`` package) is:

1. PEM block ``ENCRYPTED SIGSTORE PRIVATE KEY`` (``ENCRYPTED COSIGN PRIVATE KEY`` before
   cosign 2.0) whose body is a JSON object::

       {"kdf": {"name": "scrypt", "params": {"N": 32768, "r": 8, "p": 1}, "salt": B64},
        "cipher": {"name": "nacl/secretbox", "nonce": B64},
        "ciphertext": B64}

   with standard, padded base64 (Go's ``[]byte`` JSON encoding);
2. key = scrypt(password, salt, N, r, p, dkLen=32) with a 32-byte random salt;
3. ciphertext = NaCl secretbox (XSalsa20-Poly1305, tag first) of the PKCS#8 DER private
   key under that key and a 24-byte random nonce.

The password comes from ``COSIGN_PASSWORD`` as with cosign itself (an empty password is
allowed, as cosign allows it). XSalsa20 is not in ``cryptography``, so the secretbox step
uses PyNaCl (libsodium); scrypt uses ``cryptography``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Mapping
from typing import Any, Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from stella.errors import UsageError
from stella.guards import strictjson

__all__ = [
    "COSIGN_PASSWORD_VAR",
    "PEM_LABEL",
    "cosign_password",
    "decrypt_cosign_key",
    "encrypt_cosign_key",
    "is_cosign_key",
    "load_cosign_private_key",
]

PEM_LABEL: Final = "ENCRYPTED SIGSTORE PRIVATE KEY"
_LEGACY_PEM_LABEL: Final = "ENCRYPTED COSIGN PRIVATE KEY"
COSIGN_PASSWORD_VAR: Final = "COSIGN_PASSWORD"

_SALT_SIZE: Final = 32
_NONCE_SIZE: Final = 24
_KEY_SIZE: Final = 32
# What we write: the parameters cosign has always written (and the only ones
# sigstore-rs accepts), so every cosign implementation can open our files.
_WRITE_PARAMS: Final = (32768, 8, 1)
# What we accept: go-securesystemslib's legacy, standard and OWASP presets. Anything
# else is refused before deriving: attacker-chosen N or r could demand gigabytes of
# memory (scrypt needs 128·N·r bytes).
_ACCEPTED_PARAMS: Final = frozenset({(32768, 8, 1), (65536, 8, 1), (131072, 8, 1)})

_PEM_BLOCK = re.compile(
    rb"-----BEGIN (ENCRYPTED (?:SIGSTORE|COSIGN) PRIVATE KEY)-----\r?\n(.*?)-----END \1-----", re.DOTALL
)


def cosign_password(environ: Mapping[str, str], *, source: str) -> bytes:
    """``COSIGN_PASSWORD`` from the injected environment; there is no interactive prompt."""
    value = environ.get(COSIGN_PASSWORD_VAR)
    if value is None:
        raise UsageError(
            f"{source} is a cosign key: set {COSIGN_PASSWORD_VAR} (an empty value means no password)",
            details={"source": source, "variable": COSIGN_PASSWORD_VAR},
        )
    return value.encode("utf-8")


def _secretbox() -> Any:
    try:
        import nacl.secret
    except ImportError as exc:  # pragma: no cover - exercised only where PyNaCl is absent
        raise UsageError(
            "cosign keys need PyNaCl (pip install pynacl) for XSalsa20-Poly1305, "
            "which the cryptography package does not provide"
        ) from exc
    return nacl.secret.SecretBox


def _scrypt_key(password: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=_KEY_SIZE, n=n, r=r, p=p).derive(password)


def _b64(text: object, what: str, *, size: int | None = None) -> bytes:
    if not isinstance(text, str):
        raise UsageError(f"cosign key: {what} is not a base64 string")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UsageError(f"cosign key: {what} is not valid base64: {exc}") from exc
    if size is not None and len(raw) != size:
        raise UsageError(f"cosign key: {what} must be {size} bytes, got {len(raw)}")
    return raw


def encrypt_cosign_key(
    pkcs8_der: bytes, *, password: bytes, salt: bytes | None = None, nonce: bytes | None = None
) -> bytes:
    """Wrap a PKCS#8 DER key in cosign's encrypted PEM (steps 1-3 of the module docstring).

    ``salt`` and ``nonce`` default to fresh random bytes; tests pass fixed ones to check
    the output against an independent computation.
    """
    salt = os.urandom(_SALT_SIZE) if salt is None else salt
    nonce = os.urandom(_NONCE_SIZE) if nonce is None else nonce
    if len(salt) != _SALT_SIZE or len(nonce) != _NONCE_SIZE:
        raise UsageError(f"cosign key: salt must be {_SALT_SIZE} bytes and nonce {_NONCE_SIZE} bytes")
    n, r, p = _WRITE_PARAMS
    key = _scrypt_key(password, salt, n, r, p)  # step 2
    sealed = _secretbox()(key).encrypt(pkcs8_der, nonce).ciphertext  # step 3: tag || ciphertext
    document = {  # step 1, keys in Go's struct order so the bytes match cosign's
        "kdf": {
            "name": "scrypt",
            "params": {"N": n, "r": r, "p": p},
            "salt": base64.b64encode(salt).decode("ascii"),
        },
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode("ascii")},
        "ciphertext": base64.b64encode(sealed).decode("ascii"),
    }
    body = base64.b64encode(json.dumps(document, separators=(",", ":")).encode("ascii")).decode("ascii")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]  # Go's pem.Encode wraps at 64
    return "\n".join([f"-----BEGIN {PEM_LABEL}-----", *lines, f"-----END {PEM_LABEL}-----", ""]).encode(
        "ascii"
    )


def decrypt_cosign_key(data: bytes, *, password: bytes, source: str = "cosign key") -> bytes:
    """The PKCS#8 DER inside a cosign encrypted key (steps 1-3 reversed).

    Raises:
        UsageError: not a cosign key, unsupported KDF/cipher/parameters, wrong password.
    """
    match = _PEM_BLOCK.search(data)
    if match is None:
        raise UsageError(f"{source}: no {PEM_LABEL} (or {_LEGACY_PEM_LABEL}) PEM block")
    try:
        document = strictjson.loads(
            base64.b64decode(b"".join(match.group(2).split()), validate=True), what=source, error=UsageError
        )
    except (binascii.Error, UsageError) as exc:
        raise UsageError(f"{source}: PEM body is not base64 of JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise UsageError(f"{source}: PEM body is not a JSON object")
    kdf, cipher = document.get("kdf"), document.get("cipher")
    if not isinstance(kdf, dict) or kdf.get("name") != "scrypt":
        raise UsageError(f"{source}: unsupported or missing kdf (only scrypt is defined)")
    if not isinstance(cipher, dict) or cipher.get("name") != "nacl/secretbox":
        raise UsageError(f"{source}: unsupported or missing cipher (only nacl/secretbox is defined)")
    params = kdf.get("params")
    triple = (
        (params.get("N"), params.get("r"), params.get("p"))
        if isinstance(params, dict)
        else (None, None, None)
    )
    if triple not in _ACCEPTED_PARAMS or not all(type(v) is int for v in triple):
        raise UsageError(
            f"{source}: scrypt parameters {triple} are not one of the accepted presets "
            f"{sorted(_ACCEPTED_PARAMS)} (refused to bound memory use)"
        )
    n, r, p = triple
    assert isinstance(n, int) and isinstance(r, int) and isinstance(p, int)
    salt = _b64(kdf.get("salt"), "kdf.salt")
    nonce = _b64(cipher.get("nonce"), "cipher.nonce", size=_NONCE_SIZE)
    sealed = _b64(document.get("ciphertext"), "ciphertext")
    box = _secretbox()
    from nacl.exceptions import CryptoError

    key = _scrypt_key(password, salt, n, r, p)
    try:
        return bytes(box(key).decrypt(sealed, nonce))
    except CryptoError as exc:
        raise UsageError(
            f"{source}: cannot decrypt the cosign key (wrong {COSIGN_PASSWORD_VAR}?)",
            details={"source": source},
        ) from exc


def is_cosign_key(data: bytes) -> bool:
    """Whether ``data`` holds a cosign encrypted-key PEM block (either label)."""
    return _PEM_BLOCK.search(data) is not None


def load_cosign_private_key(data: bytes, *, password: bytes, source: str = "cosign key") -> object:
    """Decrypt and decode a cosign key into a private key object (of whatever type it holds)."""
    der = decrypt_cosign_key(data, password=password, source=source)
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UsageError(f"{source}: decrypted cosign key is not PKCS#8 DER: {exc}") from exc
    return key
