"""Key references: PEM files, encrypted PEM, environment variables; determinism; errors."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from stella.errors import ConflictError, NotFoundError, SignatureError, UsageError
from stella.signers.interface import ECDSA_P256_SHA256, ED25519, Signer, load_verifier
from stella.signers.pem import signer_from_private_key
from stella.signers.registry import KEY_REF_SCHEMES, generate_key, load_signer
from tests.signing.conftest import KeyFiles

DATA = b'{"schema":"stella.export/v1"}'


def _independent_verify(public_pem: bytes, signature: bytes, data: bytes) -> None:
    """Verify with cryptography directly, not through the module under test."""
    public_key = serialization.load_pem_public_key(public_pem)
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        public_key.verify(signature, data)
    else:
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))


@pytest.mark.parametrize(
    ("fixture", "algorithm"), [("ecdsa_key", ECDSA_P256_SHA256), ("ed25519_key", ED25519)]
)
def test_plain_path_and_file_ref_load_the_same_key(
    fixture: str, algorithm: str, request: pytest.FixtureRequest
) -> None:
    files: KeyFiles = request.getfixturevalue(fixture)
    by_path = load_signer(str(files.private), environ={})
    by_uri = load_signer(f"file://{files.private}", environ={})
    assert isinstance(by_path, Signer)
    assert by_path.algorithm == algorithm == by_uri.algorithm
    assert by_path.deterministic is True
    assert by_path.key_id == by_uri.key_id == load_verifier(files.public.read_bytes()).key_id
    assert by_path.key_id.startswith("sha256:") and len(by_path.key_id) == 71
    assert by_path.public_key_pem() == files.public.read_bytes()
    signature = by_path.sign(DATA)
    _independent_verify(files.public.read_bytes(), signature, DATA)
    load_verifier(files.public.read_bytes()).verify(DATA, signature)
    assert "PRIVATE" not in repr(by_path) and by_path.key_id in repr(by_path)


@pytest.mark.parametrize("kind", ["ecdsa-p256", "ed25519"])
def test_signatures_are_byte_identical_across_calls_and_loads(kind: str, tmp_path: Path) -> None:
    generate_key(kind, tmp_path / "k", tmp_path / "k.pub", password=None)
    first = load_signer(str(tmp_path / "k"), environ={})
    second = load_signer(str(tmp_path / "k"), environ={})
    signatures = {first.sign(DATA), first.sign(DATA), second.sign(DATA)}
    assert len(signatures) == 1
    assert first.sign(DATA + b" ") not in signatures


def test_ecdsa_is_rfc6979_known_answer() -> None:
    """RFC 6979 appendix A.2.5: P-256, SHA-256, messages "sample" and "test"."""
    x = int("C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721", 16)
    signer = signer_from_private_key(ec.derive_private_key(x, ec.SECP256R1()))
    vectors = {
        b"sample": (
            "EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716",
            "F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8",
        ),
        b"test": (
            "F1ABB023518351CD71D881567B1EA663ED3EFCF6C5132B354F28D3B0B7D38367",
            "019F4113742A2B14BD25926B49C649155F267E60D3814B4C0CC84250E46F0083",
        ),
    }
    for message, (r_hex, s_hex) in vectors.items():
        assert decode_dss_signature(signer.sign(message)) == (int(r_hex, 16), int(s_hex, 16))


def test_encrypted_pem_needs_the_password_from_the_named_variable(tmp_path: Path) -> None:
    key, pub = tmp_path / "enc.key", tmp_path / "enc.pub"
    key_id = generate_key("ecdsa-p256", key, pub, password=b"s3cret")
    assert b"ENCRYPTED PRIVATE KEY" in key.read_bytes()
    signer = load_signer(f"file://{key}?password-env=KEY_PW", environ={"KEY_PW": "s3cret"})
    assert signer.key_id == key_id
    _independent_verify(pub.read_bytes(), signer.sign(DATA), DATA)

    with pytest.raises(UsageError, match="password-env"):
        load_signer(str(key), environ={})
    with pytest.raises(UsageError, match="password"):
        load_signer(f"file://{key}?password-env=KEY_PW", environ={"KEY_PW": "wrong"})
    with pytest.raises(UsageError, match="KEY_PW is not set"):
        load_signer(f"file://{key}?password-env=KEY_PW", environ={})


def test_env_ref_reads_pem_or_base64_pem_from_the_injected_environment(ecdsa_key: KeyFiles) -> None:
    pem = ecdsa_key.private.read_text()
    expected = load_verifier(ecdsa_key.public.read_bytes()).key_id
    assert load_signer("env://SIGNING_KEY", environ={"SIGNING_KEY": pem}).key_id == expected
    b64 = base64.b64encode(pem.encode()).decode()
    assert load_signer("env://SIGNING_KEY", environ={"SIGNING_KEY": b64}).key_id == expected
    with pytest.raises(NotFoundError, match="SIGNING_KEY"):
        load_signer("env://SIGNING_KEY", environ={})
    with pytest.raises(UsageError, match="neither a PEM key"):
        load_signer("env://SIGNING_KEY", environ={"SIGNING_KEY": "not a key"})
    with pytest.raises(UsageError, match="not an environment variable name"):
        load_signer("env://BAD-NAME", environ={})


def test_env_ref_with_encrypted_pem(tmp_path: Path) -> None:
    generate_key("ed25519", tmp_path / "k", tmp_path / "k.pub", password=b"pw")
    environ = {"K": (tmp_path / "k").read_text(), "PW": "pw"}
    signer = load_signer("env://K?password-env=PW", environ=environ)
    assert signer.algorithm == ED25519


def test_errors_name_what_is_wrong(tmp_path: Path, ecdsa_key: KeyFiles) -> None:
    with pytest.raises(NotFoundError):
        load_signer(str(tmp_path / "missing.pem"), environ={})
    with pytest.raises(NotFoundError):
        load_signer(f"file://{tmp_path}/missing.pem", environ={})
    with pytest.raises(UsageError) as unknown:
        load_signer("awskms:///alias/x", environ={})
    for form in KEY_REF_SCHEMES:
        assert form in unknown.value.message
    with pytest.raises(UsageError, match="unknown option"):
        load_signer(f"file://{ecdsa_key.private}?pasword-env=X", environ={})
    with pytest.raises(UsageError):
        load_signer("", environ={})
    with pytest.raises(UsageError, match="directory"):
        load_signer(str(tmp_path), environ={})


@pytest.mark.parametrize(
    "private_key",
    [rsa.generate_private_key(public_exponent=65537, key_size=2048), ec.generate_private_key(ec.SECP384R1())],
    ids=["rsa", "p384"],
)
def test_unsupported_key_types_are_refused(private_key: object, tmp_path: Path) -> None:
    assert isinstance(private_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    path = tmp_path / "k.pem"
    path.write_bytes(
        private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(UsageError, match="not supported"):
        load_signer(str(path), environ={})
    with pytest.raises(UsageError, match="not supported"):
        load_verifier(
            private_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )


def test_generate_key_never_overwrites_and_keeps_private_key_private(tmp_path: Path) -> None:
    key, pub = tmp_path / "k", tmp_path / "k.pub"
    generate_key("ed25519", key, pub, password=None)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    before = key.read_bytes()
    with pytest.raises(ConflictError):
        generate_key("ed25519", key, tmp_path / "other.pub", password=None)
    assert key.read_bytes() == before
    with pytest.raises(UsageError):
        generate_key("rsa", tmp_path / "r", tmp_path / "r.pub", password=None)


def test_verifier_rejects_bad_signatures(ed25519_key: KeyFiles, ecdsa_key: KeyFiles) -> None:
    for files in (ed25519_key, ecdsa_key):
        signer = load_signer(str(files.private), environ={})
        verifier = load_verifier(files.public.read_bytes())
        signature = signer.sign(DATA)
        with pytest.raises(SignatureError):
            verifier.verify(DATA + b"x", signature)
        with pytest.raises(SignatureError):
            verifier.verify(DATA, b"\x00" * len(signature))
    with pytest.raises(UsageError, match="not a PEM public key"):
        load_verifier(b"garbage")


def test_key_reference_opens_what_generate_key_wrote(tmp_path: Path) -> None:
    from stella.signers.registry import key_reference

    environ = {"KEY_PASSWORD": "s3cret", "COSIGN_PASSWORD": "s3cret"}
    cases = [("pkcs8", None, None), ("pkcs8", b"s3cret", "KEY_PASSWORD"), ("cosign", b"s3cret", None)]
    for n, (key_format, password, password_env) in enumerate(cases):
        private, public = tmp_path / f"k{n}.key", tmp_path / f"k{n}.pub"
        key_id = generate_key("ecdsa-p256", private, public, password=password, key_format=key_format)
        ref = key_reference(private, key_format=key_format, password_env=password_env)
        assert load_signer(ref, environ=environ).key_id == key_id, ref
