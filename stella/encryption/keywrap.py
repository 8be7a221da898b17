"""Wrapping the per-run data key (DEK) once per recipient: the envelope of ``aes-gcm`` mode.

Each wrap is a standard construction a far side can open without this project:

* ``age`` -- the 32-byte DEK is the whole plaintext of an age v1 file for one X25519
  recipient, so ``age -d -i key.txt wrapped.age > dek.bin`` recovers it.
* ``rsa-oaep`` -- RSA-OAEP with SHA-256 and MGF1-SHA-256, no label (PKCS #1 v1.5 is
  refused by design: Bleichenbacher padding oracles). ``openssl pkeyutl -decrypt -pkeyopt
  rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256`` opens it.
* ``pkcs11-aes`` -- AES-256-GCM by a token-resident key (:mod:`stella.encryption.pkcs11_wrap`),
  the KMS ``Encrypt``/``Decrypt`` pattern: whoever can use that token key can unwrap.

Wraps are randomised (ephemeral X25519 share, OAEP seed), which is fine: the wrapped keys
are recorded in provenance and covered by its signature. Moving a wrapped key to another
bundle gains nothing, because every file's AAD binds the run id and path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from stella.encryption._io import load_pyrage
from stella.encryption.interface import (
    AGE_KIND,
    RSA_OAEP_KIND,
    DecryptionError,
    Identity,
    KeyWrapper,
    Recipient,
    WrappedKey,
    rsa_key_id,
)
from stella.encryption.pkcs11_wrap import PKCS11_AES_KIND, Pkcs11AesKeyWrapper
from stella.errors import NotFoundError, UsageError

__all__ = [
    "DEK_BYTES",
    "WRAPPERS",
    "AgeKeyWrapper",
    "RsaOaepKeyWrapper",
    "unwrap_with_identity",
    "wrap_for_recipients",
]

DEK_BYTES: Final = 32  # AES-256


def _check_dek(dek: bytes) -> None:
    if len(dek) != DEK_BYTES:
        raise UsageError(f"a data key is {DEK_BYTES} bytes, got {len(dek)}")


class AgeKeyWrapper:
    """The DEK as the plaintext of a one-recipient age file."""

    kind = AGE_KIND
    algorithm = "age-x25519"

    def wrap(self, dek: bytes, recipient: Recipient) -> WrappedKey:
        _check_dek(dek)
        pyrage = load_pyrage()
        try:
            public = pyrage.x25519.Recipient.from_str(recipient.id)
        except pyrage.RecipientError as exc:
            raise UsageError(f"invalid age recipient {recipient.id!r}: {exc}") from exc
        return WrappedKey(recipient, self.algorithm, bytes(pyrage.encrypt(dek, [public])))

    def _identity(self, identity: Identity) -> Any:
        pyrage = load_pyrage()
        try:
            return pyrage.x25519.Identity.from_str(identity.secret.decode("ascii"))
        except (pyrage.IdentityError, UnicodeDecodeError) as exc:
            raise UsageError("the age identity is malformed") from exc

    def recipient_of(self, identity: Identity) -> Recipient:
        return Recipient(AGE_KIND, str(self._identity(identity).to_public()))

    def unwrap(self, wrapped: WrappedKey, identity: Identity) -> bytes:
        pyrage = load_pyrage()
        try:
            dek = bytes(pyrage.decrypt(wrapped.wrapped, [self._identity(identity)]))
        except (pyrage.DecryptError, OSError) as exc:
            raise DecryptionError(
                f"the age-wrapped data key for {wrapped.recipient.id} does not decrypt: {exc}",
                details={"recipient": wrapped.recipient.id},
            ) from exc
        if len(dek) != DEK_BYTES:
            raise DecryptionError(f"the age-wrapped data key is {len(dek)} bytes, not {DEK_BYTES}")
        return dek


_OAEP: Final = padding.OAEP(
    mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None
)


class RsaOaepKeyWrapper:
    """The DEK under RSA-OAEP-SHA256 for an offline RSA key."""

    kind = RSA_OAEP_KIND
    algorithm = "RSA-OAEP-256"

    def wrap(self, dek: bytes, recipient: Recipient) -> WrappedKey:
        _check_dek(dek)
        key = serialization.load_der_public_key(recipient.material)
        if not isinstance(key, rsa.RSAPublicKey):
            raise UsageError(f"recipient {recipient.id} is not an RSA public key")
        return WrappedKey(recipient, self.algorithm, key.encrypt(dek, _OAEP))

    @staticmethod
    def _private(identity: Identity) -> rsa.RSAPrivateKey:
        try:
            key = serialization.load_pem_private_key(identity.secret, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            # TypeError: the PEM is password-protected; we take unencrypted keys only.
            raise UsageError(f"the RSA identity is not an unencrypted PEM private key: {exc}") from exc
        if not isinstance(key, rsa.RSAPrivateKey):
            raise UsageError(f"the identity holds a {type(key).__name__}, not an RSA private key")
        return key

    def recipient_of(self, identity: Identity) -> Recipient:
        public = self._private(identity).public_key()
        der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return Recipient(RSA_OAEP_KIND, rsa_key_id(der), der)

    def unwrap(self, wrapped: WrappedKey, identity: Identity) -> bytes:
        try:
            dek = self._private(identity).decrypt(wrapped.wrapped, _OAEP)
        except ValueError as exc:
            raise DecryptionError(
                f"the RSA-OAEP-wrapped data key for {wrapped.recipient.id} does not decrypt",
                details={"recipient": wrapped.recipient.id},
            ) from exc
        if len(dek) != DEK_BYTES:
            raise DecryptionError(f"the RSA-wrapped data key is {len(dek)} bytes, not {DEK_BYTES}")
        return dek


WRAPPERS: Final[Mapping[str, KeyWrapper]] = {
    AGE_KIND: AgeKeyWrapper(),
    RSA_OAEP_KIND: RsaOaepKeyWrapper(),
    PKCS11_AES_KIND: Pkcs11AesKeyWrapper(),
}


def _wrapper(kind: str) -> KeyWrapper:
    try:
        return WRAPPERS[kind]
    except KeyError:
        raise UsageError(
            f"no key wrapper for recipient kind {kind!r}; known: {', '.join(sorted(WRAPPERS))}"
        ) from None


def wrap_for_recipients(dek: bytes, recipients: Iterable[Recipient]) -> list[WrappedKey]:
    """One wrapped copy of ``dek`` per recipient, sorted by ``(kind, id)`` for provenance.

    Raises:
        UsageError: no recipients, a duplicate, an unknown kind, or a DEK of the wrong size.
    """
    chosen = sorted(recipients)
    if not chosen:
        raise UsageError("encryption needs at least one recipient")
    ids = [(r.kind, r.id) for r in chosen]
    if len(set(ids)) != len(ids):
        raise UsageError("the same recipient was given twice", details={"recipients": ids})
    return [_wrapper(r.kind).wrap(dek, r) for r in chosen]


def unwrap_with_identity(wrapped_keys: Sequence[WrappedKey], identities: Iterable[Identity]) -> bytes:
    """The DEK, from the first identity whose public half matches a recorded recipient.

    Matching is by recipient id rather than by trial decryption, so a wrong key yields a
    clear "not a recipient" instead of an authentication failure.

    Raises:
        NotFoundError: none of ``identities`` is a recipient of this bundle.
        DecryptionError: the matching wrapped key was tampered with.
    """
    by_id = {w.sort_key: w for w in wrapped_keys}
    tried: list[str] = []
    for identity in identities:
        wrapper = _wrapper(identity.kind)
        recipient = wrapper.recipient_of(identity)
        match = by_id.get((recipient.kind, recipient.id))
        if match is not None:
            return wrapper.unwrap(match, identity)
        tried.append(recipient.id)
    raise NotFoundError(
        "none of the given identities is a recipient of this bundle",
        details={"tried": tried, "recipients": [w.recipient.id for w in wrapped_keys]},
    )
