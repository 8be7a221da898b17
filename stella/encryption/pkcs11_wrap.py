"""Wrapping the data key with an AES-256 key that never leaves a PKCS#11 token.

This is the KMS envelope of ``aes-gcm`` mode with a hardware (or SoftHSM2) key: like a
cloud KMS's symmetric ``Encrypt``/``Decrypt``, the same token key wraps the run's data
key on the producing side and unwraps it on the receiving side, so both sides need access
to that key (the same HSM, or a token holding a copy of it) and nothing secret travels
with the bundle. The token does the cryptography (``CKM_AES_GCM``); this module only
chooses the IV and the AAD:

    wrapped = IV (12 random bytes) || AES-256-GCM(token key, IV, AAD, DEK) || tag (16 bytes)
    AAD     = "stella-export/dek/v1" 0x00 recipient-id

The recipient id is the key's PKCS#11 URI without its query (``pkcs11:token=T;object=K``):
it names the key like a KMS key id, with no module path or PIN source, so provenance
does not leak the producing machine's layout. The PIN is resolved when the reference is
parsed, from the injected environment, and is never recorded.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

from stella.encryption.interface import DecryptionError, Identity, Recipient, WrappedKey
from stella.errors import NotFoundError, RemoteError, UsageError
from stella.pkcs11_session import Pkcs11Ref, open_session, parse_pkcs11_uri, resolve_pin

__all__ = ["PKCS11_AES_KIND", "Pkcs11AesKeyWrapper", "pkcs11_identity", "pkcs11_recipient"]

PKCS11_AES_KIND: Final = "pkcs11-aes"
_SECRET_KEY: Final = "secret-key"
_IV_BYTES: Final = 12
_TAG_BITS: Final = 128
_AAD_PREFIX: Final = b"stella-export/dek/v1\x00"


@dataclass(frozen=True, slots=True)
class _TokenKey:
    ref: Pkcs11Ref
    pin: str

    @property
    def key_id(self) -> str:
        parts = [
            f"{name}={quote(value, safe='')}"
            for name, value in (
                ("token", self.ref.token),
                ("serial", self.ref.serial),
                ("object", self.ref.object),
            )
            if value is not None
        ]
        if self.ref.object_id is not None:
            parts.append("id=" + "".join(f"%{byte:02X}" for byte in self.ref.object_id))
        return "pkcs11:" + ";".join(parts)


def _parse(ref: str, environ: Mapping[str, str]) -> _TokenKey:
    parsed = parse_pkcs11_uri(ref, environ=environ, key_type=_SECRET_KEY)
    return _TokenKey(parsed, resolve_pin(parsed.pin_source, environ=environ))


def _pack(key: _TokenKey) -> bytes:
    """Recipient.material / Identity.secret: the reference as parsed (module path already
    resolved from the environment) and its PIN, so nothing is parsed or looked up again."""
    ref = key.ref
    fields = {
        "module": ref.module_path, "token": ref.token, "serial": ref.serial, "object": ref.object,
        "id": None if ref.object_id is None else ref.object_id.hex(), "pinSource": ref.pin_source, "pin": key.pin,
    }  # fmt: skip
    return json.dumps(fields, sort_keys=True).encode()


def _unpack(blob: bytes) -> _TokenKey:
    fields = json.loads(blob)
    ref = Pkcs11Ref(
        module_path=fields["module"], token=fields["token"], serial=fields["serial"], object=fields["object"],
        object_id=None if fields["id"] is None else bytes.fromhex(fields["id"]), pin_source=fields["pinSource"],
    )  # fmt: skip
    return _TokenKey(ref, fields["pin"])


def pkcs11_recipient(ref: str, *, environ: Mapping[str, str]) -> Recipient:
    """``--encrypt-to pkcs11:…``: the token key the data key is wrapped with.

    Raises:
        UsageError: a malformed reference or an unset PIN variable.
    """
    key = _parse(ref, environ)
    return Recipient(PKCS11_AES_KIND, key.key_id, _pack(key))


def pkcs11_identity(ref: str, *, environ: Mapping[str, str]) -> Identity:
    """``--identity pkcs11:…``: the same token key, to unwrap on the receiving side."""
    return Identity(PKCS11_AES_KIND, _pack(_parse(ref, environ)))


def _aad(key_id: str) -> bytes:
    return _AAD_PREFIX + key_id.encode()


def _with_key(key: _TokenKey, action: str, use: Any) -> bytes:
    from pkcs11 import KeyType, ObjectClass
    from pkcs11.exceptions import MultipleObjectsReturned, NoSuchKey, PKCS11Error

    try:
        with open_session(key.ref, key.pin) as session:
            secret = session.get_key(
                object_class=ObjectClass.SECRET_KEY,
                key_type=KeyType.AES,
                label=key.ref.object,
                id=key.ref.object_id,
            )
            return bytes(use(secret))
    except NoSuchKey as exc:
        raise NotFoundError(
            f"no AES key object={key.ref.object!r} on PKCS#11 token {key.ref.token!r}",
            details={"object": key.ref.object},
        ) from exc
    except MultipleObjectsReturned as exc:
        raise UsageError("several PKCS#11 AES keys match; add id=%XX to the URI") from exc
    except DecryptionError:
        raise
    except PKCS11Error as exc:
        raise RemoteError(f"PKCS#11 token refused to {action}: {type(exc).__name__} {exc}") from exc


class Pkcs11AesKeyWrapper:
    """The DEK sealed by ``CKM_AES_GCM`` under a token-resident AES-256 key."""

    kind = PKCS11_AES_KIND
    algorithm = "pkcs11-aes-256-gcm"

    def wrap(self, dek: bytes, recipient: Recipient) -> WrappedKey:
        from pkcs11 import Mechanism
        from pkcs11.mechanisms import GCMParams

        key = _unpack(recipient.material)
        iv = secrets.token_bytes(_IV_BYTES)
        params = GCMParams(iv, _aad(recipient.id), _TAG_BITS)
        sealed = _with_key(
            key, "wrap", lambda k: k.encrypt(dek, mechanism=Mechanism.AES_GCM, mechanism_param=params)
        )
        return WrappedKey(recipient, self.algorithm, iv + sealed)

    def recipient_of(self, identity: Identity) -> Recipient:
        key = _unpack(identity.secret)
        return Recipient(PKCS11_AES_KIND, key.key_id, identity.secret)

    def unwrap(self, wrapped: WrappedKey, identity: Identity) -> bytes:
        from pkcs11 import Mechanism
        from pkcs11.exceptions import (
            EncryptedDataInvalid,
            EncryptedDataLenRange,
            FunctionFailed,
            GeneralError,
        )
        from pkcs11.mechanisms import GCMParams

        key = _unpack(identity.secret)
        iv, sealed = wrapped.wrapped[:_IV_BYTES], wrapped.wrapped[_IV_BYTES:]
        params = GCMParams(iv, _aad(wrapped.recipient.id), _TAG_BITS)

        def decrypt(secret: Any) -> bytes:
            try:
                return bytes(secret.decrypt(sealed, mechanism=Mechanism.AES_GCM, mechanism_param=params))
            # The spec says CKR_ENCRYPTED_DATA_INVALID; SoftHSM2 answers CKR_GENERAL_ERROR.
            except (EncryptedDataInvalid, EncryptedDataLenRange, FunctionFailed, GeneralError) as exc:
                raise DecryptionError(
                    f"the wrapped data key for {wrapped.recipient.id} does not authenticate "
                    f"(tampered, or not wrapped with this token key): {type(exc).__name__}",
                    details={"recipient": wrapped.recipient.id},
                ) from exc

        return _with_key(key, "unwrap", decrypt)
