"""Keys that never leave a PKCS#11 token (an HSM, a KMS gateway, or SoftHSM2 in tests).

This is the "KMS provider behind one interface" of BRIEF contract 6: the private key is
used through ``C_Sign`` only, and the public key is read from the token so the key id
matches the exported PEM. The reference is an RFC 7512 PKCS#11 URI
(:mod:`stella.pkcs11_session`, shared with the token key wrapper of encryption).

Determinism: an Ed25519 key (``CKK_EC_EDWARDS``, mechanism ``CKM_EDDSA``, available in
SoftHSM2 >= 2.6 built against OpenSSL 1.1.1+) signs deterministically, as RFC 8032
requires. Tokens implement ``CKM_ECDSA`` with random nonces, so an ECDSA key on a token
yields a different signature each run; such a signer reports ``deterministic=False``
and bundles signed with it are reproducible except for their signature files.

SoftHSM2 itself finds its token folder through ``SOFTHSM2_CONF`` in the *process*
environment, read once when the library is initialised; that is outside this module.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from stella.errors import NotFoundError, RemoteError, UsageError
from stella.pkcs11_session import Pkcs11Ref, open_session, parse_pkcs11_uri, resolve_pin
from stella.signers.interface import ECDSA_P256_SHA256, ED25519, Algorithm, PublicKey, key_id_of

__all__ = ["Pkcs11Signer", "load_pkcs11_signer"]

_logger = logging.getLogger(__name__)

# DER of the curve identifiers a token may store in CKA_EC_PARAMS.
_OID_P256: Final = bytes.fromhex("06082a8648ce3d030107")
_OID_ED25519: Final = bytes.fromhex("06032b6570")
_PRINTABLE_ED25519: Final = b"\x13\x0cedwards25519"


def _unwrap_octet_string(point: bytes, size: int) -> bytes:
    # CKA_EC_POINT is a DER OCTET STRING (PKCS#11 2.40 §2.3.3); a few tokens store the bare
    # point. Decide by the expected length, not by the first bytes, which a bare point can mimic.
    if len(point) == size + 2 and point[0] == 0x04 and point[1] == size:
        return point[2:]
    if len(point) == size:
        return point
    raise UsageError(f"PKCS#11 CKA_EC_POINT has {len(point)} bytes; expected {size} or its DER wrapping")


def _public_key(ec_params: bytes, ec_point: bytes, *, edwards: bool) -> tuple[PublicKey, Algorithm]:
    if edwards:
        if ec_params not in (_OID_ED25519, _PRINTABLE_ED25519):
            raise UsageError("PKCS#11 Edwards key is not Ed25519 (Ed448 is not supported)")
        return ed25519.Ed25519PublicKey.from_public_bytes(_unwrap_octet_string(ec_point, 32)), ED25519
    if ec_params != _OID_P256:
        raise UsageError("PKCS#11 EC key is not on P-256 (secp256r1)")
    raw = _unwrap_octet_string(ec_point, 65)  # uncompressed 0x04 || X || Y
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw), ECDSA_P256_SHA256


@dataclass(frozen=True, slots=True)
class Pkcs11Signer:
    """A :class:`~stella.signers.interface.Signer` whose private key stays on the token.

    Each ``sign`` opens and closes its own session, so the signer holds no live handle
    and can be used from any thread; the cost is one login per signature, which is
    negligible for the few signatures a bundle carries.
    """

    ref: Pkcs11Ref
    pin: str = field(repr=False)
    key_id: str
    algorithm: Algorithm
    deterministic: bool
    public_key: PublicKey = field(repr=False)

    def public_key_pem(self) -> bytes:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, data: bytes) -> bytes:
        from pkcs11 import Mechanism, ObjectClass
        from pkcs11.exceptions import PKCS11Error

        try:
            with open_session(self.ref, self.pin) as session:
                key = session.get_key(
                    object_class=ObjectClass.PRIVATE_KEY, label=self.ref.object, id=self.ref.object_id
                )
                if self.algorithm == ED25519:
                    return bytes(key.sign(data, mechanism=Mechanism.EDDSA))
                # CKM_ECDSA signs a digest and returns r || s (PKCS#11 2.40 §2.3.1);
                # cosign and openssl expect SHA-256 of the data and a DER ECDSA-Sig-Value.
                raw = bytes(key.sign(hashlib.sha256(data).digest(), mechanism=Mechanism.ECDSA))
        except PKCS11Error as exc:
            raise RemoteError(f"PKCS#11 token refused to sign: {type(exc).__name__} {exc}") from exc
        half = len(raw) // 2
        return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))


def load_pkcs11_signer(ref: str, *, environ: Mapping[str, str]) -> Pkcs11Signer:
    """Find the key named by ``ref`` on its token and read its public half.

    Raises:
        UsageError: malformed URI, wrong PIN, unsupported key type.
        NotFoundError: module, token or key not found.
    """
    from pkcs11 import Attribute, KeyType, ObjectClass
    from pkcs11.exceptions import MultipleObjectsReturned, NoSuchKey, PKCS11Error

    parsed = parse_pkcs11_uri(ref, environ=environ)
    pin = resolve_pin(parsed.pin_source, environ=environ)
    try:
        with open_session(parsed, pin) as session:
            private = session.get_key(
                object_class=ObjectClass.PRIVATE_KEY, label=parsed.object, id=parsed.object_id
            )
            public = session.get_key(
                object_class=ObjectClass.PUBLIC_KEY, label=parsed.object, id=parsed.object_id
            )
            key_type = private.key_type
            if key_type not in (KeyType.EC, KeyType.EC_EDWARDS):
                raise UsageError(
                    f"PKCS#11 key type {key_type!r} is not supported; use Ed25519 or ECDSA P-256"
                )
            try:
                public_key, algorithm = _public_key(
                    bytes(public[Attribute.EC_PARAMS]),
                    bytes(public[Attribute.EC_POINT]),
                    edwards=key_type == KeyType.EC_EDWARDS,
                )
            except ValueError as exc:  # a point that is not on the curve
                raise UsageError(f"PKCS#11 public key {parsed.object!r} is invalid: {exc}") from exc
    except NoSuchKey as exc:
        raise NotFoundError(
            f"no private+public key pair object={parsed.object!r} on token {parsed.token!r}",
            details={"object": parsed.object},
        ) from exc
    except MultipleObjectsReturned as exc:
        raise UsageError("several PKCS#11 keys match; add id=%XX to the URI") from exc
    except PKCS11Error as exc:
        raise RemoteError(f"PKCS#11 token failed: {type(exc).__name__} {exc}") from exc
    deterministic = algorithm == ED25519
    if not deterministic:
        _logger.warning(
            "PKCS#11 key %s is ECDSA: the token's nonces are random, so signatures (and the "
            "signature files of bundles) differ between runs; use an Ed25519 token key for "
            "byte-identical bundles",
            parsed.object,
        )
    return Pkcs11Signer(
        ref=parsed,
        pin=pin,
        key_id=key_id_of(public_key),
        algorithm=algorithm,
        deterministic=deterministic,
        public_key=public_key,
    )
