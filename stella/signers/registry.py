"""Key references to signers: the one table of key sources, and the keys this project makes.

A key reference names where the private key lives; :func:`load_signer` dispatches on
its scheme so the CLI, the API and schedules accept the same strings:

====================================  =====================================================
``PATH`` or ``file://PATH``           PEM file (PKCS#8, SEC1 or cosign's encrypted format);
                                      ``?password-env=VAR`` names the password variable
``env://VAR``                         PEM text (or base64 of it) in an environment variable;
                                      ``?password-env=VAR`` as above
``cosign://PATH``                     cosign's ``ENCRYPTED SIGSTORE PRIVATE KEY``; the
                                      password comes from ``COSIGN_PASSWORD``
``pkcs11:token=T;object=O?...``       a key that never leaves a PKCS#11 token (RFC 7512)
====================================  =====================================================

Adding a key source is one module implementing :class:`stella.signers.interface.Signer`
and one entry in ``_LOADERS`` (plus its spelling in :data:`KEY_REF_SCHEMES`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final, Literal, TypeAlias

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from stella.errors import ConflictError, UsageError
from stella.signers import cosign
from stella.signers.env import load_env_signer
from stella.signers.interface import Signer, key_id_of
from stella.signers.pem import load_cosign_ref, load_file_ref, load_pem_signer
from stella.signers.pkcs11 import load_pkcs11_signer

__all__ = ["KEY_REF_SCHEMES", "KeyKind", "generate_key", "key_reference", "load_signer"]

KeyKind: TypeAlias = Literal["ecdsa-p256", "ed25519"]

# Shown in the UsageError for an unknown scheme, so users see every valid spelling.
KEY_REF_SCHEMES: Final = (
    "PATH",
    "file://PATH[?password-env=VAR]",
    "env://VAR[?password-env=VAR]",
    "cosign://PATH[?password-env=VAR]",
    "pkcs11:token=LABEL;object=LABEL[?module-path=PATH&pin-source=env:VAR]",
)

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(//)?")

# ``scheme://…`` references -> their loader, called as ``loader(ref, environ=environ)``.
_LOADERS: Final[Mapping[str, Callable[..., Signer]]] = {
    "file": load_file_ref,
    "env": load_env_signer,
    "cosign": load_cosign_ref,
}


def load_signer(ref: str, *, environ: Mapping[str, str]) -> Signer:
    """Open the private key a key reference names (syntax in the module docstring).

    ``environ`` is passed in, never read from ``os.environ`` here, so that passwords and
    PINs come from what the caller chose to expose.

    Raises:
        UsageError: unknown scheme, malformed reference, wrong password, unsupported key.
        NotFoundError: the file, variable, token or object does not exist.
    """
    if not ref:
        raise UsageError("empty key reference", details={"validSchemes": list(KEY_REF_SCHEMES)})
    match = _SCHEME.match(ref)
    scheme = match.group(1).lower() if match else None
    if scheme == "pkcs11":
        return load_pkcs11_signer(ref, environ=environ)
    if match is None or match.group(2) is None:
        # No scheme, or "name:rest" without "//": a plain filesystem path.
        return load_pem_signer(Path(ref), password_env=None, environ=environ)
    loader = _LOADERS.get(scheme or "")
    if loader is None:
        raise UsageError(
            f"unknown key reference scheme {scheme!r}; valid forms: {', '.join(KEY_REF_SCHEMES)}",
            details={"scheme": scheme, "validSchemes": list(KEY_REF_SCHEMES)},
        )
    return loader(ref, environ=environ)


def key_reference(private: Path, *, key_format: Literal["pkcs8", "cosign"], password_env: str | None) -> str:
    """The ``--sign-key`` reference that opens a key :func:`generate_key` wrote."""
    if key_format == "cosign":
        return f"cosign://{private}"
    return f"file://{private}?password-env={password_env}" if password_env else str(private)


def generate_key(
    kind: KeyKind,
    private_out: Path,
    public_out: Path,
    *,
    password: bytes | None,
    key_format: Literal["pkcs8", "cosign"] = "pkcs8",
) -> str:
    """Create a key pair, write the private key (mode 0600) and public PEM, return the key id.

    ``key_format="cosign"`` writes cosign's encrypted ``cosign.key`` (then ``password``
    is required, as in ``cosign generate-key-pair``). Existing files are never overwritten,
    so a typo cannot destroy a production key.

    Raises:
        UsageError: unknown kind, or cosign format without a password.
        ConflictError: either output already exists.
    """
    private_key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    if kind == "ecdsa-p256":
        private_key = ec.generate_private_key(ec.SECP256R1())
    elif kind == "ed25519":
        private_key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise UsageError(f"unknown key kind {kind!r}; use 'ecdsa-p256' or 'ed25519'")
    for path in (private_out, public_out):
        if path.exists():
            raise ConflictError(
                f"refusing to overwrite existing key file {path}", details={"path": str(path)}
            )

    pkcs8_der = private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    if key_format == "cosign":
        if password is None:
            raise UsageError("cosign-format keys are always encrypted: give a password")
        private_bytes = cosign.encrypt_cosign_key(pkcs8_der, password=password)
    elif key_format == "pkcs8":
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
        )
        private_bytes = private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
    else:
        raise UsageError(f"unknown key format {key_format!r}; use 'pkcs8' or 'cosign'")

    public_key = private_key.public_key()
    public_pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write_new(private_out, private_bytes, mode=0o600)
    _write_new(public_out, public_pem, mode=0o644)
    return key_id_of(public_key)


def _write_new(path: Path, data: bytes, *, mode: int) -> None:
    # O_EXCL: the existence check above and the create are one step for the file system.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError as exc:
        raise ConflictError(f"refusing to overwrite existing key file {path}") from exc
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
