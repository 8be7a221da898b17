"""Keys held in memory, loaded from PEM: the software signer every file-like source shares.

Why a class of its own: PEM files, environment variables and cosign key files differ
only in where the bytes come from and how they are unwrapped; once decoded they are the
same private key and must sign the same way. Signing is deterministic here (BRIEF
contract 5): Ed25519 per RFC 8032 §5.1.6, and ECDSA P-256 with RFC 6979 §3.2 nonces
(``deterministic_signing=True``), so a rerun yields the same signature bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from stella.errors import UsageError
from stella.guards.files import read_user_file
from stella.signers import cosign
from stella.signers.interface import ED25519, Algorithm, algorithm_of, key_id_of

__all__ = [
    "PrivateKey",
    "PrivateKeySigner",
    "load_cosign_ref",
    "load_file_ref",
    "load_pem_signer",
    "password_from_env",
    "signer_from_pem",
    "signer_from_private_key",
    "split_ref_options",
]

_logger = logging.getLogger(__name__)

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

# PEM labels of cosign's scrypt+secretbox format; the newer one first (cosign >= 2.0).
_COSIGN_LABELS = (
    b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----",
    b"-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----",
)


@dataclass(frozen=True, slots=True)
class PrivateKeySigner:
    """A software :class:`~stella.signers.interface.Signer`; ``repr`` shows the key id only."""

    private_key: PrivateKey = field(repr=False)
    key_id: str
    algorithm: Algorithm
    deterministic: bool = True

    def public_key_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.private_key, ed25519.Ed25519PrivateKey):
            return self.private_key.sign(data)  # RFC 8032: deterministic by construction
        # RFC 6979: the nonce is derived from the key and the message hash, never random.
        return self.private_key.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))


def signer_from_private_key(private_key: object) -> PrivateKeySigner:
    """Wrap a decoded key after checking it is one of the two supported kinds.

    Raises:
        UsageError: RSA, another curve, or anything that is not a private key.
    """
    if not isinstance(private_key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise UsageError(
            f"key type {type(private_key).__name__} is not supported; use ECDSA P-256 or Ed25519",
            details={"keyType": type(private_key).__name__},
        )
    public_key = private_key.public_key()
    algorithm = algorithm_of(public_key)
    return PrivateKeySigner(private_key=private_key, key_id=key_id_of(public_key), algorithm=algorithm)


def signer_from_pem(
    data: bytes, *, password: bytes | None, source: str, environ: Mapping[str, str]
) -> PrivateKeySigner:
    """Decode PKCS#8 / SEC1 PEM (optionally encrypted) or cosign's encrypted key.

    A cosign key is recognised by its PEM label so that ``load_signer("cosign.key")``
    works without the ``cosign://`` prefix; its password defaults to ``COSIGN_PASSWORD``.

    Raises:
        UsageError: not a private key PEM, encrypted without a password, wrong password.
    """
    if any(label in data for label in _COSIGN_LABELS):
        if password is None:
            password = cosign.cosign_password(environ, source=source)
        return signer_from_private_key(cosign.load_cosign_private_key(data, password=password, source=source))
    try:
        private_key = serialization.load_pem_private_key(data, password=password)
    except TypeError as exc:
        # cryptography raises TypeError both for "encrypted, no password" and the reverse.
        hint = "give ?password-env=VAR" if password is None else "drop the password option"
        raise UsageError(f"{source}: {exc}; {hint}", details={"source": source}) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UsageError(
            f"{source}: not a usable PEM private key (or the password is wrong): {exc}",
            details={"source": source},
        ) from exc
    signer = signer_from_private_key(private_key)
    _logger.debug("loaded %s key %s from %s", signer.algorithm, signer.key_id, source)
    return signer


def password_from_env(var: str | None, *, environ: Mapping[str, str], source: str) -> bytes | None:
    """The password held in variable ``var`` (UTF-8), or None when no variable was named."""
    if var is None:
        return None
    value = environ.get(var)
    if value is None:
        raise UsageError(
            f"{source}: password variable {var} is not set", details={"source": source, "variable": var}
        )
    return value.encode("utf-8")


def split_ref_options(rest: str, *, allowed: frozenset[str], ref: str) -> tuple[str, dict[str, str]]:
    """Split ``target?k=v&k=v`` and reject options this scheme does not know.

    Unknown options are errors, not ignored: a misspelt ``pasword-env`` silently ignored
    would load the key without the password the user meant to give.
    """
    target, _, query = rest.partition("?")
    options: dict[str, str] = {}
    if query:
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
        except ValueError as exc:
            raise UsageError(f"malformed key reference options in {ref!r}: {exc}") from exc
        for key, value in pairs:
            if key not in allowed:
                raise UsageError(
                    f"unknown option {key!r} in key reference {ref!r}; allowed: {', '.join(sorted(allowed))}",
                    details={"option": key, "allowed": sorted(allowed)},
                )
            if key in options:
                raise UsageError(f"option {key!r} given twice in key reference {ref!r}")
            options[key] = value
    return unquote(target), options


def load_pem_signer(path: Path, *, password_env: str | None, environ: Mapping[str, str]) -> PrivateKeySigner:
    """Read a PEM key file.

    Raises:
        NotFoundError: the file does not exist.
        UsageError: see :func:`signer_from_pem`.
    """
    data = read_user_file(path, "key file")
    password = password_from_env(password_env, environ=environ, source=str(path))
    signer = signer_from_pem(data, password=password, source=str(path), environ=environ)
    if signer.algorithm != ED25519:
        _logger.debug("ECDSA key %s signs with RFC 6979 deterministic nonces", signer.key_id)
    return signer


def load_file_ref(ref: str, *, environ: Mapping[str, str]) -> PrivateKeySigner:
    """``file://PATH[?password-env=VAR]``; everything after ``file://`` is the (percent-decoded) path."""
    target, options = split_ref_options(ref[len("file://") :], allowed=frozenset({"password-env"}), ref=ref)
    if not target:
        raise UsageError(f"key reference {ref!r} has no path")
    return load_pem_signer(Path(target), password_env=options.get("password-env"), environ=environ)


def load_cosign_ref(ref: str, *, environ: Mapping[str, str]) -> PrivateKeySigner:
    """``cosign://PATH[?password-env=VAR]``: ``VAR`` overrides ``COSIGN_PASSWORD``.

    Raises:
        NotFoundError: the file does not exist.
        UsageError: not a cosign key, wrong or missing password.
    """
    target, options = split_ref_options(ref[len("cosign://") :], allowed=frozenset({"password-env"}), ref=ref)
    if not target:
        raise UsageError(f"key reference {ref!r} has no path")
    path = Path(target)
    data = read_user_file(path, "cosign key file")
    if not cosign.is_cosign_key(data):
        raise UsageError(f"{path}: cosign:// names a file without a {cosign.PEM_LABEL} PEM block")
    variable = options.get("password-env")
    if variable is not None:
        value = environ.get(variable)
        if value is None:
            raise UsageError(f"{path}: password variable {variable} is not set")
        password = value.encode("utf-8")
    else:
        password = cosign.cosign_password(environ, source=str(path))
    return signer_from_pem(data, password=password, source=str(path), environ=environ)
