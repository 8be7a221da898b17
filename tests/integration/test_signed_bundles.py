"""Signed bundles of every profile: independent checks, determinism, trust roots, PKCS#11.

"Independent" means the check is written here from the spec or done by another tool:
``openssl dgst -verify`` for the cosign-style blob signature, the DSSE pre-authentication
encoding (secure-systems-lab/dsse protocol.md) and an in-toto/SLSA reading of the
statement done with ``cryptography`` and ``hashlib`` only -- never the project's verifier.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from tests.integration.signed_fixtures import (
    LATE_AS_OF,
    PROFILE_NAMES,
    BundlePair,
    Keys,
    export_bundle,
    profile_args,
)
from tests.services.registry import Registry
from tests.support import require_tool, stella_cli, stella_in_process, tree_digests

MANIFEST_TYPE = "application/vnd.stellaops.export.manifest+json"
INTOTO_TYPE = "application/vnd.in-toto+json"


def _pae(payload_type: bytes, body: bytes) -> bytes:
    # protocol.md: PAE(type, body) = "DSSEv1" + SP + LEN(type) + SP + type + SP + LEN(body) + SP + body
    return b" ".join(
        [b"DSSEv1", str(len(payload_type)).encode(), payload_type, str(len(body)).encode(), body]
    )


def _spki_sha256(public: object) -> str:
    assert isinstance(public, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey)
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def _check_envelope(
    envelope_path: Path, expected_type: str, expected_payload: bytes, public_pem: Path
) -> None:
    envelope = json.loads(envelope_path.read_bytes())
    body = base64.b64decode(envelope["payload"])
    assert envelope["payloadType"] == expected_type
    assert body == expected_payload, "the envelope must carry the exact file bytes"
    public = serialization.load_pem_public_key(public_pem.read_bytes())
    [signature] = envelope["signatures"]
    assert signature["keyid"] == _spki_sha256(public)
    message = _pae(expected_type.encode(), body)
    sig = base64.b64decode(signature["sig"])
    if isinstance(public, ed25519.Ed25519PublicKey):
        public.verify(sig, message)
    else:
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(sig, message, ec.ECDSA(hashes.SHA256()))


def _check_statement(bundle: Path, ledger: Path) -> None:
    """in-toto Statement v1 + SLSA v1, read by hand and compared with the real files."""
    statement = json.loads((bundle / "provenance.json").read_bytes())
    manifest = json.loads((bundle / "export.json").read_bytes())
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    assert subjects["export.json"] == hashlib.sha256((bundle / "export.json").read_bytes()).hexdigest()
    for entry in manifest["contents"]:
        assert "sha256:" + subjects[entry["path"]] == entry["digest"]
    build = statement["predicate"]["buildDefinition"]
    assert build["externalParameters"]["profile"] == manifest["profile"]
    assert build["externalParameters"]["selectors"] == manifest["selectors"]
    assert build["externalParameters"]["tenant"] == "acme"
    # Named by content (<seq>-<content>.avro -> <content>.avro): ingestion order does not show.
    segments = {
        p.name.split("-", 1)[1]: hashlib.sha256(p.read_bytes()).hexdigest() for p in ledger.rglob("*.avro")
    }
    dependencies = {d["uri"].rsplit("/", 1)[1]: d["digest"]["sha256"] for d in build["resolvedDependencies"]}
    assert dependencies == segments, "resolvedDependencies must name every ledger segment with its digest"
    text = json.dumps(statement)
    assert "startedOn" not in text and "finishedOn" not in text and str(bundle.parent) not in text


@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_openssl_accepts_the_blob_signature(
    profile: str, signed_bundles: dict[str, BundlePair], signing_keys: Keys, tmp_path: Path
) -> None:
    openssl = require_tool("openssl")
    bundle = signed_bundles[profile].late
    der = tmp_path / "export.sig.der"
    der.write_bytes(base64.b64decode((bundle / "signatures" / "export.sig").read_bytes()))
    result = subprocess.run(
        [openssl, "dgst", "-sha256", "-verify", str(signing_keys.ec_pub), "-signature", str(der),
         str(bundle / "export.json")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0 and "Verified OK" in result.stdout, result.stdout + result.stderr
    # ...and rejects it over a different manifest.
    other = signed_bundles[profile].early / "export.json"
    refused = subprocess.run(
        [openssl, "dgst", "-sha256", "-verify", str(signing_keys.ec_pub), "-signature", str(der), str(other)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert refused.returncode != 0


def _check_envelopes(bundle: Path, public: Path) -> None:
    """Both DSSE envelopes of a bundle, each over its own file and payload type."""
    for name, payload_type in (("export", MANIFEST_TYPE), ("provenance", INTOTO_TYPE)):
        signed = (bundle / f"{name}.json").read_bytes()
        _check_envelope(bundle / "signatures" / f"{name}.dsse.json", payload_type, signed, public)


@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_dsse_envelopes_and_statement_check_out_from_the_spec(
    profile: str, signed_bundles: dict[str, BundlePair], signing_keys: Keys, ledgers: tuple[Path, Path]
) -> None:
    bundle = signed_bundles[profile].late
    _check_envelopes(bundle, signing_keys.ec_pub)
    _check_statement(bundle, ledgers[1])
    assert (bundle / "signatures" / "signer.pub").read_bytes() == signing_keys.ec_pub.read_bytes()


def test_ed25519_envelopes_check_out_and_carry_no_blob_signature(
    encrypted_bundles: dict[str, BundlePair], signing_keys: Keys
) -> None:
    bundle = encrypted_bundles["age"].late
    _check_envelopes(bundle, signing_keys.ed_pub)
    assert not (bundle / "signatures" / "export.sig").exists()


@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_signed_bundle_and_archive_are_byte_identical_across_runs(
    profile: str,
    signed_bundles: dict[str, BundlePair],
    signing_keys: Keys,
    ledgers: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    first = signed_bundles[profile].late
    common = ("--sign-key", str(signing_keys.ec_key), "--archive", "--as-of", LATE_AS_OF)
    again = export_bundle(
        ledgers[1], tmp_path, profile, *common, *profile_args(profile, ledgers[1], tmp_path, *common)
    )
    assert tree_digests(again) == tree_digests(first)
    archive = f"{first.name}.tar.zst"
    assert (tmp_path / archive).read_bytes() == (first.parent / archive).read_bytes()
    # `stella export archive` writes the very same bytes as `run --archive`.
    stella_cli("export", "archive", str(again), "--out", str(tmp_path / "again.tar.zst"), check=True)
    assert (tmp_path / "again.tar.zst").read_bytes() == (first.parent / archive).read_bytes()


def test_ed25519_signed_bundles_are_byte_identical(
    signing_keys: Keys, ledgers: tuple[Path, Path], tmp_path: Path
) -> None:
    runs = [
        export_bundle(
            ledgers[0], tmp_path / name, "json:raw", "--sign-key", str(signing_keys.ed_key), "--archive"
        )
        for name in ("a", "b")
    ]
    assert tree_digests(runs[0]) == tree_digests(runs[1])
    assert tree_digests(tmp_path / "a") == tree_digests(tmp_path / "b")  # archives included


def test_verify_outcomes_through_the_console_script(
    signed_bundles: dict[str, BundlePair], signing_keys: Keys, ledgers: tuple[Path, Path], tmp_path: Path
) -> None:
    signed = signed_bundles["json:raw"].late
    ok = stella_cli("export", "verify", str(signed), "--key", str(signing_keys.ec_pub))
    assert ok.returncode == 0 and "trusted via --key" in ok.stdout, ok.stdout + ok.stderr
    archive = signed.parent / f"{signed.name}.tar.zst"
    assert stella_cli("export", "verify", str(archive), "--key", str(signing_keys.ec_pub)).returncode == 0
    # Signed, checked without a key: integrity only, and it says so.
    integrity = stella_cli("export", "verify", str(signed))
    assert integrity.returncode == 0 and "NOT checked against a trusted key" in integrity.stdout
    # Another trusted key: exit 5.
    wrong = stella_cli("export", "verify", str(signed), "--key", str(signing_keys.ed_pub))
    assert wrong.returncode == 5 and "signatures/export.dsse.json" in wrong.stderr
    # Unsigned bundle, key required: exit 4 naming the missing envelope.
    unsigned = export_bundle(ledgers[0], tmp_path, "json:raw")
    assert not (unsigned / "signatures").exists()
    refused = stella_cli("export", "verify", str(unsigned), "--key", str(signing_keys.ec_pub), "--json")
    assert refused.returncode == 4
    assert json.loads(refused.stdout)["error"]["details"]["file"] == "signatures/export.dsse.json"
    plain = stella_cli("export", "verify", str(unsigned))
    assert plain.returncode == 0 and "unsigned bundle" in plain.stdout


def test_trust_root_scopes_keys_and_refuses_rollback(
    signed_bundles: dict[str, BundlePair], signing_keys: Keys, tmp_path: Path
) -> None:
    pair = signed_bundles["json:raw"]  # many calls: in this process (the console script is tested above)
    root = tmp_path / "trust.json"
    stella_in_process("keys", "trust-root", str(signing_keys.ec_pub), "--out", str(root), check=True)
    assert stella_in_process("export", "verify", str(pair.early), "--trust-root", str(root)).returncode == 0
    # Accept the later bundle and remember it; the earlier one is then a rollback.
    recorded = stella_in_process("export", "verify", str(pair.late), "--trust-root", str(root), "--record")
    assert recorded.returncode == 0, recorded.stderr
    assert json.loads(root.read_bytes())["lastSeen"][0]["generatedAt"] == LATE_AS_OF
    assert stella_in_process("export", "verify", str(pair.late), "--trust-root", str(root)).returncode == 0
    rollback = stella_in_process("export", "verify", str(pair.early), "--trust-root", str(root), "--json")
    assert rollback.returncode == 5
    error = json.loads(rollback.stdout)["error"]
    assert error["details"]["file"] == "export.json" and "rollback" in error["message"]
    # A floor set by hand works the same way.
    floor = tmp_path / "floor.json"
    stella_in_process(
        "keys", "trust-root", str(signing_keys.ec_pub), "--out", str(floor),
        "--minimum-generated-at", "2026-09-01T00:00:00Z", check=True,
    )  # fmt: skip
    assert stella_in_process("export", "verify", str(pair.early), "--trust-root", str(floor)).returncode == 5
    assert stella_in_process("export", "verify", str(pair.late), "--trust-root", str(floor)).returncode == 0
    # A key trusted only for another tenant, or another profile, does not vouch for this bundle.
    for flag, value in (("--tenant", "globex"), ("--profile", "trivy:db")):
        scoped = tmp_path / f"scoped{flag}.json"
        stella_in_process(
            "keys", "trust-root", str(signing_keys.ec_pub), "--out", str(scoped), flag, value, check=True
        )
        result = stella_in_process("export", "verify", str(pair.late), "--trust-root", str(scoped))
        assert result.returncode == 5, result.stderr
    # An empty trust root trusts nothing: refused as a usage error, never a pass.
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"schema": "https://stellaops.io/export-center/trust-root/v1", "keys": []}))
    assert stella_in_process("export", "verify", str(pair.late), "--trust-root", str(empty)).returncode == 2


def test_encrypted_password_keys_sign(ledgers: tuple[Path, Path], tmp_path: Path) -> None:
    """`keys generate --password-env` (PKCS#8) and `--format cosign`, used through their key references."""
    env = {"KEY_PASSWORD": "correct horse", "COSIGN_PASSWORD": "battery staple"}
    prefix = tmp_path / "pw"
    stella_cli("keys", "generate", "--type", "ecdsa-p256", "--out", str(prefix), "--password-env", "KEY_PASSWORD",
               env=env, check=True)  # fmt: skip
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "pw.key").read_bytes()
    cosign = tmp_path / "cosign"
    stella_cli("keys", "generate", "--type", "ecdsa-p256", "--out", str(cosign), "--format", "cosign",
               "--password-env", "COSIGN_PASSWORD", env=env, check=True)  # fmt: skip
    for ref, public in ((f"file://{prefix}.key?password-env=KEY_PASSWORD", f"{prefix}.pub"),
                        (f"cosign://{cosign}.key", f"{cosign}.pub")):  # fmt: skip
        bundle = export_bundle(
            ledgers[0], tmp_path / f"out-{Path(public).stem}", "json:raw", "--sign-key", ref, env=env
        )
        assert stella_cli("export", "verify", str(bundle), "--key", public).returncode == 0
    wrong = stella_cli("export", "run", "--tenant", "acme", "--profile", "json:raw", "--ledger", str(ledgers[0]),
                       "--out", str(tmp_path / "x"), "--sign-key", f"{prefix}.key")  # fmt: skip
    assert wrong.returncode == 2, "an encrypted key without its password is a usage error, before any run"


@pytest.mark.parametrize("key", ["ed", "ec"])
def test_pkcs11_softhsm_signs_a_real_export(
    key: str, softhsm_token: object, ledgers: tuple[Path, Path], signing_keys: Keys, tmp_path: Path
) -> None:
    """The private key stays on the SoftHSM2 token; the exported public key verifies the bundle."""
    ref = softhsm_token.ref(key)  # type: ignore[attr-defined]
    env = softhsm_token.pin_env  # type: ignore[attr-defined]
    public = tmp_path / "token.pub"
    stella_cli("keys", "public", ref, "--out", str(public), env=env, check=True)
    bundles = [
        export_bundle(ledgers[0], tmp_path / f"run{n}", "json:raw", "--sign-key", ref, env=env)
        for n in (1, 2)
    ]
    for bundle in bundles:
        verified = stella_cli("export", "verify", str(bundle), "--key", str(public))
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert stella_cli("export", "verify", str(bundle), "--key", str(signing_keys.ec_pub)).returncode == 5
    if key == "ed":  # Ed25519 on the token is deterministic: byte-identical bundles
        assert tree_digests(bundles[0]) == tree_digests(bundles[1])
    else:  # the token's ECDSA uses random nonces; openssl still accepts the blob signature
        openssl = require_tool("openssl")
        der = tmp_path / "sig.der"
        der.write_bytes(base64.b64decode((bundles[0] / "signatures" / "export.sig").read_bytes()))
        result = subprocess.run(
            [openssl, "dgst", "-sha256", "-verify", str(public), "-signature", str(der),
             str(bundles[0] / "export.json")],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert "Verified OK" in result.stdout, result.stdout + result.stderr


def test_rerun_keeps_an_equivalent_bundle_and_refuses_another_signer(
    signing_keys: Keys, ledgers: tuple[Path, Path], tmp_path: Path
) -> None:
    """Encrypted reruns differ in bytes but not in meaning; a different signer is a different bundle."""
    run = ["export", "run", "--tenant", "acme", "--profile", "json:raw", "--ledger", str(ledgers[0]),
           "--out", str(tmp_path), "--encrypt-to", signing_keys.age_recipient, "--json"]  # fmt: skip
    first = stella_cli(*run, "--sign-key", str(signing_keys.ed_key), check=True)
    bundle = Path(json.loads(first.stdout)["bundle"])
    before = tree_digests(bundle)
    again = stella_cli(*run, "--sign-key", str(signing_keys.ed_key), check=True)
    assert json.loads(again.stdout)["unchanged"] is True and tree_digests(bundle) == before
    assert stella_cli(*run, "--sign-key", str(signing_keys.ec_key)).returncode == 9
    stella_cli(*run, "--sign-key", str(signing_keys.ec_key), "--overwrite", check=True)
    assert (bundle / "signatures" / "export.sig").exists()
    assert stella_cli("export", "verify", str(bundle), "--key", str(signing_keys.ec_pub)).returncode == 0


@pytest.mark.registry
def test_push_verifies_signatures_against_the_given_key(
    signed_bundles: dict[str, BundlePair], signing_keys: Keys, oci_registry: Registry, tmp_path: Path
) -> None:
    bundle = signed_bundles["trivy:db"].late
    archive = tmp_path / "db.tar.zst"
    stella_cli("export", "archive", str(bundle), "--out", str(archive), check=True)
    target = f"{oci_registry.address}/stella/signed/trivy-db:2"
    rogue = stella_cli("export", "push", str(archive), "--to", target, "--key", str(signing_keys.rogue_pub))
    assert rogue.returncode == 5 and "ERR_EXPORT_TRUST" in rogue.stderr, rogue.stderr
    pushed = stella_cli(
        "export", "push", str(archive), "--to", target, "--key", str(signing_keys.ec_pub), "--json"
    )
    assert pushed.returncode == 0, pushed.stderr
    assert json.loads(pushed.stdout)["signature"] == "trusted"
    manifest = json.loads((bundle / "export.json").read_bytes())
    assert json.loads(pushed.stdout)["digest"] == manifest["trivy"]["oci"]["manifestDigest"]


def test_push_refuses_an_encrypted_bundle(encrypted_bundles: dict[str, BundlePair]) -> None:
    refused = stella_cli(
        "export", "push", str(encrypted_bundles["age"].late), "--to", "127.0.0.1:1/stella/x:2"
    )
    assert refused.returncode == 2 and "decrypt it first" in refused.stderr, refused.stderr
