"""The filesystem target (``file:///srv/bundles?keep=7``): a mounted share, a USB disk, a web root.

Publication reuses the export's own atomic publish: the bundle is copied into a
``.stella-staging-*`` folder beside the destination (same filesystem) and renamed to
``<exportId>`` in one step, so a reader -- or a SIGKILL in the middle of the copy --
sees the previous bundles intact and the new one either complete or absent. Retention
keeps the newest ``keep`` bundles by their ``generatedAt`` (from the data, not file
times, so a re-publish of an old bundle does not make it "new"); a pruned bundle is
renamed out of sight before it is deleted.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from stella.bundle.paths import MANIFEST
from stella.bundle.publish import STAGING_PREFIX, discard_staging, new_staging, publish
from stella.errors import BundleIntegrityError, UsageError
from stella.guards import strictjson
from stella.guards.files import open_regular
from stella.targets.interface import PublishResult

__all__ = ["FilesystemTarget"]


def _manifest(bundle: Path) -> tuple[str, str, str]:
    """(exportId, generatedAt, sha256 of export.json) of a bundle folder."""
    try:
        data = (bundle / MANIFEST).read_bytes()
        manifest = strictjson.loads(data, what=MANIFEST, error=BundleIntegrityError)
        return str(manifest["exportId"]), str(manifest["generatedAt"]), hashlib.sha256(data).hexdigest()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BundleIntegrityError(f"{bundle} has no readable export.json: not a bundle") from exc


def _copy_tree(source: Path, destination: Path) -> None:
    """Copy regular files and folders only, fsyncing each file (a bundle holds nothing else)."""
    for folder, dirs, files in os.walk(source):
        dirs.sort()
        relative = Path(folder).relative_to(source)
        (destination / relative).mkdir(parents=True, exist_ok=True)
        for name in sorted(files):
            path = Path(folder) / name
            with (
                open_regular(path, "bundle file", error=BundleIntegrityError) as src,
                (destination / relative / name).open("wb") as dst,
            ):
                shutil.copyfileobj(src, dst, 1 << 20)
                dst.flush()
                os.fsync(dst.fileno())


@dataclass(frozen=True, slots=True)
class FilesystemTarget:
    """Publishes bundle folders under ``root`` and keeps the newest ``keep`` (all when None)."""

    root: Path
    keep: int | None = None
    kind: str = "file"

    def __post_init__(self) -> None:
        if self.keep is not None and self.keep < 1:
            raise UsageError("keep must be at least 1", details={"keep": self.keep})

    @property
    def url(self) -> str:
        suffix = f"?keep={self.keep}" if self.keep is not None else ""
        return f"file://{self.root.resolve()}{suffix}"

    def check(self) -> None:
        """A local folder is not egress; nothing to refuse before the bundle is read."""

    def publish(self, bundle: Path) -> PublishResult:
        export_id, _, digest = _manifest(bundle)
        staging = new_staging(str(self.root))
        try:
            _copy_tree(bundle, staging)
            outcome = publish(staging, export_id)
        except BaseException:
            discard_staging(staging)
            raise
        self._prune(keep_also=outcome.path)
        return PublishResult(str(outcome.path), f"sha256:{digest}", unchanged=outcome.unchanged)

    def _prune(self, keep_also: Path) -> None:
        if self.keep is None:
            return
        bundles = []
        for child in self.root.iterdir():
            if child.name.startswith(STAGING_PREFIX) or not (child / MANIFEST).is_file():
                continue
            export_id, generated, _ = _manifest(child)
            bundles.append((datetime.fromisoformat(generated.replace("Z", "+00:00")), export_id, child))
        bundles.sort(reverse=True)
        for _, _, child in bundles[self.keep :]:
            if child == keep_also:
                continue
            trash = self.root / f"{STAGING_PREFIX}old-{uuid.uuid4().hex}"
            os.rename(child, trash)  # gone from readers' view in one step
            shutil.rmtree(trash, ignore_errors=True)
