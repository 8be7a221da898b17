"""cosign's encrypted key format, checked against an independent construction.

No cosign binary is available here, so the known-answer test rebuilds a key file from
the published format description with primitives called directly (hashlib's scrypt,
libsodium's secretbox through PyNaCl's low-level binding) and requires our writer to
produce exactly those bytes and our reader to open them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import textwrap
from pathlib import Path
from types import ModuleType

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from stella.errors import NotFoundError, UsageError
from stella.signers.cosign import decrypt_cosign_key, encrypt_cosign_key
from stella.signers.interface import ECDSA_P256_SHA256, ED25519, key_id_of
from stella.signers.registry import generate_key, load_signer
from tests.support import require

nacl_bindings: ModuleType | None
try:
    from nacl import bindings as nacl_bindings
except ImportError:  # pragma: no cover - CI installs PyNaCl; require() fails there
    nacl_bindings = None


@pytest.fixture(autouse=True)
def _needs_pynacl() -> None:
    require(nacl_bindings is not None, "PyNaCl (pip install pynacl), needed by cosign keys")


PASSWORD = "correct horse battery staple"
SALT = bytes(range(32))
NONCE = bytes(range(100, 124))
# RFC 6979 A.2.5's P-256 private key: a fixed, public test scalar.
SCALAR = int("C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721", 16)


def _pkcs8(private_key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _reference_cosign_key(
    pkcs8: bytes, password: str, *, label: str = "ENCRYPTED SIGSTORE PRIVATE KEY", n: int = 32768
) -> bytes:
    """cosign.key written from the format description, independently of stella.signers.cosign."""
    key = hashlib.scrypt(password.encode(), salt=SALT, n=n, r=8, p=1, dklen=32, maxmem=256 * 1024 * 1024)
    assert nacl_bindings is not None
    sealed = nacl_bindings.crypto_secretbox(pkcs8, NONCE, key)  # MAC (16 bytes) || ciphertext
    assert len(sealed) == len(pkcs8) + 16
    salt, nonce, ciphertext = (base64.b64encode(raw).decode() for raw in (SALT, NONCE, sealed))
    body = (
        f'{{"kdf":{{"name":"scrypt","params":{{"N":{n},"r":8,"p":1}},"salt":"{salt}"}},'
        f'"cipher":{{"name":"nacl/secretbox","nonce":"{nonce}"}},"ciphertext":"{ciphertext}"}}'
    )
    lines = textwrap.wrap(base64.b64encode(body.encode()).decode(), 64)
    return ("\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"]) + "\n").encode()


def test_writer_matches_independent_construction_byte_for_byte() -> None:
    pkcs8 = _pkcs8(ec.derive_private_key(SCALAR, ec.SECP256R1()))
    ours = encrypt_cosign_key(pkcs8, password=PASSWORD.encode(), salt=SALT, nonce=NONCE)
    assert ours == _reference_cosign_key(pkcs8, PASSWORD)
    # Pinned once from the reference construction: catches a drift in any primitive's output.
    assert (
        hashlib.sha256(ours).hexdigest() == "1c4e15d1bb34df1b2b52c01214a163a8236ec76ea51d6610761d73c83b1a8519"
    )


@pytest.mark.parametrize("label", ["ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY"])
def test_reader_opens_independently_built_keys(label: str, tmp_path: Path) -> None:
    private_key = ec.derive_private_key(SCALAR, ec.SECP256R1())
    path = tmp_path / "cosign.key"
    path.write_bytes(_reference_cosign_key(_pkcs8(private_key), PASSWORD, label=label))
    signer = load_signer(f"cosign://{path}", environ={"COSIGN_PASSWORD": PASSWORD})
    assert signer.algorithm == ECDSA_P256_SHA256
    assert signer.key_id == key_id_of(private_key.public_key())
    # A plain path is recognised by the PEM label, with the same password variable.
    assert load_signer(str(path), environ={"COSIGN_PASSWORD": PASSWORD}).key_id == signer.key_id


def test_round_trip_via_generate_key_and_signing(tmp_path: Path) -> None:
    key, pub = tmp_path / "cosign.key", tmp_path / "cosign.pub"
    key_id = generate_key("ecdsa-p256", key, pub, password=b"pw", key_format="cosign")
    assert key.read_bytes().startswith(b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    assert all(len(line) <= 64 for line in key.read_text().splitlines())
    signer = load_signer(f"cosign://{key}", environ={"COSIGN_PASSWORD": "pw"})
    assert signer.key_id == key_id
    public_key = serialization.load_pem_public_key(pub.read_bytes())
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(signer.sign(b"blob"), b"blob", ec.ECDSA(hashes.SHA256()))


def test_ed25519_and_empty_password(tmp_path: Path) -> None:
    private_key = ed25519.Ed25519PrivateKey.generate()
    path = tmp_path / "cosign.key"
    path.write_bytes(encrypt_cosign_key(_pkcs8(private_key), password=b""))
    signer = load_signer(f"cosign://{path}", environ={"COSIGN_PASSWORD": ""})
    assert signer.algorithm == ED25519
    assert signer.key_id == key_id_of(private_key.public_key())


def test_password_override_variable(tmp_path: Path) -> None:
    path = tmp_path / "cosign.key"
    path.write_bytes(encrypt_cosign_key(_pkcs8(ec.generate_private_key(ec.SECP256R1())), password=b"other"))
    load_signer(
        f"cosign://{path}?password-env=SIGNING_PW", environ={"SIGNING_PW": "other", "COSIGN_PASSWORD": "x"}
    )


def test_failures(tmp_path: Path) -> None:
    pkcs8 = _pkcs8(ec.derive_private_key(SCALAR, ec.SECP256R1()))
    path = tmp_path / "cosign.key"
    path.write_bytes(_reference_cosign_key(pkcs8, PASSWORD))
    with pytest.raises(UsageError, match="COSIGN_PASSWORD"):
        load_signer(f"cosign://{path}", environ={})
    with pytest.raises(UsageError, match="cannot decrypt"):
        load_signer(f"cosign://{path}", environ={"COSIGN_PASSWORD": "wrong"})
    with pytest.raises(NotFoundError):
        load_signer(f"cosign://{tmp_path}/absent.key", environ={"COSIGN_PASSWORD": PASSWORD})

    plain = tmp_path / "plain.pem"
    plain.write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(UsageError, match="without a ENCRYPTED SIGSTORE"):
        load_signer(f"cosign://{plain}", environ={"COSIGN_PASSWORD": PASSWORD})


def _mutate(data: bytes, change: dict[str, object]) -> bytes:
    lines = data.decode().splitlines()
    document = json.loads(base64.b64decode("".join(lines[1:-1])))
    for dotted, value in change.items():
        target = document
        *parents, leaf = dotted.split(".")
        for part in parents:
            target = target[part]
        target[leaf] = value
    body = textwrap.wrap(base64.b64encode(json.dumps(document).encode()).decode(), 64)
    return "\n".join([lines[0], *body, lines[-1]]).encode()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kdf.params.N": 1 << 22}, "accepted presets"),  # refused before deriving: no 4 GiB scrypt
        ({"kdf.params.N": 32768.0}, "accepted presets"),
        ({"kdf.name": "pbkdf2"}, "kdf"),
        ({"cipher.name": "aes-gcm"}, "cipher"),
        ({"cipher.nonce": "AAAA"}, "24 bytes"),
        ({"ciphertext": "!!!"}, "base64"),
        ({"ciphertext": base64.b64encode(b"\x00" * 80).decode()}, "cannot decrypt"),
    ],
)
def test_malformed_cosign_keys_are_refused(change: dict[str, object], message: str) -> None:
    pkcs8 = _pkcs8(ec.derive_private_key(SCALAR, ec.SECP256R1()))
    data = _mutate(_reference_cosign_key(pkcs8, PASSWORD), change)
    with pytest.raises(UsageError, match=message):
        decrypt_cosign_key(data, password=PASSWORD.encode())
