"""The signer port: every key source behind one small interface.

Bundles must stay byte-identical across reruns (BRIEF contract 5), so signing has to be
deterministic: Ed25519 (RFC 8032 is deterministic by construction) or ECDSA P-256 with
RFC 6979 nonces. The one exception is an HSM that only offers randomised ECDSA; such a
signer says so in :attr:`Signer.deterministic` and callers decide whether to accept it.

Where a key comes from (a file, a variable, cosign's format, a PKCS#11 token) is the
business of :mod:`stella.signers.registry`, which maps key references to the
implementations; this module names no implementation, so each of them can import it.

Key ids are ``sha256:<hex>`` of the public key's SubjectPublicKeyInfo DER: stable,
derived from the key alone, and equal for a signer and the verifier built from its PEM.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal, Protocol, TypeAlias, runtime_checkable

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from stella.canonical import sha256_digest
from stella.errors import SignatureError, UsageError

__all__ = [
    "ECDSA_P256_SHA256",
    "ED25519",
    "Algorithm",
    "PublicKey",
    "PublicKeyVerifier",
    "Signer",
    "Verifier",
    "algorithm_of",
    "key_id_of",
    "load_verifier",
]

ECDSA_P256_SHA256: Final = "ecdsa-p256-sha256"
ED25519: Final = "ed25519"

Algorithm: TypeAlias = Literal["ecdsa-p256-sha256", "ed25519"]
PublicKey: TypeAlias = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


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
        raise UsageError(f"not a PEM public key: {exc}") from exc
    algorithm_of(public_key)
    assert isinstance(public_key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey)
    return PublicKeyVerifier.from_public_key(public_key)
