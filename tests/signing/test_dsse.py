"""DSSE envelopes: the spec's PAE vector, independent verification, and every refusal."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from stella.attest.dsse import open_envelope, pae, sign_envelope, verify_envelope
from stella.canonical import dumps
from stella.errors import SignatureError, TrustError, UsageError
from stella.signers.interface import Signer, Verifier, load_verifier
from stella.signers.registry import generate_key, load_signer
from tests.support import require_tool

PAYLOAD = b'{"_type":"https://in-toto.io/Statement/v1"}'
TYPE = "application/vnd.in-toto+json"


def _key(tmp_path: Path, name: str, kind: str = "ed25519") -> tuple[Signer, Verifier]:
    generate_key(kind, tmp_path / name, tmp_path / f"{name}.pub", password=None)  # type: ignore[arg-type]
    return load_signer(str(tmp_path / name), environ={}), load_verifier(
        (tmp_path / f"{name}.pub").read_bytes()
    )


def _spec_pae(payload_type: str, body: bytes) -> bytes:
    """Written from protocol.md, not imported: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1" + b" " + str(len(t)).encode() + b" " + t + b" " + str(len(body)).encode() + b" " + body


def test_pae_matches_the_spec_vector() -> None:
    # protocol.md's worked example.
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert pae("t", b"") == b"DSSEv1 1 t 0 "
    assert pae("ü", b"x") == "DSSEv1 2 ü 1 x".encode()  # LEN counts UTF-8 bytes


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa-p256"])
def test_envelope_verifies_independently_of_the_module(kind: str, tmp_path: Path) -> None:
    signer, _ = _key(tmp_path, "k", kind)
    envelope = sign_envelope(PAYLOAD, TYPE, signers=[signer])
    assert set(envelope) == {"payload", "payloadType", "signatures"}
    assert base64.b64decode(envelope["payload"], validate=True) == PAYLOAD
    assert envelope["signatures"][0]["keyid"] == signer.key_id

    # Verify the way any DSSE implementation would: spec PAE + cryptography.
    public_key = serialization.load_pem_public_key((tmp_path / "k.pub").read_bytes())
    message = _spec_pae(envelope["payloadType"], base64.b64decode(envelope["payload"]))
    sig = base64.b64decode(envelope["signatures"][0]["sig"])
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        public_key.verify(sig, message)
    else:
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        public_key.verify(sig, message, ec.ECDSA(hashes.SHA256()))


def test_ecdsa_envelope_signature_verifies_with_openssl(tmp_path: Path) -> None:
    openssl = require_tool("openssl")
    signer, _ = _key(tmp_path, "k", "ecdsa-p256")
    envelope = sign_envelope(PAYLOAD, TYPE, signers=[signer])
    (tmp_path / "pae.bin").write_bytes(_spec_pae(TYPE, PAYLOAD))
    (tmp_path / "sig.der").write_bytes(base64.b64decode(envelope["signatures"][0]["sig"]))
    result = subprocess.run(
        [openssl, "dgst", "-sha256", "-verify", "k.pub", "-signature", "sig.der", "pae.bin"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_envelopes_are_byte_identical_across_runs(tmp_path: Path) -> None:
    ed, _ = _key(tmp_path, "ed")
    ec_signer, _ = _key(tmp_path, "ec", "ecdsa-p256")
    first = dumps(sign_envelope(PAYLOAD, TYPE, signers=[ed, ec_signer]))
    again = dumps(
        sign_envelope(PAYLOAD, TYPE, signers=[load_signer(str(tmp_path / "ed"), environ={}), ec_signer])
    )
    assert first == again


def test_round_trip_returns_the_verified_bytes(tmp_path: Path) -> None:
    signer, verifier = _key(tmp_path, "k")
    envelope = json.loads(dumps(sign_envelope(PAYLOAD, TYPE, signers=[signer])))
    assert verify_envelope(envelope, verifiers=[verifier], payload_type=TYPE) == PAYLOAD
    opened = open_envelope(envelope, verifiers=[verifier])
    assert opened.key_ids == (signer.key_id,) and opened.payload_type == TYPE


def test_url_safe_and_unpadded_base64_are_accepted(tmp_path: Path) -> None:
    signer, verifier = _key(tmp_path, "k")
    payload = b"\xfb\xff\xfe" * 7 + b"?"  # encodes with '+' and '/' in the standard alphabet
    envelope = sign_envelope(payload, TYPE, signers=[signer])
    envelope["payload"] = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    envelope["signatures"][0]["sig"] = envelope["signatures"][0]["sig"].rstrip("=")
    assert verify_envelope(envelope, verifiers=[verifier]) == payload


def test_tampered_payload_is_a_signature_error(tmp_path: Path) -> None:
    signer, verifier = _key(tmp_path, "k")
    envelope = sign_envelope(PAYLOAD, TYPE, signers=[signer])
    envelope["payload"] = base64.b64encode(PAYLOAD.replace(b"v1", b"v2")).decode()
    with pytest.raises(SignatureError, match="altered"):
        verify_envelope(envelope, verifiers=[verifier])


def test_changed_payload_type_breaks_the_signature(tmp_path: Path) -> None:
    signer, verifier = _key(tmp_path, "k")
    envelope = sign_envelope(PAYLOAD, TYPE, signers=[signer])
    envelope["payloadType"] = "application/json"
    with pytest.raises(SignatureError):
        verify_envelope(envelope, verifiers=[verifier])


def test_unexpected_payload_type_is_refused_even_when_signed(tmp_path: Path) -> None:
    signer, verifier = _key(tmp_path, "k")
    envelope = sign_envelope(PAYLOAD, "application/json", signers=[signer])
    assert verify_envelope(envelope, verifiers=[verifier]) == PAYLOAD
    with pytest.raises(SignatureError, match="expected"):
        verify_envelope(envelope, verifiers=[verifier], payload_type=TYPE)


def test_wrong_key_is_a_trust_error(tmp_path: Path) -> None:
    signer, _ = _key(tmp_path, "signer")
    _, other = _key(tmp_path, "other")
    envelope = sign_envelope(PAYLOAD, TYPE, signers=[signer])
    with pytest.raises(TrustError, match="none of which is trusted"):
        verify_envelope(envelope, verifiers=[other])


def test_keyid_is_only_a_hint(tmp_path: Path) -> None:
    signer, verifier = _key(tmp_path, "signer")
    _, other = _key(tmp_path, "other")
    envelope = sign_envelope(PAYLOAD, TYPE, signers=[signer])
    # A valid signature under a trusted key passes whatever its keyid says...
    envelope["signatures"][0]["keyid"] = other.key_id
    assert verify_envelope(envelope, verifiers=[other, verifier]) == PAYLOAD
    del envelope["signatures"][0]["keyid"]
    assert verify_envelope(envelope, verifiers=[verifier]) == PAYLOAD
    # ...and claiming a trusted keyid earns an untrusted signature nothing.
    envelope["signatures"][0]["keyid"] = other.key_id
    with pytest.raises(SignatureError):
        verify_envelope(envelope, verifiers=[other])


def test_empty_verifier_set_is_refused(tmp_path: Path) -> None:
    signer, _ = _key(tmp_path, "k")
    envelope = sign_envelope(PAYLOAD, TYPE, signers=[signer])
    with pytest.raises(UsageError, match="at least one trusted key"):
        verify_envelope(envelope, verifiers=[])
    with pytest.raises(UsageError):
        sign_envelope(PAYLOAD, TYPE, signers=[])


def test_threshold_counts_distinct_keys(tmp_path: Path) -> None:
    first, first_verifier = _key(tmp_path, "a")
    second, second_verifier = _key(tmp_path, "b", "ecdsa-p256")
    both = [first_verifier, second_verifier]
    envelope = sign_envelope(PAYLOAD, TYPE, signers=[first, second])
    assert open_envelope(envelope, verifiers=both, threshold=2).key_ids == tuple(
        sorted([first.key_id, second.key_id])
    )
    single = sign_envelope(PAYLOAD, TYPE, signers=[first])
    single["signatures"] = single["signatures"] * 2  # the same key twice is still one key
    with pytest.raises(TrustError, match="1 distinct trusted key"):
        verify_envelope(single, verifiers=both, threshold=2)
    with pytest.raises(UsageError, match="threshold"):
        verify_envelope(envelope, verifiers=both, threshold=3)
    with pytest.raises(UsageError, match="threshold"):
        verify_envelope(envelope, verifiers=both, threshold=0)
    with pytest.raises(UsageError, match="twice"):
        sign_envelope(PAYLOAD, TYPE, signers=[first, first])


def _valid(tmp_path: Path) -> tuple[dict[str, Any], Verifier]:
    signer, verifier = _key(tmp_path, "k")
    return sign_envelope(PAYLOAD, TYPE, signers=[signer]), verifier


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: e.update(payload="not base64!"), "payload is not base64"),
        (lambda e: e.update(payload="abcde"), "impossible base64 length"),
        (lambda e: e.update(payload="ab+_"), "mixes"),
        (lambda e: e.pop("payload"), "payload is not a string"),
        (lambda e: e.update(payloadType=""), "payloadType"),
        (lambda e: e.pop("payloadType"), "payloadType"),
        (lambda e: e.update(signatures=[]), "non-empty list"),
        (lambda e: e.update(signatures={"sig": "x"}), "non-empty list"),
        (lambda e: e["signatures"].__setitem__(0, "sig"), "not an object"),
        (lambda e: e["signatures"][0].update(sig="%%%"), r"signatures\[0\].sig is not base64"),
        (lambda e: e["signatures"][0].pop("sig"), r"signatures\[0\].sig"),
        (lambda e: e["signatures"][0].update(keyid=7), "keyid"),
        (lambda e: e.update(signatures=e["signatures"] * 40), "at most"),
    ],
)
def test_malformed_envelopes_say_what_is_wrong(mutate: Any, message: str, tmp_path: Path) -> None:
    envelope, verifier = _valid(tmp_path)
    mutate(envelope)
    with pytest.raises(SignatureError, match=message):
        verify_envelope(envelope, verifiers=[verifier])


def test_non_object_envelope(tmp_path: Path) -> None:
    _, verifier = _valid(tmp_path)
    with pytest.raises(SignatureError, match="not a JSON object"):
        verify_envelope([], verifiers=[verifier])  # type: ignore[arg-type]
