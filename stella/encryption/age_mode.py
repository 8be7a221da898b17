"""``age`` mode: every payload file becomes a standard age v1 file for X25519 recipients.

The point of this mode is that the far side needs nothing of ours: ``age -d -i key.txt
data/x.jsonl.zst.age > data/x.jsonl.zst`` opens each file. pyrage (Rust ``age`` bindings)
streams: ``encrypt_io``/``decrypt_io`` only call ``read``/``write`` on our file objects and
hold one 64 KiB age chunk at a time, so a multi-GB file costs a few MB of memory.

age output is randomised (a fresh file key and an ephemeral X25519 share per file), so an
age-encrypted bundle is never byte-identical across runs, while the plaintext digests in
the manifest are. Every call returns the ciphertext digest too: the bundle records and
signs it, which makes the encrypted bytes checkable without a key and supplies the
sender authentication age itself does not have. age has no associated data, so a file's
run and path are bound by that signed digest rather than by the cipher.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO, Final

from stella.encryption._io import load_pyrage, publish
from stella.encryption.interface import (
    AGE_KIND,
    AGE_MODE,
    DecryptionError,
    EncryptionPlan,
    EncryptionResult,
    Identity,
    Recipient,
)
from stella.errors import NotFoundError, UsageError

__all__ = [
    "AGE_CHUNK_SIZE",
    "AGE_FORMAT",
    "age_plan",
    "decrypt_file_age",
    "decrypt_stream_age",
    "encrypt_file_age",
    "encrypt_stream_age",
]

AGE_FORMAT: Final = "age-encryption.org/v1"
AGE_CHUNK_SIZE: Final = 64 * 1024
_NONCE_FORMAT: Final = (
    "age STREAM: payload key HKDF-SHA256(fileKey, nonce[16], 'payload'); u88be(chunkIndex) || u8(final)"
)
_AAD_FORMAT: Final = (
    "none (age has no associated data; run and path are bound by the signed ciphertext digest)"
)


def age_plan(recipients: Sequence[Recipient]) -> EncryptionPlan:
    """The provenance record of an ``age`` run (no wrapped keys: each file carries its stanzas)."""
    _only_age(recipients)
    return EncryptionPlan(
        mode=AGE_MODE,
        recipients=tuple(recipients),
        aad_format=_AAD_FORMAT,
        nonce_format=_NONCE_FORMAT,
        chunk_size=AGE_CHUNK_SIZE,
        format=AGE_FORMAT,
    )


def _only_age(recipients: Sequence[Recipient]) -> None:
    if not recipients:
        raise UsageError("age encryption needs at least one recipient")
    others = sorted({r.kind for r in recipients if r.kind != AGE_KIND})
    if others:
        raise UsageError(
            f"age mode encrypts to age X25519 recipients only, not {', '.join(others)}; "
            "use aes-gcm mode to wrap the key for other recipient kinds"
        )


class _Hashing:
    """A reader or writer that digests the bytes passing through, so no second pass is needed."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._hash = hashlib.sha256()
        self.bytes = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._hash.update(data)
        self.bytes += len(data)
        return data

    def write(self, data: bytes) -> int:
        self._stream.write(data)
        self._hash.update(data)
        self.bytes += len(data)
        return len(data)

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


def _result(plain: _Hashing, cipher: _Hashing) -> EncryptionResult:
    return EncryptionResult(plain.digest, plain.bytes, cipher.digest, cipher.bytes)


def encrypt_stream_age(src: BinaryIO, dst: BinaryIO, recipients: Sequence[Recipient]) -> EncryptionResult:
    """Encrypt ``src`` to ``dst`` as one binary (unarmored) age file, streaming.

    Raises:
        UsageError: no recipients, a non-age recipient, or a malformed age key.
    """
    _only_age(recipients)
    pyrage = load_pyrage()
    try:
        publics = [pyrage.x25519.Recipient.from_str(r.id) for r in sorted(set(recipients))]
    except pyrage.RecipientError as exc:
        raise UsageError(f"invalid age recipient: {exc}") from exc
    plain, cipher = _Hashing(src), _Hashing(dst)
    pyrage.encrypt_io(plain, cipher, publics)
    return _result(plain, cipher)


def _identities(identities: Sequence[Identity]) -> list[Any]:
    pyrage = load_pyrage()
    usable = [i for i in identities if i.kind == AGE_KIND]
    if not usable:
        raise NotFoundError("no age identity given to decrypt an age-encrypted file")
    try:
        return [pyrage.x25519.Identity.from_str(i.secret.decode("ascii")) for i in usable]
    except (pyrage.IdentityError, UnicodeDecodeError) as exc:
        raise UsageError("an age identity is malformed") from exc


def decrypt_stream_age(src: BinaryIO, dst: BinaryIO, identities: Sequence[Identity]) -> EncryptionResult:
    """Decrypt an age file (binary or armored) into ``dst``; returns both digests.

    Raises:
        NotFoundError: none of ``identities`` is a recipient of the file.
        DecryptionError: the file is not age, or was modified or truncated. Plaintext
            already written to ``dst`` must then be discarded.
    """
    pyrage = load_pyrage()
    keys = _identities(identities)
    cipher, plain = _Hashing(src), _Hashing(dst)
    try:
        pyrage.decrypt_io(cipher, plain, keys)
    except pyrage.DecryptError as exc:
        if "no matching keys" in str(exc).lower():
            raise NotFoundError("none of the given identities is a recipient of this age file") from exc
        raise DecryptionError(f"age decryption failed: {exc}") from exc
    except OSError as exc:  # pyrage reports payload authentication failures as I/O errors
        raise DecryptionError(f"age decryption failed (modified or truncated file): {exc}") from exc
    return _result(plain, cipher)


def encrypt_file_age(src: Path, dst: Path, recipients: Sequence[Recipient]) -> EncryptionResult:
    """:func:`encrypt_stream_age` between files; ``dst`` appears whole or not at all."""
    with Path(src).open("rb") as reader, publish(Path(dst)) as writer:
        return encrypt_stream_age(reader, writer, recipients)


def decrypt_file_age(src: Path, dst: Path, identities: Sequence[Identity]) -> EncryptionResult:
    """:func:`decrypt_stream_age` between files; nothing is left at ``dst`` if it fails."""
    with Path(src).open("rb") as reader, publish(Path(dst)) as writer:
        return decrypt_stream_age(reader, writer, identities)
