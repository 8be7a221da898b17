"""PKCS#11 keys on a real SoftHSM2 token (skipped locally without SoftHSM2, failing in CI)."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from stella.attest.cosign_blob import sign_blob
from stella.attest.dsse import sign_envelope, verify_envelope
from stella.errors import NotFoundError, UsageError
from stella.pkcs11_session import MODULE_ENV_VAR
from stella.signers.interface import ECDSA_P256_SHA256, ED25519, load_verifier
from stella.signers.pkcs11 import Pkcs11Signer
from stella.signers.registry import load_signer
from tests.signing.conftest import Token
from tests.support import require_tool

DATA = b"export.json bytes"


def test_ed25519_on_token_is_deterministic_and_verifies(softhsm_token: Token) -> None:
    signer = load_signer(softhsm_token.ref("ed"), environ=softhsm_token.pin_env)
    assert isinstance(signer, Pkcs11Signer)
    assert signer.algorithm == ED25519 and signer.deterministic
    assert softhsm_token.pin_env["HSM_PIN"] not in repr(signer)
    first, second = signer.sign(DATA), signer.sign(DATA)
    assert first == second and len(first) == 64
    public_key = serialization.load_pem_public_key(signer.public_key_pem())
    assert isinstance(public_key, ed25519.Ed25519PublicKey)
    public_key.verify(first, DATA)  # cryptography directly, not our verifier
    assert load_verifier(signer.public_key_pem()).key_id == signer.key_id


def test_ecdsa_on_token_is_randomised_but_valid(softhsm_token: Token, tmp_path: Path) -> None:
    signer = load_signer(softhsm_token.ref("ec"), environ=softhsm_token.pin_env)
    assert signer.algorithm == ECDSA_P256_SHA256
    assert signer.deterministic is False  # the token draws its own nonces
    first, second = signer.sign(DATA), signer.sign(DATA)
    assert first != second
    public_key = serialization.load_pem_public_key(signer.public_key_pem())
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    for signature in (first, second):
        public_key.verify(signature, DATA, ec.ECDSA(hashes.SHA256()))

    # The HSM key also makes cosign-style blob signatures that openssl accepts.
    openssl = require_tool("openssl")
    (tmp_path / "pub.pem").write_bytes(signer.public_key_pem())
    (tmp_path / "data").write_bytes(DATA)
    (tmp_path / "sig.der").write_bytes(base64.b64decode(sign_blob(DATA, signer=signer)))
    result = subprocess.run(
        [openssl, "dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig.der", "data"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and "Verified OK" in result.stdout


def test_token_key_signs_dsse(softhsm_token: Token) -> None:
    signer = load_signer(softhsm_token.ref("ed"), environ=softhsm_token.pin_env)
    envelope = sign_envelope(DATA, "application/vnd.in-toto+json", signers=[signer])
    verifier = load_verifier(signer.public_key_pem())
    assert verify_envelope(envelope, verifiers=[verifier]) == DATA


def test_select_by_id_and_module_from_environment(softhsm_token: Token) -> None:
    by_label = load_signer(softhsm_token.ref("ed"), environ=softhsm_token.pin_env)
    ref = f"pkcs11:token={softhsm_token.label};id=%01?pin-source=env:HSM_PIN"
    by_id = load_signer(ref, environ={**softhsm_token.pin_env, MODULE_ENV_VAR: softhsm_token.module})
    assert by_id.key_id == by_label.key_id


def test_pin_from_file(softhsm_token: Token, tmp_path: Path) -> None:
    pin_file = tmp_path / "pin"
    pin_file.write_text(softhsm_token.pin_env["HSM_PIN"] + "\n")
    ref = f"pkcs11:token={softhsm_token.label};object=ed?module-path={softhsm_token.module}&pin-source=file:{pin_file}"
    assert load_signer(ref, environ={}).algorithm == ED25519


def test_failures_are_classified(softhsm_token: Token, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="PIN rejected"):
        load_signer(softhsm_token.ref("ed"), environ={"HSM_PIN": "0000"})
    with pytest.raises(UsageError, match="HSM_PIN is not set"):
        load_signer(softhsm_token.ref("ed"), environ={})
    with pytest.raises(NotFoundError, match="no private"):
        load_signer(softhsm_token.ref("absent"), environ=softhsm_token.pin_env)
    with pytest.raises(NotFoundError, match="no PKCS#11 token"):
        load_signer(
            softhsm_token.ref("ed").replace(softhsm_token.label, "other-token"), environ=softhsm_token.pin_env
        )
    with pytest.raises(NotFoundError, match="module"):
        load_signer(
            softhsm_token.ref("ed", **{"module-path": str(tmp_path / "nope.so")}),
            environ=softhsm_token.pin_env,
        )


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("pkcs11:token=t;object=o?module-path=/m.so&pin-value=1234", "pin-value is refused"),
        ("pkcs11:token=t;object=o;slot-id=1?module-path=/m.so&pin-source=env:P", "slot-id"),
        ("pkcs11:token=t?module-path=/m.so&pin-source=env:P", "selects no key"),
        ("pkcs11:token=t;object=o?pin-source=env:P", "module-path"),
        ("pkcs11:token=t;object=o?module-path=/m.so", "pin-source"),
        ("pkcs11:token=t;object=o;type=public?module-path=/m.so&pin-source=env:P", "private"),
        ("pkcs11:token=t;object=o?module-path=/m.so&pin-source=vault:x", "env:VAR or file:PATH"),
    ],
)
def test_uri_syntax_errors_need_no_token(ref: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        load_signer(ref, environ={"P": "1"})


def test_ec_point_accepts_der_wrapped_and_bare_points() -> None:
    from stella.signers.pkcs11 import _unwrap_octet_string

    bare = bytes([0x04, 63]) + bytes(63)  # a bare point whose first bytes look like DER
    assert _unwrap_octet_string(bare, 65) == bare
    assert _unwrap_octet_string(b"\x04\x41" + bare, 65) == bare
    assert _unwrap_octet_string(b"\x04\x20" + bytes(32), 32) == bytes(32)
    with pytest.raises(UsageError, match="CKA_EC_POINT"):
        _unwrap_octet_string(bytes(10), 32)


def test_token_aes_key_wraps_the_data_key(softhsm_token: Token) -> None:
    """The KMS envelope: CKM_AES_GCM by a non-extractable token key, AAD bound to the recipient."""
    from dataclasses import replace

    from stella.encryption.interface import DecryptionError, WrappedKey
    from stella.encryption.keywrap import unwrap_with_identity, wrap_for_recipients
    from stella.encryption.pkcs11_wrap import pkcs11_identity
    from stella.encryption.recipients import parse_recipient

    env = softhsm_token.pin_env
    recipient = parse_recipient(softhsm_token.ref("wrap"), environ=env)
    assert recipient.to_json() == {"kind": "pkcs11-aes", "recipient": "pkcs11:token=stella-test;object=wrap"}
    assert env["HSM_PIN"] not in repr(recipient)
    dek = bytes(range(32))
    (first,) = wrap_for_recipients(dek, [recipient])
    (second,) = wrap_for_recipients(dek, [recipient])
    assert first.wrapped != second.wrapped and len(first.wrapped) == 12 + 32 + 16  # fresh IV each time
    identity = pkcs11_identity(softhsm_token.ref("wrap"), environ=env)
    assert unwrap_with_identity([first], [identity]) == dek
    flipped = bytearray(first.wrapped)
    flipped[20] ^= 1
    with pytest.raises(DecryptionError):
        unwrap_with_identity([WrappedKey(first.recipient, first.algorithm, bytes(flipped))], [identity])
    # A wrapped key relabelled for another token key fails its AAD, even if that key could decrypt.
    other = parse_recipient(softhsm_token.ref("other-wrap"), environ=env)
    moved = WrappedKey(replace(other), first.algorithm, first.wrapped)
    with pytest.raises(DecryptionError):
        unwrap_with_identity([moved], [pkcs11_identity(softhsm_token.ref("other-wrap"), environ=env)])
    with pytest.raises(NotFoundError):
        unwrap_with_identity([first], [pkcs11_identity(softhsm_token.ref("other-wrap"), environ=env)])
    with pytest.raises(UsageError, match="PIN variable"):
        parse_recipient(softhsm_token.ref("wrap"), environ={})
    # The module path may come from the environment; it is resolved once, at parse time.
    bare = f"pkcs11:token={softhsm_token.label};object=wrap?pin-source=env:HSM_PIN"
    from_env = parse_recipient(bare, environ={**env, MODULE_ENV_VAR: softhsm_token.module})
    (wrapped,) = wrap_for_recipients(dek, [from_env])
    assert (
        unwrap_with_identity(
            [wrapped], [pkcs11_identity(bare, environ={**env, MODULE_ENV_VAR: softhsm_token.module})]
        )
        == dek
    )
    with pytest.raises(NotFoundError, match="no AES key"):
        wrap_for_recipients(dek, [parse_recipient(softhsm_token.ref("ed"), environ=env)])
