"""cosign-style blob signatures, checked by the openssl CLI as an independent verifier."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from stella.attest.cosign_blob import sign_blob, verify_blob
from stella.errors import SignatureError, UsageError
from stella.signers.registry import generate_key, load_signer
from tests.support import require_tool

BLOB = b'{"schema":"stella.export/v1","contents":[]}\n'


def _openssl_verify(
    folder: Path, blob: bytes, signature_b64: bytes, public: Path
) -> subprocess.CompletedProcess[str]:
    openssl = require_tool("openssl")
    # What an operator types: base64 -d blob.sig > sig.der; openssl dgst -sha256 -verify ...
    (folder / "blob").write_bytes(blob)
    (folder / "sig.der").write_bytes(base64.b64decode(signature_b64))
    return subprocess.run(
        [openssl, "dgst", "-sha256", "-verify", str(public), "-signature", "sig.der", "blob"],
        cwd=folder,
        capture_output=True,
        text=True,
    )


def test_openssl_accepts_the_blob_signature(tmp_path: Path) -> None:
    generate_key("ecdsa-p256", tmp_path / "cosign.key", tmp_path / "cosign.pub", password=None)
    signer = load_signer(str(tmp_path / "cosign.key"), environ={})
    signature = sign_blob(BLOB, signer=signer)
    assert signature == base64.b64encode(
        base64.b64decode(signature, validate=True)
    )  # std, padded, no newline
    accepted = _openssl_verify(tmp_path, BLOB, signature, tmp_path / "cosign.pub")
    assert accepted.returncode == 0 and "Verified OK" in accepted.stdout
    # The independent checker does reject a changed blob (so the check above means something).
    rejected = _openssl_verify(tmp_path, BLOB + b" ", signature, tmp_path / "cosign.pub")
    assert rejected.returncode != 0
    verify_blob(BLOB, signature, public_pem=(tmp_path / "cosign.pub").read_bytes())
    verify_blob(BLOB, signature.decode() + "\n", public_pem=(tmp_path / "cosign.pub").read_bytes())


def test_blob_signatures_are_deterministic(tmp_path: Path) -> None:
    generate_key("ecdsa-p256", tmp_path / "k", tmp_path / "k.pub", password=None)
    signer = load_signer(str(tmp_path / "k"), environ={})
    assert sign_blob(BLOB, signer=signer) == sign_blob(
        BLOB, signer=load_signer(str(tmp_path / "k"), environ={})
    )


def test_openssl_made_signature_verifies_with_our_verifier(tmp_path: Path) -> None:
    """The reverse direction: a signature openssl makes (random nonce) passes verify_blob."""
    openssl = require_tool("openssl")
    generate_key("ecdsa-p256", tmp_path / "k", tmp_path / "k.pub", password=None)
    (tmp_path / "blob").write_bytes(BLOB)
    subprocess.run(
        [openssl, "dgst", "-sha256", "-sign", "k", "-out", "sig.der", "blob"], cwd=tmp_path, check=True
    )
    signature = base64.b64encode((tmp_path / "sig.der").read_bytes())
    verify_blob(BLOB, signature, public_pem=(tmp_path / "k.pub").read_bytes())


def test_refusals(tmp_path: Path) -> None:
    generate_key("ecdsa-p256", tmp_path / "k", tmp_path / "k.pub", password=None)
    generate_key("ecdsa-p256", tmp_path / "o", tmp_path / "o.pub", password=None)
    generate_key("ed25519", tmp_path / "ed", tmp_path / "ed.pub", password=None)
    signer = load_signer(str(tmp_path / "k"), environ={})
    public = (tmp_path / "k.pub").read_bytes()
    signature = sign_blob(BLOB, signer=signer)

    with pytest.raises(UsageError, match="ECDSA P-256"):
        sign_blob(BLOB, signer=load_signer(str(tmp_path / "ed"), environ={}))
    with pytest.raises(SignatureError):
        verify_blob(BLOB + b"x", signature, public_pem=public)
    with pytest.raises(SignatureError):
        verify_blob(BLOB, signature, public_pem=(tmp_path / "o.pub").read_bytes())
    with pytest.raises(SignatureError, match="not base64"):
        verify_blob(BLOB, b"@@@@", public_pem=public)
    with pytest.raises(SignatureError, match="empty"):
        verify_blob(BLOB, b"", public_pem=public)
    with pytest.raises(SignatureError, match="malformed"):
        verify_blob(BLOB, base64.b64encode(b"not DER"), public_pem=public)
    with pytest.raises(UsageError, match="P-256"):
        verify_blob(BLOB, signature, public_pem=(tmp_path / "ed.pub").read_bytes())
    with pytest.raises(UsageError, match="not a PEM public key"):
        verify_blob(BLOB, signature, public_pem=b"nope")
