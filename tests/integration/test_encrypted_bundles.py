"""Encrypted bundles: the stock ``age`` CLI opens them, ``stella export decrypt`` restores the exact
plaintext of an unencrypted export, and integrity is checkable without any private key.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.signed_fixtures import LATE_AS_OF, BundlePair, Keys, export_bundle
from tests.support import require_tool, stella_cli, stella_in_process, tree_digests


def _payload(bundle: Path) -> dict[str, str]:
    return tree_digests(bundle / "data")


def test_age_cli_decrypts_every_file_of_a_real_bundle(
    encrypted_bundles: dict[str, BundlePair],
    signed_bundles: dict[str, BundlePair],
    signing_keys: Keys,
    tmp_path: Path,
) -> None:
    age = require_tool("age")
    encrypted, plain = encrypted_bundles["age"].late, signed_bundles["json:raw"].late
    ciphertexts = sorted(encrypted.rglob("*.age"))
    assert ciphertexts and not list((encrypted / "data").rglob("*.jsonl.zst"))
    for ciphertext in ciphertexts:
        relative = ciphertext.relative_to(encrypted).as_posix().removesuffix(".age")
        out = tmp_path / "plain"
        subprocess.run(
            [age, "-d", "-i", str(signing_keys.age_identity), "-o", str(out), str(ciphertext)], check=True
        )
        assert out.read_bytes() == (plain / relative).read_bytes(), relative


@pytest.mark.parametrize("mode", ["age", "aes-gcm"])
def test_encrypted_bundle_keeps_plaintext_manifest_and_signs_ciphertexts(
    mode: str,
    encrypted_bundles: dict[str, BundlePair],
    signed_bundles: dict[str, BundlePair],
    signing_keys: Keys,
) -> None:
    encrypted, plain = encrypted_bundles[mode].late, signed_bundles["json:raw"].late
    manifest = json.loads((encrypted / "export.json").read_bytes())
    assert manifest["contents"] == json.loads((plain / "export.json").read_bytes())["contents"]
    assert manifest["options"]["encryption"]["mode"] == mode
    section = json.loads((encrypted / "provenance.json").read_bytes())["predicate"]["buildDefinition"][
        "internalParameters"
    ]["encryption"]
    recipients = [(r["kind"], r["recipient"]) for r in section["recipients"]]
    assert recipients == sorted(recipients) and signing_keys.age_recipient in dict(recipients).values()
    assert len(section["files"]) == len(manifest["contents"])
    # Integrity of the ciphertexts without any private key, signatures trusted.
    verified = stella_in_process("export", "verify", str(encrypted), "--key", str(signing_keys.ed_pub))
    assert verified.returncode == 0, verified.stdout + verified.stderr


@pytest.mark.parametrize(
    ("mode", "identity"),
    [("age", "age"), ("aes-gcm", "age"), ("aes-gcm", "rsa")],
    ids=["age", "aes-gcm-age", "aes-gcm-rsa"],
)
@pytest.mark.parametrize("form", ["dir", "tar.zst"])
def test_decrypt_restores_the_unencrypted_payload(
    mode: str,
    identity: str,
    form: str,
    encrypted_bundles: dict[str, BundlePair],
    signed_bundles: dict[str, BundlePair],
    signing_keys: Keys,
    tmp_path: Path,
) -> None:
    encrypted = encrypted_bundles[mode].late
    source = encrypted
    if form == "tar.zst":
        source = tmp_path / "in.tar.zst"
        stella_in_process("export", "archive", str(encrypted), "--out", str(source), check=True)
    key = signing_keys.age_identity if identity == "age" else signing_keys.rsa_key
    result = stella_in_process(
        "export", "decrypt", str(source), "--identity", str(key), "--out", str(tmp_path / "out"),
        "--key", str(signing_keys.ed_pub), "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    decrypted = Path(json.loads(result.stdout)["bundle"])
    assert _payload(decrypted) == _payload(signed_bundles["json:raw"].late)
    for name in ("export.json", "provenance.json"):
        assert (decrypted / name).read_bytes() == (encrypted / name).read_bytes()
    verified = stella_in_process("export", "verify", str(decrypted), "--key", str(signing_keys.ed_pub))
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_decrypt_refuses_wrong_identity_and_tampered_ciphertext(
    encrypted_bundles: dict[str, BundlePair], signing_keys: Keys, tmp_path: Path
) -> None:
    encrypted = encrypted_bundles["age"].late
    other = tmp_path / "other.key"
    subprocess.run([require_tool("age-keygen"), "-o", str(other)], check=True, capture_output=True)
    wrong = stella_in_process(
        "export", "decrypt", str(encrypted), "--identity", str(other), "--out", str(tmp_path / "a")
    )
    assert wrong.returncode == 6, wrong.stderr
    copy = tmp_path / "copy"
    shutil.copytree(encrypted, copy)
    victim = sorted(copy.rglob("*.age"))[0]
    data = bytearray(victim.read_bytes())
    data[-10] ^= 0x01
    victim.write_bytes(bytes(data))
    refused = stella_in_process(
        "export", "decrypt", str(copy), "--identity", str(signing_keys.age_identity), "--out", str(tmp_path / "b"),
        "--json",
    )  # fmt: skip
    assert refused.returncode == 3
    assert json.loads(refused.stdout)["error"]["details"]["file"] == victim.relative_to(copy).as_posix()
    out = tmp_path / "b"
    assert not out.exists() or not any(out.iterdir()), "nothing is published when decryption is refused"


def test_a_plaintext_file_beside_its_ciphertext_is_refused(
    encrypted_bundles: dict[str, BundlePair], signed_bundles: dict[str, BundlePair], signing_keys: Keys,
    tmp_path: Path,
) -> None:  # fmt: skip
    copy = tmp_path / "copy"
    shutil.copytree(encrypted_bundles["age"].late, copy)
    plain = signed_bundles["json:raw"].late
    entry = json.loads((plain / "export.json").read_bytes())["contents"][0]["path"]
    shutil.copyfile(plain / entry, copy / entry)
    result = stella_in_process("export", "verify", str(copy), "--key", str(signing_keys.ed_pub), "--json")
    assert result.returncode == 3
    assert json.loads(result.stdout)["error"]["details"]["file"] == entry


def test_pkcs11_token_key_wraps_and_unwraps_the_data_key(
    softhsm_token: Any, ledgers: tuple[Path, Path], signed_bundles: dict[str, BundlePair],
    signing_keys: Keys, tmp_path: Path,
) -> None:  # fmt: skip
    """KMS envelope: an AES key that never leaves the SoftHSM2 token wraps and unwraps the DEK."""
    env = softhsm_token.pin_env
    ref = softhsm_token.ref("wrap")
    bundle = export_bundle(
        ledgers[1], tmp_path / "enc", "json:raw", "--sign-key", str(signing_keys.ec_key),
        "--encrypt-to", ref, "--as-of", LATE_AS_OF, env=env,
    )  # fmt: skip
    provenance = (bundle / "provenance.json").read_text()
    encryption = json.loads(provenance)["predicate"]["buildDefinition"]["internalParameters"]["encryption"]
    assert encryption["mode"] == "aes-gcm"
    (recipient,) = encryption["recipients"]
    assert (
        recipient["kind"] == "pkcs11-aes" and recipient["recipient"] == "pkcs11:token=stella-test;object=wrap"
    )
    assert "module-path" not in provenance and softhsm_token.pin_env["HSM_PIN"] not in provenance
    assert stella_cli("export", "verify", str(bundle), "--key", str(signing_keys.ec_pub)).returncode == 0

    other = stella_cli("export", "decrypt", str(bundle), "--identity", softhsm_token.ref("other-wrap"),
                       "--out", str(tmp_path / "no"), env=env)  # fmt: skip
    assert other.returncode == 6 and "is a recipient of this bundle" in other.stderr, other.stderr
    done = stella_cli("export", "decrypt", str(bundle), "--identity", ref, "--out", str(tmp_path / "plain"),
                      "--key", str(signing_keys.ec_pub), "--json", env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    decrypted = Path(json.loads(done.stdout)["bundle"])
    assert _payload(decrypted) == _payload(signed_bundles["json:raw"].late)
