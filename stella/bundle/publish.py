"""Atomic publication: a bundle appears complete or not at all.

A run writes into a fresh staging folder beside the destination (same filesystem, so
the final ``rename`` is atomic); payload first, ``provenance.json`` then ``export.json``
(signatures, once signing runs, after that). A crash at any point leaves only a
``.stella-staging-<pid>-*`` folder that no reader mistakes for a bundle (``stella export
verify`` refuses anything without a manifest), and the next run publishing into the
same folder removes it once no live process has that pid.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from stella import storage
from stella.errors import BundleIntegrityError, ConflictError, UsageError
from stella.guards.files import check_folder_arg
from stella.guards.ids import check_id

__all__ = ["STAGING_PREFIX", "PublishOutcome", "discard_staging", "new_staging", "publish"]

STAGING_PREFIX = ".stella-staging-"


@dataclass(frozen=True)
class PublishOutcome:
    path: Path
    replaced: bool
    unchanged: bool


def new_staging(out_dir: str) -> Path:
    if "://" in out_dir:
        raise UsageError(
            f"--out {out_dir}: bundles are published to a local folder; push them to a registry or "
            "object store with the distribution commands"
        )
    root = Path(check_folder_arg(out_dir, "--out"))
    root.mkdir(parents=True, exist_ok=True)
    # Staging folders of killed runs (their pid is gone) are removed by the next run.
    storage.remove_stale(root, STAGING_PREFIX)
    staging = root / storage.owned_name(STAGING_PREFIX)
    staging.mkdir()
    return staging


def discard_staging(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)


def _signature_identity(bundle: Path) -> tuple[list[str], bytes | None]:
    folder = bundle / "signatures"
    names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    key = folder / "signer.pub"
    return names, key.read_bytes() if key.is_file() else None


def _equivalent(old: Path, new: Path) -> bool:
    """Same manifest and same signer: the same bundle, even where bytes legitimately differ.

    Encrypted payloads (fresh keys per run) and signatures from randomised-ECDSA tokens
    differ on every run; a rerun that only differs there keeps the bundle already
    published. A different signer (or signed versus unsigned) is a different bundle.
    """
    manifest = old / "export.json"
    if not manifest.exists() or manifest.read_bytes() != (new / "export.json").read_bytes():
        return False
    return _signature_identity(old) == _signature_identity(new)


def publish(staging: Path, export_id: str, *, overwrite: bool = False) -> PublishOutcome:
    """Rename ``staging`` to ``<out>/<export_id>``.

    Export ids are derived from the content, so an existing bundle with the same id, the
    same manifest bytes and the same signer is the same bundle: the run reports it
    unchanged.

    ``export_id`` is checked again here, where it becomes a path: whatever a bundle
    says, nothing outside ``<out>`` is created, replaced or deleted.

    Raises:
        BundleIntegrityError: ``export_id`` is not a safe id.
        ConflictError: the destination exists with a different manifest and
            ``overwrite`` is false.
    """
    final = staging.parent / check_id(export_id, "exportId", error=BundleIntegrityError)
    if not final.exists():
        os.rename(staging, final)
        return PublishOutcome(final, replaced=False, unchanged=False)
    if _equivalent(final, staging):
        discard_staging(staging)
        return PublishOutcome(final, replaced=False, unchanged=True)
    if not overwrite:
        discard_staging(staging)
        raise ConflictError(
            f"{final} already exists with different content; remove it or pass --overwrite",
            details={"path": str(final)},
        )
    trash = staging.parent / (storage.owned_name(STAGING_PREFIX) + "-old")
    os.rename(final, trash)
    os.rename(staging, final)
    shutil.rmtree(trash, ignore_errors=True)
    return PublishOutcome(final, replaced=True, unchanged=False)
