"""The signer port: every key source behind one small interface.

Bundles must stay byte-identical across reruns (BRIEF contract 5), so signing has to be
deterministic: Ed25519 (RFC 8032 is deterministic by construction) or ECDSA P-256 with
RFC 6979 nonces. The one exception is an HSM that only offers randomised ECDSA; such a
signer says so in :attr:`Signer.deterministic` and callers decide whether to accept it.

A key reference names where the private key lives; :func:`load_signer` dispatches on
its scheme so the CLI, the API and pipelines accept the same strings:

====================================  =====================================================
``PATH`` or ``file://PATH``           PEM file (PKCS#8, SEC1 or cosign's encrypted format);
                                      ``?password-env=VAR`` names the password variable
``env://VAR``                         PEM text (or base64 of it) in an environment variable;
                                      ``?password-env=VAR`` as above
``cosign://PATH``                     cosign's ``ENCRYPTED SIGSTORE PRIVATE KEY``; the
                                      password comes from ``COSIGN_PASSWORD``
``pkcs11:token=T;object=O?...``       a key that never leaves a PKCS#11 token (RFC 7512)
====================================  =====================================================

Key ids are ``sha256:<hex>`` of the public key's SubjectPublicKeyInfo DER: stable,
derived from the key alone, and equal for a signer and the verifier built from its PEM.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, Protocol, TypeAlias, runtime_checkable

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from stella.canonical import sha256_digest
from stella.errors import ConflictError, SignatureError, UsageError

__all__ = [
    "ECDSA_P256_SHA256",
    "ED25519",
    "KEY_REF_SCHEMES",
    "Algorithm",
    "KeyKind",
    "PublicKey",
    "PublicKeyVerifier",
    "Signer",
    "Verifier",
    "algorithm_of",
    "generate_key",
    "key_id_of",
    "load_signer",
    "load_verifier",
]

ECDSA_P256_SHA256: Final = "ecdsa-p256-sha256"
ED25519: Final = "ed25519"

Algorithm: TypeAlias = Literal["ecdsa-p256-sha256", "ed25519"]
KeyKind: TypeAlias = Literal["ecdsa-p256", "ed25519"]
PublicKey: TypeAlias = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

# Shown in the UsageError for an unknown scheme, so users see every valid spelling.
KEY_REF_SCHEMES: Final = (
    "PATH",
    "file://PATH[?password-env=VAR]",
    "env://VAR[?password-env=VAR]",
    "cosign://PATH[?password-env=VAR]",
    "pkcs11:token=LABEL;object=LABEL[?module-path=PATH&pin-source=env:VAR]",
)

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(//)?")


@runtime_checkable
class Signer(Protocol):
    """A private key that can sign but never hands the key out.

    ``sign`` returns what the algorithm's wire format expects: DER ``ECDSA-Sig-Value``
    for ECDSA (as cosign, sigstore and ``openssl dgst`` use) and the raw 64 bytes for
    Ed25519 (RFC 8032 §5.1.6).
    """

    @property
    def key_id(self) -> str: ...

    @property
    def algorithm(self) -> Algorithm: ...

    @property
    def deterministic(self) -> bool:
        """True when signing the same bytes twice yields the same signature."""
        ...

    def public_key_pem(self) -> bytes: ...

    def sign(self, data: bytes) -> bytes: ...


@runtime_checkable
class Verifier(Protocol):
    """A trusted public key. ``verify`` raises :class:`SignatureError` or returns None."""

    @property
    def key_id(self) -> str: ...

    @property
    def algorithm(self) -> Algorithm: ...

    def verify(self, data: bytes, signature: bytes) -> None: ...


def key_id_of(public_key: PublicKey) -> str:
    """``sha256:<hex>`` of the SubjectPublicKeyInfo DER: the same id for signer and verifier."""
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return sha256_digest(spki)


def algorithm_of(public_key: object) -> Algorithm:
    """The algorithm name for a supported public key, else a UsageError naming what is supported."""
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return ED25519
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if isinstance(public_key.curve, ec.SECP256R1):
            return ECDSA_P256_SHA256
        raise UsageError(
            f"ECDSA curve {public_key.curve.name} is not supported; use P-256 (secp256r1) or Ed25519",
            details={"curve": public_key.curve.name},
        )
    raise UsageError(
        f"key type {type(public_key).__name__} is not supported; use ECDSA P-256 or Ed25519",
        details={"keyType": type(public_key).__name__},
    )


@dataclass(frozen=True, slots=True)
class PublicKeyVerifier:
    """A :class:`Verifier` over an in-memory public key (from PEM, a token, or a signer)."""

    public_key: PublicKey = field(repr=False)
    key_id: str
    algorithm: Algorithm

    @classmethod
    def from_public_key(cls, public_key: PublicKey) -> PublicKeyVerifier:
        return cls(public_key=public_key, key_id=key_id_of(public_key), algorithm=algorithm_of(public_key))

    def public_key_pem(self) -> bytes:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def verify(self, data: bytes, signature: bytes) -> None:
        """Check ``signature`` over ``data``; ECDSA signatures must be DER (as cosign writes them)."""
        try:
            if isinstance(self.public_key, ed25519.Ed25519PublicKey):
                self.public_key.verify(signature, data)
            else:
                decode_dss_signature(signature)  # names raw r||s or garbage as malformed, not "wrong"
                self.public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature as exc:
            raise SignatureError(
                f"signature does not verify with key {self.key_id}",
                details={"keyId": self.key_id, "algorithm": self.algorithm},
            ) from exc
        except ValueError as exc:
            raise SignatureError(
                f"signature is malformed: not a DER ECDSA-Sig-Value ({exc})",
                details={"keyId": self.key_id, "algorithm": self.algorithm},
            ) from exc


def load_verifier(pem: bytes) -> PublicKeyVerifier:
    """A verifier from a SubjectPublicKeyInfo PEM (``-----BEGIN PUBLIC KEY-----``, as cosign writes).

    Raises:
        UsageError: not a PEM public key, or not ECDSA P-256 / Ed25519.
    """
    try:
        public_key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        from stella.keyfiles import describe

        kind = describe(pem)
        hint = (
            "; give its public half (stella keys public PRIVATE.key --out KEY.pub)"
            if "private key" in kind
            else ""
        )
        raise UsageError(
            f"expected a PEM public key, but this is {kind}{hint}", details={"kind": kind}
        ) from exc
    algorithm_of(public_key)
    assert isinstance(public_key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey)
    return PublicKeyVerifier.from_public_key(public_key)


def load_signer(ref: str, *, environ: Mapping[str, str]) -> Signer:
    """Open the private key a key reference names (syntax in the module docstring).

    ``environ`` is passed in, never read from ``os.environ`` here, so that passwords and
    PINs come from what the caller chose to expose.

    Raises:
        UsageError: unknown scheme, malformed reference, wrong password, unsupported key.
        NotFoundError: the file, variable, token or object does not exist.
    """
    if not ref:
        raise UsageError("empty key reference", details={"validSchemes": list(KEY_REF_SCHEMES)})
    match = _SCHEME.match(ref)
    scheme = match.group(1).lower() if match else None
    if scheme == "pkcs11":
        from stella.signers import pkcs11

        return pkcs11.load_pkcs11_signer(ref, environ=environ)
    if match is None or match.group(2) is None:
        # No scheme, or "name:rest" without "//": a plain filesystem path.
        from stella.signers import pem

        return pem.load_pem_signer(Path(ref), password_env=None, environ=environ)
    if scheme == "file":
        from stella.signers import pem

        return pem.load_file_ref(ref, environ=environ)
    if scheme == "env":
        from stella.signers import env

        return env.load_env_signer(ref, environ=environ)
    if scheme == "cosign":
        from stella.signers import cosign

        return cosign.load_cosign_ref(ref, environ=environ)
    raise UsageError(
        f"unknown key reference scheme {scheme!r}; valid forms: {', '.join(KEY_REF_SCHEMES)}",
        details={"scheme": scheme, "validSchemes": list(KEY_REF_SCHEMES)},
    )


def generate_key(
    kind: KeyKind,
    private_out: Path,
    public_out: Path,
    *,
    password: bytes | None,
    key_format: Literal["pkcs8", "cosign"] = "pkcs8",
) -> str:
    """Create a key pair, write the private key (mode 0600) and public PEM, return the key id.

    ``key_format="cosign"`` writes cosign's encrypted ``cosign.key`` (then ``password``
    is required, as in ``cosign generate-key-pair``). Existing files are never overwritten,
    so a typo cannot destroy a production key.

    Raises:
        UsageError: unknown kind, or cosign format without a password.
        ConflictError: either output already exists.
    """
    private_key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    if kind == "ecdsa-p256":
        private_key = ec.generate_private_key(ec.SECP256R1())
    elif kind == "ed25519":
        private_key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise UsageError(f"unknown key kind {kind!r}; use 'ecdsa-p256' or 'ed25519'")
    for path in (private_out, public_out):
        if path.exists():
            raise ConflictError(
                f"refusing to overwrite existing key file {path}", details={"path": str(path)}
            )

    pkcs8_der = private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    if key_format == "cosign":
        if password is None:
            raise UsageError("cosign-format keys are always encrypted: give a password")
        from stella.signers import cosign

        private_bytes = cosign.encrypt_cosign_key(pkcs8_der, password=password)
    elif key_format == "pkcs8":
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
        )
        private_bytes = private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
    else:
        raise UsageError(f"unknown key format {key_format!r}; use 'pkcs8' or 'cosign'")

    public_key = private_key.public_key()
    public_pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write_new(private_out, private_bytes, mode=0o600)
    _write_new(public_out, public_pem, mode=0o644)
    return key_id_of(public_key)


def _write_new(path: Path, data: bytes, *, mode: int) -> None:
    # O_EXCL: the existence check above and the create are one step for the file system.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError as exc:
        raise ConflictError(f"refusing to overwrite existing key file {path}") from exc
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
