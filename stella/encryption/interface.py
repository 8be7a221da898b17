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
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

from stella.errors import BundleIntegrityError, StellaError, UsageError
from stella.guards.files import read_user_file

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
    "parse_identities",
    "parse_recipient",
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

# Smaller RSA moduli are factorable by well-funded attackers (NIST SP 800-57 part 1).
_MIN_RSA_BITS: Final = 2048

_ACCEPTED_FORMS: Final = (
    "age1<58 bech32 characters>   an age X25519 public key (as printed by age-keygen)",
    "rsa:PATH                     a PEM file holding an RSA public key (>= 2048 bits), wrapped with RSA-OAEP-SHA256",
    "pkcs11:token=T;object=K?module-path=LIB&pin-source=env:VAR"
    "   an AES-256 key on a PKCS#11 token (KMS envelope, CKM_AES_GCM)",
)

_BECH32_CHARSET: Final = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_AGE_RECIPIENT: Final = re.compile(r"age1[" + _BECH32_CHARSET + r"]{58}")
_AGE_IDENTITY: Final = re.compile(r"AGE-SECRET-KEY-1[" + _BECH32_CHARSET.upper() + r"]{58}")


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


def _bech32_polymod(values: Iterable[int]) -> int:
    generator = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ value
        for bit, gen in enumerate(generator):
            if (top >> bit) & 1:
                checksum ^= gen
    return checksum


def _bech32_valid(text: str, hrp: str) -> bool:
    """BIP-173 checksum and zero padding of a 32-byte payload, so a typo fails at parse time."""
    data = [_BECH32_CHARSET.index(ch) for ch in text[len(hrp) + 1 :]]
    expanded = [ord(ch) >> 5 for ch in hrp] + [0] + [ord(ch) & 31 for ch in hrp]
    # 52 five-bit groups carry 260 bits for a 256-bit key: the last 4 must be zero.
    return _bech32_polymod(expanded + data) == 1 and data[-7] & 0xF == 0


def _usage(text: str, reason: str) -> UsageError:
    forms = "\n  ".join(_ACCEPTED_FORMS)
    return UsageError(
        f"invalid recipient {text!r}: {reason}. Accepted forms:\n  {forms}",
        details={"recipient": text, "reason": reason, "accepted": list(_ACCEPTED_FORMS)},
    )


def rsa_key_id(spki_der: bytes) -> str:
    """The recorded id of an RSA recipient: SHA-256 over its SubjectPublicKeyInfo DER."""
    return "sha256:" + hashlib.sha256(spki_der).hexdigest()


def _rsa_recipient(text: str, path_text: str) -> Recipient:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    path = Path(path_text)
    try:
        pem = read_user_file(path, "RSA recipient key")
    except StellaError as exc:
        raise _usage(text, f"cannot read {path}: {exc.message}") from exc
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise _usage(text, f"{path} is not a PEM public key") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise _usage(text, f"{path} holds a {type(key).__name__}, not an RSA public key")
    if key.key_size < _MIN_RSA_BITS:
        raise _usage(text, f"RSA key of {key.key_size} bits is below the {_MIN_RSA_BITS}-bit minimum")
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return Recipient(RSA_OAEP_KIND, rsa_key_id(der), der)


def parse_recipient(text: str, *, environ: Mapping[str, str] | None = None) -> Recipient:
    """Parse a recipient given on the command line or in a profile.

    ``environ`` is where a ``pkcs11:`` reference's ``pin-source=env:VAR`` is looked up.

    Raises:
        UsageError: the text is none of the accepted forms (the message lists them), the
            age key's checksum is wrong, the RSA key is unreadable, not RSA, or too small,
            or the PKCS#11 reference is malformed.
    """
    stripped = text.strip()
    if stripped.lower().startswith("pkcs11:"):
        from stella.encryption.pkcs11_wrap import pkcs11_recipient

        return pkcs11_recipient(stripped, environ=environ or {})
    if stripped.startswith("age1"):
        if not _AGE_RECIPIENT.fullmatch(stripped):
            raise _usage(text, "an age recipient is 'age1' followed by 58 lowercase bech32 characters")
        if not _bech32_valid(stripped, "age"):
            raise _usage(text, "the age recipient's checksum does not match (a typo?)")
        return Recipient(AGE_KIND, stripped)
    if stripped.startswith("rsa:") and len(stripped) > len("rsa:"):
        return _rsa_recipient(text, stripped[len("rsa:") :])
    raise _usage(text, "unrecognised form")


def parse_identities(data: bytes, *, source: str = "identity file") -> tuple[Identity, ...]:
    """Identities from an age identity file (``AGE-SECRET-KEY-1…`` lines) or an RSA private-key PEM.

    Raises:
        UsageError: no identity found in ``data``; ``source`` names the file in the message
            (never the secret).
    """
    if b"-----BEGIN" in data:
        return (Identity(RSA_OAEP_KIND, data),)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{source} is neither a PEM private key nor an age identity file") from exc
    found: list[Identity] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not _AGE_IDENTITY.fullmatch(line):
            raise UsageError(f"{source} line {number} is not an AGE-SECRET-KEY-1… identity")
        found.append(Identity(AGE_KIND, line.encode("ascii")))
    if not found:
        raise UsageError(f"{source} holds no identity")
    return tuple(found)
