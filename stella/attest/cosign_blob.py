"""cosign-style detached blob signatures (``cosign sign-blob --key`` / ``verify-blob --key``).

Why a second signature beside DSSE: operators already script ``cosign verify-blob`` and
``openssl dgst -verify``; a detached signature over ``export.json`` lets them check a
bundle with tools they trust, without this project installed (BRIEF contract 6).

The format (sigstore/cosign ``specs/SIGNATURE_SPEC.md``, scheme
``ecdsa-sha2-256-nistp256``): an ASN.1 DER ECDSA-Sig-Value over SHA-256 of the blob,
base64-encoded (standard alphabet, padded) with no trailing newline. The object names no
algorithm, so the verifier must know it out of band: here it is always ECDSA P-256 with
SHA-256, because that is the one scheme ``openssl dgst -sha256`` and every cosign
release verify alike.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from stella.errors import SignatureError, UsageError
from stella.signers.interface import ECDSA_P256_SHA256, PublicKeyVerifier, Signer

__all__ = ["sign_blob", "verify_blob"]


def sign_blob(data: bytes, *, signer: Signer) -> bytes:
    """Base64 of the DER ECDSA P-256 / SHA-256 signature of ``data``, as ``cosign sign-blob`` prints it.

    Raises:
        UsageError: the signer is not ECDSA P-256. Ed25519 cannot stand in: ``openssl dgst
            -sha256 -verify`` and cosign's default ``verify-blob --key`` expect ECDSA over
            the SHA-256 digest, so an Ed25519 signature would be a file that looks like a
            cosign signature and that no cosign-style check accepts.
    """
    if signer.algorithm != ECDSA_P256_SHA256:
        raise UsageError(
            f"cosign-style blob signatures need an ECDSA P-256 key; key {signer.key_id} is "
            f"{signer.algorithm}, which openssl dgst -sha256 and cosign verify-blob --key do not accept",
            details={"keyId": signer.key_id, "algorithm": signer.algorithm},
        )
    # Signer.sign for ECDSA P-256 is ECDSA-with-SHA256 over the data, DER-encoded.
    return base64.b64encode(signer.sign(data))


def verify_blob(data: bytes, sig_b64: bytes | str, *, public_pem: bytes) -> None:
    """Check a cosign-style signature the way ``cosign verify-blob --key`` does with a P-256 key.

    Surrounding whitespace (a trailing newline from ``echo`` or an editor) is tolerated;
    anything else that is not base64 is refused.

    Raises:
        UsageError: ``public_pem`` is not an ECDSA P-256 public key.
        SignatureError: malformed base64 or DER, or the signature does not verify.
    """
    try:
        public_key = serialization.load_pem_public_key(public_pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        from stella.keyfiles import describe

        kind = describe(public_pem)
        raise UsageError(f"expected a PEM public key, but this is {kind}", details={"kind": kind}) from exc
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP256R1
    ):
        raise UsageError("cosign-style blob signatures are verified with an ECDSA P-256 public key only")
    text = sig_b64.encode("ascii", "replace") if isinstance(sig_b64, str) else sig_b64
    try:
        der = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(f"blob signature is not base64: {exc}") from exc
    if not der:
        raise SignatureError("blob signature is empty")
    PublicKeyVerifier.from_public_key(public_key).verify(data, der)
