"""What a key file holds, said in our words when it is the wrong kind for a flag.

Operators hand the wrong file to the wrong flag (a private key to ``--key``, an age
identity to ``--sign-key``, a PEM to ``--identity``); the crypto library's message for
that ("no BEGIN PUBLIC KEY delimiters", "MalformedFraming") does not say what to do.
:func:`describe` names the kind from its markers only -- no secret is parsed or echoed.
"""

from __future__ import annotations

__all__ = ["describe"]

_PEM_KINDS = (
    (b"-----BEGIN PUBLIC KEY-----", "a PEM public key"),
    (b"-----BEGIN RSA PUBLIC KEY-----", "a PEM RSA public key"),
    (b"-----BEGIN CERTIFICATE-----", "an X.509 certificate"),
    (b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----", "a cosign private key"),
    (b"-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----", "a cosign private key"),
    (b"-----BEGIN OPENSSH PRIVATE KEY-----", "an OpenSSH private key"),
    (b"-----BEGIN EC PRIVATE KEY-----", "a PEM EC private key"),
    (b"-----BEGIN RSA PRIVATE KEY-----", "a PEM RSA private key"),
    (b"-----BEGIN ENCRYPTED PRIVATE KEY-----", "an encrypted PEM private key"),
    (b"-----BEGIN PRIVATE KEY-----", "a PEM private key"),
)


def describe(data: bytes) -> str:
    """``"an age identity (secret key)"``, ``"a PEM private key"``, … for messages."""
    for marker, kind in _PEM_KINDS:
        if marker in data:
            return kind
    if b"AGE-SECRET-KEY-1" in data:
        return "an age identity (secret key)"
    lines = [line.strip() for line in data.splitlines() if line.strip() and not line.startswith(b"#")]
    if lines and all(line.startswith(b"age1") for line in lines):
        return "age recipients (public keys)"
    if b"-----BEGIN" in data:
        return "a PEM file of another kind"
    return "not a key file this tool knows"
