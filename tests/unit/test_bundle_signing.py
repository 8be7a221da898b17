"""The signature layer, trust roots and encryption options as pure functions (no pipeline)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from stella.bundle.encrypt import parse_encryption
from stella.bundle.paths import BLOB_SIGNATURE, MANIFEST_ENVELOPE, PROVENANCE_ENVELOPE, SIGNER_KEY
from stella.bundle.sign import check_signatures, sign_bundle
from stella.bundle.trust import (
    TRUST_ROOT_SCHEMA,
    TrustPolicy,
    build_trust_root,
    load_trust_root,
    record_seen,
    trust_key,
)
from stella.canonical import dumps, sha256_digest
from stella.errors import SignatureError, TrustError, UsageError
from stella.signers.interface import load_verifier
from stella.signers.registry import generate_key, load_signer

AGE_RECIPIENT = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"


def _bundle(folder: Path, kind: str = "ecdsa-p256", *, name: str = "k") -> tuple[dict[str, bytes], Path]:
    """A minimal signed control set: export.json, provenance.json binding it, signatures/*."""
    manifest = dumps(
        {"schema": "x", "exportId": "acme-json-raw-000000000000", "generatedAt": "2026-01-01T00:00:00Z"}
    )
    statement = dumps(
        {"subject": [{"name": "export.json", "digest": {"sha256": sha256_digest(manifest)[7:]}}]}
    )
    (folder / "export.json").write_bytes(manifest)
    (folder / "provenance.json").write_bytes(statement)
    generate_key(kind, folder / f"{name}.key", folder / f"{name}.pub", password=None)
    sign_bundle(folder, load_signer(str(folder / f"{name}.key"), environ={}))
    control = {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and (p.name in ("export.json", "provenance.json") or p.parent.name == "signatures")
    }
    return control, folder / f"{name}.pub"


def _policy(public: Path) -> TrustPolicy:
    return trust_key(public)


@pytest.mark.parametrize("kind", ["ecdsa-p256", "ed25519"])
def test_signed_control_set_is_trusted_and_byte_identical_when_resigned(kind: str, tmp_path: Path) -> None:
    control, public = _bundle(tmp_path, kind)
    check = check_signatures(control, control.keys(), trust=_policy(public))
    assert check.status == "trusted" and not check.problems
    assert check.key_id == load_verifier(public.read_bytes()).key_id
    assert (BLOB_SIGNATURE in control) is (kind == "ecdsa-p256")
    first = {name: data for name, data in control.items() if name.startswith("signatures/")}
    sign_bundle(tmp_path, load_signer(str(tmp_path / "k.key"), environ={}))
    assert all((tmp_path / name).read_bytes() == data for name, data in first.items())


def test_keyid_hint_is_unauthenticated_but_must_not_be_altered(tmp_path: Path) -> None:
    control, public = _bundle(tmp_path)
    envelope = json.loads(control[MANIFEST_ENVELOPE])
    envelope["signatures"][0]["keyid"] = "sha256:" + "0" * 64
    control[MANIFEST_ENVELOPE] = dumps(envelope)
    check = check_signatures(control, control.keys(), trust=_policy(public))
    assert [(p.path, p.code) for p in check.problems] == [(MANIFEST_ENVELOPE, SignatureError.code)]


def test_non_canonical_envelope_spelling_is_refused(tmp_path: Path) -> None:
    control, public = _bundle(tmp_path)
    envelope = json.loads(control[PROVENANCE_ENVELOPE])
    # Same payload and signature, URL-safe base64: DSSE accepts it, but we never wrote it.
    envelope["payload"] = base64.urlsafe_b64encode(base64.b64decode(envelope["payload"])).decode()
    control[PROVENANCE_ENVELOPE] = json.dumps(envelope, indent=1).encode()
    check = check_signatures(control, control.keys(), trust=_policy(public))
    assert [p.path for p in check.problems] == [PROVENANCE_ENVELOPE]


def test_other_key_is_a_trust_failure_and_integrity_mode_blames_signer_pub(tmp_path: Path) -> None:
    control, _public = _bundle(tmp_path)
    generate_key("ed25519", tmp_path / "other.key", tmp_path / "other.pub", password=None)
    check = check_signatures(control, control.keys(), trust=_policy(tmp_path / "other.pub"))
    assert [(p.path, p.code) for p in check.problems] == [(MANIFEST_ENVELOPE, TrustError.code)]
    swapped = {**control, SIGNER_KEY: (tmp_path / "other.pub").read_bytes()}
    untrusted = check_signatures(swapped, swapped.keys(), trust=None)
    assert [(p.path, p.code) for p in untrusted.problems] == [(SIGNER_KEY, SignatureError.code)]
    assert check_signatures(control, control.keys(), trust=None).status == "untrusted"


def test_unsigned_set_passes_integrity_only_and_fails_with_a_key(tmp_path: Path) -> None:
    control, public = _bundle(tmp_path)
    unsigned = {k: v for k, v in control.items() if not k.startswith("signatures/")}
    assert check_signatures(unsigned, unsigned.keys(), trust=None).status == "unsigned"
    check = check_signatures(unsigned, unsigned.keys(), trust=_policy(public))
    assert [p.path for p in check.problems] == [MANIFEST_ENVELOPE]
    partial = {k: v for k, v in control.items() if k != MANIFEST_ENVELOPE}
    assert [p.path for p in check_signatures(partial, partial.keys(), trust=None).problems] == [
        MANIFEST_ENVELOPE
    ]


def test_trust_root_is_strict_about_its_own_contents(tmp_path: Path) -> None:
    generate_key("ed25519", tmp_path / "a.key", tmp_path / "a.pub", password=None)
    root = tmp_path / "root.json"
    root.write_bytes(build_trust_root([(tmp_path / "a.pub").read_bytes()], tenants=["acme"]))
    policy = load_trust_root(root)
    key_id = load_verifier((tmp_path / "a.pub").read_bytes()).key_id
    manifest = {"tenant": "acme", "profile": {"name": "json:raw"}, "generatedAt": "2026-05-01T00:00:00Z",
                "exportId": "e1"}  # fmt: skip
    assert policy.check(manifest, key_id) == []
    assert policy.check({**manifest, "tenant": "globex"}, key_id)
    assert record_seen(root, manifest) and not record_seen(
        root, {**manifest, "generatedAt": "2026-04-01T00:00:00Z"}
    )
    reloaded = load_trust_root(root)
    assert [v.file for v in reloaded.check({**manifest, "generatedAt": "2026-04-30T23:59:59Z"}, key_id)] == [
        "export.json"
    ]
    value = json.loads(root.read_bytes())
    for broken in (
        {**value, "keys": []},
        {**value, "tenant": ["acme"]},
        {**value, "keys": [{**value["keys"][0], "keyId": "sha256:" + "1" * 64}]},
        {**value, "schema": TRUST_ROOT_SCHEMA + "x"},
    ):
        root.write_text(json.dumps(broken))
        with pytest.raises(UsageError):
            load_trust_root(root)


def test_encryption_mode_follows_the_recipients(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    pem = tmp_path / "rsa.pub"
    pem.write_bytes(
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert parse_encryption([]) is None
    assert parse_encryption([AGE_RECIPIENT]).mode == "age"  # type: ignore[union-attr]
    spec = parse_encryption([f"rsa:{pem}", AGE_RECIPIENT])
    assert spec is not None and spec.mode == "aes-gcm"
    assert [r.kind for r in spec.recipients] == ["age", "rsa-oaep"]  # sorted, whatever the order given
    with pytest.raises(UsageError):
        parse_encryption([f"rsa:{pem}"], "age")
    with pytest.raises(UsageError):
        parse_encryption([], "aes-gcm")
    with pytest.raises(UsageError):
        parse_encryption([AGE_RECIPIENT, AGE_RECIPIENT])
