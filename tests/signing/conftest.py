"""Fixtures for signing tests: freshly generated keys and a real SoftHSM2 token.

No key is ever committed: every key is generated into ``tmp_path`` per test (or per
session for the token, whose key generation is the slow part).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stella.signers.registry import generate_key
from tests.support import require, require_tool

SOFTHSM_MODULES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)
# The SO PIN and user PIN of a throwaway token in a temp folder.
TOKEN_LABEL = "stella-test"
USER_PIN = "4711-user"
SO_PIN = "4711-so"
# CKA_EC_PARAMS: Ed25519 (RFC 8410 OID 1.3.101.112) and P-256 (1.2.840.10045.3.1.7), DER.
ED25519_PARAMS = bytes.fromhex("06032b6570")
P256_PARAMS = bytes.fromhex("06082a8648ce3d030107")


@dataclass(frozen=True)
class KeyFiles:
    private: Path
    public: Path


@pytest.fixture
def ecdsa_key(tmp_path: Path) -> KeyFiles:
    files = KeyFiles(tmp_path / "ec.key", tmp_path / "ec.pub")
    generate_key("ecdsa-p256", files.private, files.public, password=None)
    return files


@pytest.fixture
def ed25519_key(tmp_path: Path) -> KeyFiles:
    files = KeyFiles(tmp_path / "ed.key", tmp_path / "ed.pub")
    generate_key("ed25519", files.private, files.public, password=None)
    return files


@dataclass(frozen=True)
class Token:
    module: str
    label: str
    pin_env: dict[str, str]

    def ref(self, obj: str, **query: str) -> str:
        params = {"module-path": self.module, "pin-source": "env:HSM_PIN", **query}
        return f"pkcs11:token={self.label};object={obj}?" + "&".join(f"{k}={v}" for k, v in params.items())


@pytest.fixture(scope="session")
def softhsm_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Token]:
    """A SoftHSM2 token in a temp folder: Ed25519 ``ed``, P-256 ``ec``, AES-256 ``wrap`` and ``other-wrap``.

    SoftHSM2 reads ``SOFTHSM2_CONF`` from the process environment when the module is
    initialised, so the fixture sets it for the session and re-initialises the module.
    """
    util = require_tool("softhsm2-util")
    module = next((path for path in SOFTHSM_MODULES if Path(path).is_file()), None)
    require(module is not None, "libsofthsm2.so (Debian package softhsm2)")
    assert module is not None
    try:
        import pkcs11
        from pkcs11 import Attribute, KeyType
        from pkcs11.util.ec import encode_named_curve_parameters
    except ImportError:
        require(False, "python-pkcs11")
        raise

    folder = tmp_path_factory.mktemp("softhsm")
    (folder / "tokens").mkdir()
    conf = folder / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {folder / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOFTHSM2_CONF", str(conf))
        subprocess.run(
            [util, "--init-token", "--free", "--label", TOKEN_LABEL, "--pin", USER_PIN, "--so-pin", SO_PIN],
            check=True,
            capture_output=True,
            env={**os.environ, "SOFTHSM2_CONF": str(conf)},
        )
        lib = pkcs11.lib(module)
        lib.reinitialize()  # pick up this SOFTHSM2_CONF even if another test initialised it first
        token = lib.get_token(token_label=TOKEN_LABEL)
        with token.open(rw=True, user_pin=USER_PIN) as session:
            # The private halves are generated on the token, sensitive and non-extractable.
            private_template = {Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False}
            ed_params = session.create_domain_parameters(
                KeyType.EC_EDWARDS,
                {Attribute.EC_PARAMS: encode_named_curve_parameters("1.3.101.112")},
                local=True,
            )
            ed_params.generate_keypair(store=True, label="ed", id=b"\x01", private_template=private_template)
            ec_params = session.create_domain_parameters(
                KeyType.EC,
                {Attribute.EC_PARAMS: encode_named_curve_parameters("1.2.840.10045.3.1.7")},
                local=True,
            )
            ec_params.generate_keypair(store=True, label="ec", id=b"\x02", private_template=private_template)
            # AES-256 keys that wrap data keys (the KMS envelope): usable, never extractable.
            for label, key_id in (("wrap", b"\x03"), ("other-wrap", b"\x04")):
                session.generate_key(
                    KeyType.AES, 256, label=label, id=key_id, store=True, template=private_template
                )
        yield Token(module=module, label=TOKEN_LABEL, pin_env={"HSM_PIN": USER_PIN})
