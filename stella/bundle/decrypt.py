"""``stella export decrypt``: an encrypted bundle in, the plaintext bundle out, verified on both sides.

The receiving side trusts nothing before it is checked (research §5): the encrypted
bundle is verified first (signatures with ``--key``/``--trust-root``, every ciphertext
digest from the signed provenance), then each ciphertext is decrypted while its
plaintext digest is computed and compared with the manifest, and the output is verified
again before it is published by one rename. ``export.json``, ``provenance.json`` and
``signatures/`` are copied unchanged, so the plaintext bundle still verifies under the
original signatures and its ``data/`` is byte-identical to an unencrypted export's.

Works on the folder and the ``.tar.zst`` form alike (members are streamed, never
extracted as ciphertext).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from stella.bundle.encrypt import ciphertext_files, decrypt_member, open_encryption
from stella.bundle.publish import discard_staging, new_staging, publish
from stella.bundle.verify import failure, iter_members, verify_bundle
from stella.encryption.interface import Identity
from stella.errors import BundleIntegrityError, UsageError
from stella.guards import strictjson

if TYPE_CHECKING:
    from stella.bundle.trust import TrustPolicy

__all__ = ["DecryptOutcome", "decrypt_bundle"]


@dataclass(frozen=True)
class DecryptOutcome:
    path: Path
    export_id: str
    files: int
    unchanged: bool
    signature: str


def decrypt_bundle(
    bundle: Path,
    identities: Sequence[Identity],
    out_dir: Path,
    *,
    trust: TrustPolicy | None = None,
    overwrite: bool = False,
) -> DecryptOutcome:
    """Verify, decrypt and publish ``<out_dir>/<exportId>``.

    Raises:
        StellaError: the encrypted bundle does not verify (codes 3/4/5), no identity is a
            recipient (6), a ciphertext does not authenticate or its plaintext does not
            match the manifest (3), or the destination conflicts (9).
    """
    checked = verify_bundle(bundle, trust=trust)
    if not checked.report.ok:
        raise failure(checked.report)
    assert checked.manifest is not None
    manifest = checked.manifest
    provenance = strictjson.loads(
        checked.control["provenance.json"], what="provenance.json", error=BundleIntegrityError
    )
    ciphers = ciphertext_files(provenance)
    if not ciphers:
        raise UsageError(f"{bundle} is not encrypted: nothing to decrypt")
    opened = open_encryption(provenance, manifest, identities)
    entries = {str(e["path"]): e for e in manifest["contents"]}
    staging = new_staging(str(out_dir))
    try:
        decrypted = 0
        for relative, stream in iter_members(bundle):
            cipher = ciphers.get(relative)
            target = staging / (cipher.plaintext if cipher is not None else relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as out:
                if cipher is None:
                    shutil.copyfileobj(stream, out, 1 << 20)
                    continue
                result = decrypt_member(opened, cipher, stream, out)
            entry = entries[cipher.plaintext]
            if result.ciphertext_digest != cipher.digest:
                raise BundleIntegrityError(
                    f"{relative} changed while it was being decrypted", details={"file": relative}
                )
            if (result.plaintext_digest, result.plaintext_bytes) != (entry["digest"], entry["bytes"]):
                raise BundleIntegrityError(
                    f"{cipher.plaintext}: decrypted to {result.plaintext_digest} ({result.plaintext_bytes} "
                    f"bytes), export.json says {entry['digest']} ({entry['bytes']} bytes)",
                    details={"file": cipher.plaintext},
                )
            decrypted += 1
        again = verify_bundle(staging, trust=trust)
        if not again.report.ok:
            raise failure(again.report)
        outcome = publish(staging, str(manifest["exportId"]), overwrite=overwrite)
    except BaseException:
        discard_staging(staging)
        raise
    return DecryptOutcome(
        path=outcome.path,
        export_id=str(manifest["exportId"]),
        files=decrypted,
        unchanged=outcome.unchanged,
        signature=str(again.report.signature.get("status")),
    )
