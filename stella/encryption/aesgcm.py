"""``aes-gcm`` mode: each payload file as a chunked AES-256-GCM stream under the run's DEK.

One GCM call over a multi-GB file would need the whole file in memory and breaks GCM's
~64 GiB per-invocation limit; random 96-bit nonces under one long-lived key are capped at
2^32 uses (NIST SP 800-38D §8.3). So this follows the STREAM construction (Hoang et al.;
the same idea as age's payload and Tink's AES-GCM-HKDF streaming AEAD):

1. a per-file key ``HKDF-SHA256(DEK, salt=header.salt, info=KEY_INFO)`` -- a fresh 32-byte
   salt per file, so the run-wide DEK itself never encrypts anything and a (key, nonce)
   pair cannot repeat across the files of a run;
2. chunk ``i`` (plaintext ``chunk_size`` bytes, the last one shorter or empty) is sealed
   with nonce ``prefix[7] ‖ u32be(i) ‖ final`` where ``final`` is 0x01 only on the last
   chunk: dropping, reordering or appending chunks changes a nonce and fails the tag;
3. AAD ``header ‖ u32be(i) ‖ final ‖ utf8("{runId}:{relativePath}")`` binds the parameters,
   the chunk position and the file's identity: a ciphertext copied to another path or run
   does not decrypt.

On-disk layout (all integers big-endian)::

    offset size  field
    0      8     magic  b"STELLAGC"
    8      1     format version (1)
    9      1     algorithm (1 = AES-256-GCM, HKDF-SHA256 per-file key)
    10     4     chunk size in plaintext bytes (4 KiB .. 16 MiB)
    14     32    HKDF salt
    46     7     nonce prefix
    53     ...   chunks: ciphertext ‖ 16-byte tag; every chunk but the last is
                 chunk_size + 16 bytes; an empty file is one 16-byte final chunk

Memory is a few chunks whatever the file size (two read buffers, for the one-chunk
lookahead that finds the final chunk, plus one output chunk: ~4 MiB peak at the default
1 MiB chunk, asserted by a test on a 256 MiB stream). Decryption writes plaintext as chunks
authenticate, so a stream truncated at the end is only detected at the end: callers must
discard ``dst`` on error, which :func:`decrypt_file` does by publishing through a rename.
"""

from __future__ import annotations

import hashlib
import secrets
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from stella.encryption._io import publish
from stella.encryption.interface import (
    AES_GCM_MODE,
    DecryptionError,
    EncryptionPlan,
    EncryptionResult,
    Recipient,
    WrappedKey,
)
from stella.encryption.keywrap import DEK_BYTES, unwrap_with_identity, wrap_for_recipients
from stella.errors import UsageError

__all__ = [
    "AAD_FORMAT",
    "DEFAULT_CHUNK_SIZE",
    "FORMAT",
    "HEADER_SIZE",
    "KEY_INFO",
    "MAGIC",
    "NONCE_FORMAT",
    "RandomSource",
    "aesgcm_plan",
    "decrypt_file",
    "decrypt_stream",
    "encrypt_file",
    "encrypt_stream",
    "new_dek",
    "plan_for",
    "unwrap_with_identity",
    "wrap_for_recipients",
]

RandomSource = Callable[[int], bytes]
"""``n -> n random bytes``; injected so tests can make every byte of a run reproducible."""

MAGIC: Final = b"STELLAGC"
VERSION: Final = 1
ALGORITHM_AES256GCM_HKDF: Final = 1
FORMAT: Final = "stella-aesgcm-stream/v1"
KEY_INFO: Final = b"stella-export/aes-256-gcm-stream/v1"
_HEADER: Final = struct.Struct(">8sBBI32s7s")
HEADER_SIZE: Final = _HEADER.size  # 53
_SALT_BYTES: Final = 32
_PREFIX_BYTES: Final = 7
_TAG_BYTES: Final = 16
_POSITION: Final = struct.Struct(">IB")
_MAX_CHUNKS: Final = 2**32 - 1  # the counter is 32 bits; never wrap it

DEFAULT_CHUNK_SIZE: Final = 1 << 20
# The upper bound also bounds what a hostile header can make the decryptor allocate.
MIN_CHUNK_SIZE: Final = 1 << 12
MAX_CHUNK_SIZE: Final = 1 << 24

NONCE_FORMAT: Final = "noncePrefix[7] || u32be(chunkIndex) || u8(final)"
AAD_FORMAT: Final = "header[53] || u32be(chunkIndex) || u8(final) || utf8({runId}:{relativePath})"
KEY_DERIVATION: Final = "HKDF-SHA256(dek, salt=header.salt, info='stella-export/aes-256-gcm-stream/v1')"


def new_dek(random: RandomSource = secrets.token_bytes) -> bytes:
    """A fresh per-run data key. Python cannot reliably erase ``bytes``; drop references promptly."""
    dek = random(DEK_BYTES)
    if len(dek) != DEK_BYTES:
        raise UsageError(f"the random source returned {len(dek)} bytes, not {DEK_BYTES}")
    return dek


def aesgcm_plan(
    wrapped_keys: Sequence[WrappedKey], *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> EncryptionPlan:
    """The provenance record of an ``aes-gcm`` run, wrapped keys included."""
    _check_chunk_size(chunk_size)
    return EncryptionPlan(
        mode=AES_GCM_MODE,
        recipients=tuple(w.recipient for w in wrapped_keys),
        aad_format=AAD_FORMAT,
        nonce_format=NONCE_FORMAT,
        chunk_size=chunk_size,
        format=FORMAT,
        key_derivation=KEY_DERIVATION,
        wrapped_keys=tuple(wrapped_keys),
    )


def _check_chunk_size(chunk_size: int) -> None:
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise UsageError(
            f"chunk size must be between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE} bytes, got {chunk_size}"
        )


def _context(run_id: str, path: str) -> bytes:
    """``{runId}:{relativePath}``; a ':' in the run id would make two pairs share one AAD."""
    if not run_id or ":" in run_id or "\x00" in run_id:
        raise UsageError(f"run id {run_id!r} must be non-empty and contain no ':' or NUL")
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        raise UsageError(f"path {path!r} must be a relative POSIX path")
    return f"{run_id}:{path}".encode()


def _file_cipher(dek: bytes, salt: bytes) -> AESGCM:
    if len(dek) != DEK_BYTES:
        raise UsageError(f"a data key is {DEK_BYTES} bytes, got {len(dek)}")
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=KEY_INFO).derive(dek)
    return AESGCM(key)


class _Sealer:
    """Nonce and AAD of each chunk position, computed the same way on both sides."""

    def __init__(self, header: bytes, prefix: bytes, context: bytes) -> None:
        self._header = header
        self._prefix = prefix
        self._context = context

    def nonce(self, index: int, final: bool) -> bytes:
        return self._prefix + _POSITION.pack(index, final)

    def aad(self, index: int, final: bool) -> bytes:
        return self._header + _POSITION.pack(index, final) + self._context


def _read_full(src: BinaryIO, buf: bytearray) -> int:
    """Fill ``buf`` unless EOF comes first; pipes and sockets return short reads."""
    view = memoryview(buf)
    readinto: Callable[[memoryview], int | None] | None = getattr(src, "readinto", None)
    filled = 0
    while filled < len(buf):
        if readinto is not None:
            got = readinto(view[filled:]) or 0
        else:
            data = src.read(len(buf) - filled)
            got = len(data)
            view[filled : filled + got] = data
        if got == 0:
            break
        filled += got
    return filled


def encrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    *,
    dek: bytes,
    run_id: str,
    path: str,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    random: RandomSource = secrets.token_bytes,
) -> EncryptionResult:
    """Encrypt ``src`` to ``dst`` in a few chunks of memory; returns both digests.

    ``path`` is the file's bundle-relative path as it will be recorded, and is needed
    again to decrypt.
    """
    _check_chunk_size(chunk_size)
    context = _context(run_id, path)
    salt, prefix = random(_SALT_BYTES), random(_PREFIX_BYTES)
    if len(salt) != _SALT_BYTES or len(prefix) != _PREFIX_BYTES:
        # struct would silently pad or cut them, and a short prefix means reused nonces.
        raise UsageError("the random source returned the wrong number of bytes")
    header = _HEADER.pack(MAGIC, VERSION, ALGORITHM_AES256GCM_HKDF, chunk_size, salt, prefix)
    cipher = _file_cipher(dek, salt)
    sealer = _Sealer(header, prefix, context)
    plain_hash, cipher_hash = hashlib.sha256(), hashlib.sha256()
    dst.write(header)
    cipher_hash.update(header)
    total_cipher = len(header)
    current, ahead = bytearray(chunk_size), bytearray(chunk_size)
    filled = _read_full(src, current)
    index = 0
    total_plain = 0
    while True:
        if filled < chunk_size:
            final, next_filled = True, 0
        else:  # a full chunk is the last one only if nothing follows it
            next_filled = _read_full(src, ahead)
            final = next_filled == 0
        if index > _MAX_CHUNKS:
            raise UsageError(f"{path} needs more than 2^32-1 chunks; use a larger chunk size")
        data = memoryview(current)[:filled]
        sealed = cipher.encrypt(sealer.nonce(index, final), data, sealer.aad(index, final))
        plain_hash.update(data)
        cipher_hash.update(sealed)
        dst.write(sealed)
        total_plain += filled
        total_cipher += len(sealed)
        if final:
            break
        current, ahead, filled = ahead, current, next_filled
        index += 1
    return _result(plain_hash, total_plain, cipher_hash, total_cipher)


def _result(
    plain_hash: hashlib._Hash, plain_bytes: int, cipher_hash: hashlib._Hash, cipher_bytes: int
) -> EncryptionResult:
    return EncryptionResult(
        plaintext_digest="sha256:" + plain_hash.hexdigest(),
        plaintext_bytes=plain_bytes,
        ciphertext_digest="sha256:" + cipher_hash.hexdigest(),
        ciphertext_bytes=cipher_bytes,
    )


def _parse_header(header: bytes, path: str) -> tuple[int, bytes, bytes]:
    if len(header) < HEADER_SIZE:
        raise DecryptionError(f"{path}: truncated header ({len(header)} of {HEADER_SIZE} bytes)")
    magic, version, algorithm, chunk_size, salt, prefix = _HEADER.unpack(header)
    if magic != MAGIC:
        raise DecryptionError(f"{path}: not a {FORMAT} file (bad magic)")
    if version != VERSION or algorithm != ALGORITHM_AES256GCM_HKDF:
        raise DecryptionError(f"{path}: unsupported format version {version} / algorithm {algorithm}")
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise DecryptionError(f"{path}: chunk size {chunk_size} outside the accepted range")
    return chunk_size, salt, prefix


def decrypt_stream(src: BinaryIO, dst: BinaryIO, *, dek: bytes, run_id: str, path: str) -> EncryptionResult:
    """Decrypt and authenticate ``src`` into ``dst`` in two chunks of memory.

    Raises:
        DecryptionError: wrong key, run or path; a modified, truncated, reordered or
            extended stream. Plaintext already written to ``dst`` must then be discarded.
    """
    context = _context(run_id, path)
    header_buf = bytearray(HEADER_SIZE)
    header = bytes(header_buf[: _read_full(src, header_buf)])
    chunk_size, salt, prefix = _parse_header(header, path)
    cipher = _file_cipher(dek, salt)
    sealer = _Sealer(header, prefix, context)
    segment = chunk_size + _TAG_BYTES
    plain_hash, cipher_hash = hashlib.sha256(), hashlib.sha256()
    cipher_hash.update(header)
    current, ahead = bytearray(segment), bytearray(segment)
    filled = _read_full(src, current)
    index = 0
    total_plain, total_cipher = 0, len(header)
    while True:
        if index > _MAX_CHUNKS:
            raise DecryptionError(f"{path}: more chunks than the 32-bit counter allows")
        if filled < _TAG_BYTES:
            raise DecryptionError(f"{path}: truncated: chunk {index} is missing or shorter than a tag")
        if filled < segment:
            final, next_filled = True, 0
            if src.read(1):  # a short chunk must be the end of the stream
                raise DecryptionError(f"{path}: data after a short chunk {index}")
        else:
            next_filled = _read_full(src, ahead)
            final = next_filled == 0
        sealed = memoryview(current)[:filled]
        try:
            plain = cipher.decrypt(sealer.nonce(index, final), sealed, sealer.aad(index, final))
        except InvalidTag:
            raise _diagnose(cipher, sealer, sealed, index, final, path) from None
        plain_hash.update(plain)
        cipher_hash.update(sealed)
        dst.write(plain)
        total_plain += len(plain)
        total_cipher += filled
        if final:
            break
        current, ahead, filled = ahead, current, next_filled
        index += 1
    return _result(plain_hash, total_plain, cipher_hash, total_cipher)


def _diagnose(
    cipher: AESGCM, sealer: _Sealer, sealed: memoryview, index: int, final: bool, path: str
) -> DecryptionError:
    """Name the likely cause: a last chunk that authenticates as non-final means truncation."""
    if final:
        try:
            cipher.decrypt(sealer.nonce(index, False), sealed, sealer.aad(index, False))
        except InvalidTag:
            pass
        else:
            return DecryptionError(
                f"{path}: truncated: the stream ends after chunk {index}, which is not the final chunk",
                details={"path": path, "chunk": index, "reason": "truncated"},
            )
    return DecryptionError(
        f"{path}: chunk {index} does not authenticate (modified, reordered, wrong key, "
        "or encrypted for another run or path)",
        details={"path": path, "chunk": index, "reason": "authentication"},
    )


def encrypt_file(
    src: Path,
    dst: Path,
    *,
    dek: bytes,
    run_id: str,
    path: str,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    random: RandomSource = secrets.token_bytes,
) -> EncryptionResult:
    """:func:`encrypt_stream` between files; ``dst`` appears whole or not at all."""
    with src.open("rb") as reader, publish(dst) as writer:
        return encrypt_stream(
            reader, writer, dek=dek, run_id=run_id, path=path, chunk_size=chunk_size, random=random
        )


def decrypt_file(src: Path, dst: Path, *, dek: bytes, run_id: str, path: str) -> EncryptionResult:
    """:func:`decrypt_stream` between files; no plaintext is left behind if authentication fails."""
    with src.open("rb") as reader, publish(dst) as writer:
        return decrypt_stream(reader, writer, dek=dek, run_id=run_id, path=path)


def plan_for(
    dek: bytes, recipients: Sequence[Recipient], *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> EncryptionPlan:
    """Wrap ``dek`` for every recipient and return the plan to record in provenance."""
    return aesgcm_plan(wrap_for_recipients(dek, recipients), chunk_size=chunk_size)
