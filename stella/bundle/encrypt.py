"""Encrypting a bundle's ``data/`` payload, and turning an encrypted bundle back into plaintext.

Why the split between manifest and provenance (BRIEF contract 7): ``export.json`` keeps
the *plaintext* path, digest, size and record count of every payload file, so an
encrypted export and its decryption describe the same evidence and the decrypted
payload is byte-identical to an unencrypted export's. What was actually shipped -- each
ciphertext's path, digest and size, the mode, the sorted recipients and (``aes-gcm``)
the wrapped data keys -- goes into ``provenance.json``, which is signed: integrity of
the encrypted bytes is then checkable with no private key at all, and age's missing
sender authentication is supplied by the signature (research §3.1).

The request records only the mode and the recipients (:class:`EncryptionSpec`), which
enter ``export.json``'s ``options``: an encrypted export therefore gets its own export
id and can never be mistaken for, or published over, the plaintext one.

Encryption runs in the driver after the pipeline has written the payload, before
provenance and signatures; files are independent, so they are encrypted in parallel
threads (the ciphers release the GIL while they work).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

from stella.encryption.interface import (
    AES_GCM_MODE,
    AGE_KIND,
    AGE_MODE,
    MODE_SUFFIXES,
    MODES,
    DecryptionError,
    EncryptionResult,
    Identity,
    Recipient,
    WrappedKey,
)
from stella.encryption.recipients import parse_recipient
from stella.errors import BundleIntegrityError, UsageError

__all__ = [
    "AUTO_MODE",
    "ENCRYPTED_ROOT",
    "CiphertextFile",
    "EncryptionRecord",
    "EncryptionSpec",
    "OpenedEncryption",
    "ciphertext_files",
    "decrypt_member",
    "encrypt_payload",
    "encryption_section",
    "open_encryption",
    "parse_encryption",
]

AUTO_MODE: Final = "auto"
ENCRYPTED_ROOT: Final = "data/"
# Files are few and large; more threads than this only contend for the disk.
_MAX_THREADS: Final = 8


@dataclass(frozen=True)
class EncryptionSpec:
    """What the user asked for: a concrete mode and the recipients, sorted (picklable)."""

    mode: str
    recipients: tuple[Recipient, ...]

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UsageError(f"unknown encryption mode {self.mode!r}; use one of {', '.join(MODES)}")
        if not self.recipients:
            raise UsageError("encryption needs at least one recipient (--encrypt-to)")
        ordered = tuple(sorted(self.recipients))
        if len({(r.kind, r.id) for r in ordered}) != len(ordered):
            raise UsageError("the same recipient was given twice")
        if self.mode == AGE_MODE and any(r.kind != AGE_KIND for r in ordered):
            raise UsageError(
                "--encryption-mode age encrypts to age1… recipients only; use aes-gcm for rsa: recipients"
            )
        object.__setattr__(self, "recipients", ordered)

    def to_manifest(self) -> dict[str, Any]:
        """The ``options.encryption`` value of ``export.json`` (part of the export id)."""
        return {"mode": self.mode, "recipients": [r.to_json() for r in self.recipients]}


def parse_encryption(
    recipients: Sequence[str], mode: str = AUTO_MODE, *, environ: Mapping[str, str] | None = None
) -> EncryptionSpec | None:
    """``--encrypt-to`` values and ``--encryption-mode`` to a spec; None when no recipient is given.

    ``auto`` (the default) picks ``age`` when every recipient is an age key -- the far
    side then needs only the stock ``age`` CLI -- and ``aes-gcm`` otherwise, the one mode
    that can wrap the data key for RSA and PKCS#11 recipients. ``environ`` resolves a
    PKCS#11 recipient's PIN source.

    Raises:
        UsageError: a malformed recipient, or a mode that cannot serve the recipients.
    """
    if not recipients:
        if mode != AUTO_MODE:
            raise UsageError("--encryption-mode needs at least one --encrypt-to recipient")
        return None
    parsed = tuple(parse_recipient(text, environ=environ) for text in recipients)
    if mode == AUTO_MODE:
        mode = AGE_MODE if all(r.kind == AGE_KIND for r in parsed) else AES_GCM_MODE
    return EncryptionSpec(mode=mode, recipients=parsed)


@dataclass(frozen=True, order=True)
class CiphertextFile:
    """One encrypted payload file as provenance records it."""

    path: str
    plaintext: str
    digest: str
    bytes: int

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "plaintext": self.plaintext, "digest": self.digest, "bytes": self.bytes}


@dataclass(frozen=True)
class EncryptionRecord:
    """What an encryption step produced: the plan's provenance entry and every ciphertext."""

    plan: Mapping[str, Any]
    files: tuple[CiphertextFile, ...]

    def to_provenance(self) -> dict[str, Any]:
        return {**self.plan, "files": [f.to_json() for f in sorted(self.files)]}


def _payload_paths(manifest: Mapping[str, Any]) -> list[str]:
    return sorted(
        str(entry["path"]) for entry in manifest["contents"] if str(entry["path"]).startswith(ENCRYPTED_ROOT)
    )


def encrypt_payload(staging: Path, manifest: Mapping[str, Any], spec: EncryptionSpec) -> EncryptionRecord:
    """Replace every ``data/`` file of the manifest by its ciphertext ``<path>.age|.aesgcm``.

    The ``aes-gcm`` AAD binds the export id (the run) and the plaintext path; age has no
    AAD, so there the signed ciphertext digest is what binds a file to its place.
    """
    from stella.encryption import aesgcm, age_mode

    run_id = str(manifest["exportId"])
    suffix = MODE_SUFFIXES[spec.mode]
    paths = _payload_paths(manifest)
    dek: bytes | None = None
    if spec.mode == AES_GCM_MODE:
        dek = aesgcm.new_dek()
        plan = aesgcm.plan_for(dek, spec.recipients).to_provenance()
    else:
        plan = age_mode.age_plan(spec.recipients).to_provenance()

    expected = {str(e["path"]): (str(e["digest"]), int(e["bytes"])) for e in manifest["contents"]}

    def one(path: str) -> CiphertextFile:
        src, dst = staging / path, staging / (path + suffix)
        if dek is not None:
            result = aesgcm.encrypt_file(src, dst, dek=dek, run_id=run_id, path=path)
        else:
            result = age_mode.encrypt_file_age(src, dst, spec.recipients)
        # The ciphers hash the plaintext as it streams by: check it is what the manifest
        # promises, so nothing that changed after the pipeline wrote it gets sealed.
        if (result.plaintext_digest, result.plaintext_bytes) != expected[path]:
            dst.unlink()
            raise BundleIntegrityError(
                f"{path} changed between the pipeline and encryption: it no longer matches export.json",
                details={"file": path},
            )
        src.unlink()
        return CiphertextFile(path + suffix, path, result.ciphertext_digest, result.ciphertext_bytes)

    threads = max(1, min(len(paths), os.cpu_count() or 1, _MAX_THREADS))
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="encrypt") as pool:
        files = tuple(sorted(pool.map(one, paths)))
    return EncryptionRecord(plan=plan, files=files)


def encryption_section(provenance: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """``internalParameters.encryption`` of a parsed ``provenance.json``, if the bundle is encrypted."""
    try:
        internal = provenance["predicate"]["buildDefinition"]["internalParameters"]
    except (KeyError, TypeError):
        return None
    section = internal.get("encryption") if isinstance(internal, Mapping) else None
    return section if isinstance(section, Mapping) else None


def ciphertext_files(provenance: Mapping[str, Any]) -> dict[str, CiphertextFile]:
    """Ciphertext path → record, from provenance; empty for an unencrypted bundle.

    Raises:
        BundleIntegrityError: the encryption section is malformed.
    """
    section = encryption_section(provenance)
    if section is None:
        return {}
    try:
        files = [
            CiphertextFile(str(f["path"]), str(f["plaintext"]), str(f["digest"]), int(f["bytes"]))
            for f in section["files"]
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleIntegrityError(
            f"provenance.json encryption section is malformed: {exc}", details={"file": "provenance.json"}
        ) from exc
    return {f.path: f for f in files}


def _wrapped_keys(section: Mapping[str, Any]) -> list[WrappedKey]:
    import base64

    keys = []
    for entry in section.get("recipients", []):
        if "wrappedKey" in entry:
            recipient = Recipient(str(entry["kind"]), str(entry["recipient"]))
            keys.append(WrappedKey(recipient, str(entry["algorithm"]), base64.b64decode(entry["wrappedKey"])))
    return keys


@dataclass
class OpenedEncryption:
    """The decryption state of one bundle: its mode and, for aes-gcm, the unwrapped DEK."""

    mode: str
    run_id: str
    identities: tuple[Identity, ...]
    dek: bytes | None


def open_encryption(
    provenance: Mapping[str, Any], manifest: Mapping[str, Any], identities: Sequence[Identity]
) -> OpenedEncryption:
    """Pick the mode from provenance and, for aes-gcm, unwrap the DEK with the first matching identity.

    Raises:
        NotFoundError: no identity is a recipient of the bundle.
        DecryptionError: the wrapped key was tampered with.
        UsageError: the bundle is not encrypted.
    """
    from stella.encryption.keywrap import unwrap_with_identity

    section = encryption_section(provenance)
    if section is None:
        raise UsageError("the bundle is not encrypted: nothing to decrypt")
    mode = str(section.get("mode"))
    if mode not in MODES:
        raise DecryptionError(f"provenance.json names unknown encryption mode {mode!r}")
    dek = unwrap_with_identity(_wrapped_keys(section), identities) if mode == AES_GCM_MODE else None
    return OpenedEncryption(
        mode=mode, run_id=str(manifest["exportId"]), identities=tuple(identities), dek=dek
    )


def decrypt_member(
    opened: OpenedEncryption, record: CiphertextFile, src: BinaryIO, dst: BinaryIO
) -> EncryptionResult:
    """Decrypt one ciphertext stream; the caller compares the result with the manifest.

    Raises:
        DecryptionError: the ciphertext does not authenticate; ``dst`` must be discarded.
        NotFoundError: (age) none of the identities is a recipient.
    """
    from stella.encryption import aesgcm, age_mode

    if opened.dek is not None:
        return aesgcm.decrypt_stream(src, dst, dek=opened.dek, run_id=opened.run_id, path=record.plaintext)
    return age_mode.decrypt_stream_age(src, dst, opened.identities)
