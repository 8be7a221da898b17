"""The encryption port: who a bundle is encrypted for, and what provenance records about it.

Two modes encrypt the ``data/`` subtree of a mirror bundle (BRIEF contract 7):

* ``age`` -- every file is an independent age v1 file for X25519 recipients, so the stock
  ``age -d -i key.txt`` opens it with no project code at all.
* ``aes-gcm`` -- every file is a chunked AES-256-GCM stream (:mod:`stella.encryption.aesgcm`)
  under one per-run data key (DEK); the DEK is wrapped once per recipient
  (:mod:`stella.encryption.keywrap`) and the wrapped copies are recorded in provenance, the
  KMS envelope pattern of StellaOps (``kms-envelope-pattern.md``).

Both modes are randomised (age uses ephemeral keys, the DEK and per-file salts are fresh
per run), so an encrypted bundle is *not* byte-identical across runs. What stays
reproducible is the plaintext: the manifest keeps plaintext digests, and every encryption
call also returns the ciphertext digest so the signed provenance can bind the exact bytes
shipped. Integrity is then checkable without any decryption key.

Nothing here authenticates the sender: anyone holding a recipient's *public* key can
produce a valid ciphertext (age's own documentation says the same). Authenticity comes
from the DSSE signature over the recorded ciphertext digests and wrapped keys.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, runtime_checkable

from stella.errors import BundleIntegrityError, UsageError

__all__ = [
    "AES_GCM_MODE",
    "AGE_KIND",
    "AGE_MODE",
    "MODES",
    "MODE_SUFFIXES",
    "RSA_OAEP_KIND",
    "DecryptionError",
    "EncryptionPlan",
    "EncryptionResult",
    "Identity",
    "KeyWrapper",
    "Recipient",
    "WrappedKey",
    "rsa_key_id",
]

AGE_MODE: Final = "age"
AES_GCM_MODE: Final = "aes-gcm"
MODES: Final = (AGE_MODE, AES_GCM_MODE)
# File name suffix an encrypted payload file gets, so nobody mistakes ciphertext for the
# plaintext named in the manifest.
MODE_SUFFIXES: Final[Mapping[str, str]] = {AGE_MODE: ".age", AES_GCM_MODE: ".aesgcm"}

AGE_KIND: Final = "age"
RSA_OAEP_KIND: Final = "rsa-oaep"


class DecryptionError(BundleIntegrityError):
    """Ciphertext failed authentication: tampered, truncated, reordered, or bound to another file.

    A subclass of :class:`stella.errors.BundleIntegrityError` (code ``ERR_EXPORT_CHECKSUM``):
    to the user a ciphertext that does not authenticate is a bundle whose content does not
    match what was produced, whatever the cause.
    """


@dataclass(frozen=True, order=True)
class Recipient:
    """Someone a bundle is encrypted for. ``id`` is public, stable and safe to record.

    For ``age`` the id is the ``age1…`` public key itself. For ``rsa-oaep`` it is the
    SHA-256 of the SubjectPublicKeyInfo DER (``sha256:<hex>``): a file path would leak the
    producing machine's layout into provenance, a fingerprint does not.
    """

    kind: str
    id: str
    # Public key bytes needed to wrap (SPKI DER for RSA; empty for age, whose id is the key).
    material: bytes = field(default=b"", compare=False, repr=False)

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "recipient": self.id}


@dataclass(frozen=True)
class Identity:
    """A private key able to unwrap or decrypt; ``repr`` never shows the secret."""

    kind: str
    secret: bytes = field(repr=False)


@dataclass(frozen=True)
class WrappedKey:
    """One recipient's copy of the per-run DEK, as recorded in provenance."""

    recipient: Recipient
    algorithm: str
    wrapped: bytes = field(repr=False)

    @property
    def sort_key(self) -> tuple[str, str]:
        return (self.recipient.kind, self.recipient.id)

    def to_json(self) -> dict[str, str]:
        return {
            **self.recipient.to_json(),
            "algorithm": self.algorithm,
            "wrappedKey": base64.b64encode(self.wrapped).decode("ascii"),
        }


@runtime_checkable
class KeyWrapper(Protocol):
    """Wraps the run's DEK for one recipient kind, and unwraps it with a matching identity."""

    kind: str
    algorithm: str

    def wrap(self, dek: bytes, recipient: Recipient) -> WrappedKey: ...

    def unwrap(self, wrapped: WrappedKey, identity: Identity) -> bytes: ...

    def recipient_of(self, identity: Identity) -> Recipient:
        """The public recipient an identity answers for, to pick its wrapped key without trial."""
        ...


@dataclass(frozen=True)
class EncryptionResult:
    """What one encrypted file looks like on both sides of the cipher.

    The plaintext pair goes in the manifest (reproducible); the ciphertext pair goes into
    the signed provenance so integrity is checkable without a key.
    """

    plaintext_digest: str
    plaintext_bytes: int
    ciphertext_digest: str
    ciphertext_bytes: int


@dataclass(frozen=True)
class EncryptionPlan:
    """The encryption parameters recorded in ``provenance.json`` ``environment.encryption``.

    Recipients (and wrapped keys) are sorted by ``(kind, id)`` on construction, so the
    recorded order never depends on the order options were given in.
    """

    mode: str
    recipients: tuple[Recipient, ...]
    aad_format: str
    nonce_format: str
    chunk_size: int
    format: str
    key_derivation: str = ""
    wrapped_keys: tuple[WrappedKey, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UsageError(f"unknown encryption mode {self.mode!r}; expected one of {', '.join(MODES)}")
        if not self.recipients:
            raise UsageError("encryption needs at least one recipient")
        recipients = tuple(sorted(self.recipients))
        ids = [(r.kind, r.id) for r in recipients]
        if len(set(ids)) != len(ids):
            raise UsageError("the same recipient was given twice", details={"recipients": ids})
        wrapped = tuple(sorted(self.wrapped_keys, key=lambda w: w.sort_key))
        if self.mode == AES_GCM_MODE and [w.sort_key for w in wrapped] != ids:
            raise UsageError("aes-gcm mode needs exactly one wrapped key per recipient")
        object.__setattr__(self, "recipients", recipients)
        object.__setattr__(self, "wrapped_keys", wrapped)

    def to_provenance(self) -> dict[str, Any]:
        """The JSON value for ``environment.encryption`` (camelCase like the rest of provenance)."""
        entries: list[dict[str, str]]
        if self.wrapped_keys:
            entries = [w.to_json() for w in self.wrapped_keys]
        else:
            entries = [r.to_json() for r in self.recipients]
        value: dict[str, Any] = {
            "mode": self.mode,
            "format": self.format,
            "chunkSize": self.chunk_size,
            "aadFormat": self.aad_format,
            "nonceFormat": self.nonce_format,
            "recipients": entries,
        }
        if self.key_derivation:
            value["keyDerivation"] = self.key_derivation
        return value


def rsa_key_id(spki_der: bytes) -> str:
    """The recorded id of an RSA recipient: SHA-256 over its SubjectPublicKeyInfo DER."""
    return "sha256:" + hashlib.sha256(spki_der).hexdigest()
