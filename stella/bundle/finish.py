"""The driver-side end of every export: encrypt, attest, sign, and (after publish) archive.

Why one function for every profile: whatever a profile's pipeline wrote into the staging
folder (payload, then ``export.json``), the same steps turn it into a shippable bundle,
so signing and verification never depend on which profile ran (issue 4). The steps run
in the driver, not in Beam workers, because signers hold key handles (PKCS#11 sessions,
decrypted keys) that must not be pickled and shipped.

Order inside the staging folder (BRIEF contract 3): payload → ``export.json`` (pipeline)
→ ciphertexts replace plaintexts (optional) → ``provenance.json`` → ``signatures/*``.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from stella.bundle.archive import write_tar_zst
from stella.bundle.encrypt import encrypt_payload
from stella.bundle.manifest import MANIFEST_MAX_BYTES, parse_manifest
from stella.bundle.provenance import build_provenance
from stella.bundle.request import ExportRequest
from stella.bundle.sign import sign_bundle
from stella.canonical import dumps, sha256_digest
from stella.errors import BundleIntegrityError, NotFoundError
from stella.guards.files import open_regular
from stella.guards.ids import check_id
from stella.signers.interface import Signer

__all__ = ["archive_bundle", "archive_mtime", "finish_bundle"]


def finish_bundle(staging: Path, request: ExportRequest, *, signer: Signer | None) -> dict[str, Any]:
    """Encrypt (if asked), write ``provenance.json``, sign (if a key is given); return the manifest.

    ``provenance.json`` is always (re)written here from the manifest on disk, so every
    profile gets the same statement whatever its pipeline wrote.
    """
    manifest_bytes = (staging / "export.json").read_bytes()
    manifest: dict[str, Any] = json.loads(manifest_bytes)
    encryption = None
    if request.encryption is not None:
        encryption = encrypt_payload(staging, manifest, request.encryption).to_provenance()
    statement = build_provenance(
        request, manifest, manifest_digest=sha256_digest(manifest_bytes), encryption=encryption
    )
    (staging / "provenance.json").write_bytes(dumps(statement))
    if signer is not None:
        sign_bundle(staging, signer)
    return manifest


def archive_mtime(generated_at: str) -> int:
    """Every member's mtime: the bundle's ``generatedAt`` (from the data), never the clock."""
    try:
        return int(datetime.fromisoformat(generated_at.replace("Z", "+00:00")).timestamp())
    except ValueError as exc:
        raise BundleIntegrityError(
            f"export.json generatedAt {generated_at!r} is not an RFC 3339 time"
        ) from exc


def archive_bundle(bundle: Path, out: Path | None = None) -> Path:
    """Write the bundle folder as one deterministic ``<exportId>.tar.zst`` beside it (or at ``out``).

    Raises:
        BundleIntegrityError: the folder has no readable ``export.json``.
        UsageError: the folder holds something a bundle may not (symlinks, special files).
    """
    try:
        with open_regular(bundle / "export.json", "export.json", error=BundleIntegrityError) as handle:
            manifest, _entries = parse_manifest(handle.read(MANIFEST_MAX_BYTES + 1))
        generated = str(manifest["generatedAt"])
    except (OSError, KeyError, TypeError, NotFoundError) as exc:
        raise BundleIntegrityError(
            f"{bundle} has no readable export.json: not a bundle", details={"file": "export.json"}
        ) from exc
    export_id = check_id(manifest["exportId"], "exportId", error=BundleIntegrityError)
    target = out if out is not None else bundle.parent / f"{export_id}.tar.zst"
    write_tar_zst(bundle, target, mtime=archive_mtime(generated))
    target.chmod(0o644)  # written through a private temp file; published like the bundle's files
    return target
