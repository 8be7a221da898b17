"""The final step of every profile: manifest and provenance over the written payload."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from stella import storage
from stella.bundle.manifest import ContentEntry, build_manifest
from stella.bundle.paths import MANIFEST, PROVENANCE
from stella.bundle.provenance import build_provenance
from stella.bundle.request import ExportRequest
from stella.canonical import dumps, sha256_digest

__all__ = ["EPOCH", "assemble_bundle", "generated_at"]

EPOCH = "1970-01-01T00:00:00Z"


def generated_at(request: ExportRequest, high_water: str | None) -> str:
    """From the data (its newest timestamp) or the explicit as-of; never the clock."""
    return request.as_of or high_water or EPOCH


def assemble_bundle(
    staging: Path | str,
    request: ExportRequest,
    contents: Sequence[ContentEntry],
    counts: Mapping[str, int],
    high_water: str | None,
    *,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``export.json`` then ``provenance.json`` into ``staging`` (local or ``gs://``); return the manifest."""
    manifest = build_manifest(
        tenant=request.tenant,
        profile=request.profile.to_json(),
        selectors=request.selectors.to_json(),
        generated_at=generated_at(request, high_water),
        contents=contents,
        counts=counts,
        options=request.manifest_options(),
        extra=extra,
    )
    manifest_bytes = dumps(manifest)
    provenance = build_provenance(request, manifest, manifest_digest=sha256_digest(manifest_bytes))
    # provenance first: the manifest's presence is what tells the driver the step finished
    storage.write_atomic(storage.join(str(staging), PROVENANCE), dumps(provenance))
    storage.write_atomic(storage.join(str(staging), MANIFEST), manifest_bytes)
    return manifest
