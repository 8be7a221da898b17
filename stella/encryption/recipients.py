"""Who a bundle is encrypted for and who may open it: the strings users give, parsed.

The one place that maps recipient and identity forms to the encryption port's types and
to their implementations (age, RSA-OAEP, a PKCS#11 token key), so the interface stays a
leaf and every surface accepts the same spellings:

* recipients (``--encrypt-to``): ``age1…``, ``rsa:PUBLIC.pem``, ``pkcs11:…``;
* identities (``--identity``): an age identity file, an RSA private-key PEM, or the
  ``pkcs11:…`` AES key the bundle was encrypted to.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final

from stella.encryption.interface import AGE_KIND, RSA_OAEP_KIND, Identity, Recipient, rsa_key_id
from stella.encryption.pkcs11_wrap import pkcs11_identity, pkcs11_recipient
from stella.errors import StellaError, UsageError
from stella.guards.files import read_user_file

__all__ = ["load_identities", "parse_identities", "parse_recipient"]

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


def load_identities(names: Sequence[str], *, environ: Mapping[str, str]) -> tuple[Identity, ...]:
    """Identities from ``--identity`` values: ``pkcs11:…`` references or identity files.

    ``environ`` supplies a token reference's PIN and module (never ``os.environ`` here).

    Raises:
        NotFoundError: an identity file does not exist.
        UsageError: a file holds no identity, or a token reference is malformed.
    """
    identities: list[Identity] = []
    for name in names:
        if name.lower().startswith("pkcs11:"):
            identities.append(pkcs11_identity(name, environ=environ))
            continue
        identities.extend(parse_identities(read_user_file(name, "identity file"), source=name))
    return tuple(identities)
