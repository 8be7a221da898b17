"""Publishing a finished bundle to a target: verify it, then hand the target its OCI layout.

``stella export push`` (the Trivy-shaped push) goes through :func:`push_bundle`, so it
skips no step: the target's own refusals first (egress, a malformed destination:
before a byte of the bundle is read), then the whole
bundle verified -- against the trust policy when given, so an unsigned or foreign-signed
bundle never leaves the machine -- then a refusal of encrypted bundles (a registry would
serve ciphertext Trivy cannot read), and only then the layout, which an archive streams
into a private temporary folder (never beside the archive).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stella.bundle.encrypt import ciphertext_files
from stella.bundle.paths import OCI_DIR, PROVENANCE
from stella.bundle.trust import TrustPolicy
from stella.bundle.verify import failure, iter_members, verify_bundle
from stella.errors import BundleIntegrityError, UsageError
from stella.guards import strictjson
from stella.targets.interface import PublishResult, Target

__all__ = ["PushedBundle", "push_bundle"]


@dataclass(frozen=True, slots=True)
class PushedBundle:
    """What was pushed where, and how far its signature was checked before it left."""

    bundle: Path
    export_id: str | None
    published: PublishResult
    signature: str | None  # "trusted", "untrusted" or "unsigned" (see :mod:`stella.bundle.verify`)


def push_bundle(bundle: Path, target: Target, *, trust: TrustPolicy | None = None) -> PushedBundle:
    """Verify ``bundle`` (folder or ``.tar.zst``) and publish its OCI layout through ``target``.

    Raises:
        EgressDeniedError, UsageError: the target refuses its destination (before the bundle is read).
        NotFoundError: no bundle at ``bundle``.
        BundleIntegrityError, SignatureError, TrustError: the bundle does not verify.
        UsageError: the bundle is encrypted or carries no OCI layout.
        RemoteError: the destination refused or failed.
    """
    target.check()
    checked = verify_bundle(bundle, trust=trust)
    if not checked.report.ok:
        raise failure(checked.report)
    manifest: dict[str, Any] = checked.manifest or {}
    profile = manifest.get("profile", {}).get("name")
    if ciphertext_files(
        strictjson.loads(checked.control.get(PROVENANCE, b"{}"), what=PROVENANCE, error=BundleIntegrityError)
    ):
        raise UsageError(
            f"bundle {bundle.name} is encrypted: decrypt it first (stella export decrypt), then push",
            details={"bundle": str(bundle), "profile": profile},
        )
    with tempfile.TemporaryDirectory(prefix="stella-push-") as scratch:
        folder = bundle if bundle.is_dir() else Path(scratch)
        if not bundle.is_dir():
            _extract_layout(bundle, folder / OCI_DIR)
        if not (folder / OCI_DIR / "index.json").is_file():
            raise UsageError(
                f"bundle {bundle.name} (profile {profile}) carries no OCI layout; "
                "only trivy:db and trivy:java-db bundles can be pushed (export publish --target oci://… "
                "pushes any bundle as an artifact)",
                details={"bundle": str(bundle), "profile": profile},
            )
        published = target.publish(folder)
    return PushedBundle(bundle, manifest.get("exportId"), published, checked.report.signature.get("status"))


def _extract_layout(archive: Path, scratch: Path) -> None:
    """Copy the archive's ``data/oci/`` members into ``scratch`` (member names are checked safe)."""
    prefix = OCI_DIR + "/"
    for relative, stream in iter_members(archive):
        if relative.startswith(prefix):
            target = scratch / relative[len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as out:
                shutil.copyfileobj(stream, out, 1 << 20)
