"""Any bundle as an OCI artifact, with the Export Center's own media types.

Trivy bundles already carry the exact layout Trivy pulls (``data/oci``, Trivy's media
types); that layout is what a registry gets for them. Every other bundle (json:raw,
json:policy, mirror) is pushed as a one-layer artifact whose layer is the bundle's
deterministic ``.tar.zst`` -- so the same bundle always has the same manifest digest,
which is what makes a re-publish a no-op -- and whose annotations name the export id
and the manifest digest, so ``oras``/``crane`` users can find a bundle without
downloading it. The config is the empty JSON object typed with our config media type,
the shape distribution registries of every age accept.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from stella.adapters.trivy.artifact import write_oci_layout
from stella.bundle.finish import archive_bundle
from stella.bundle.paths import MANIFEST, OCI_DIR
from stella.errors import BundleIntegrityError
from stella.guards import strictjson

__all__ = [
    "BUNDLE_CONFIG_MEDIA_TYPE",
    "BUNDLE_LAYER_MEDIA_TYPE",
    "EXPORT_ID_ANNOTATION",
    "MANIFEST_DIGEST_ANNOTATION",
    "PROFILE_ANNOTATION",
    "bundle_layout",
]

BUNDLE_LAYER_MEDIA_TYPE = "application/vnd.stellaops.export.bundle.v1.tar+zstd"
BUNDLE_CONFIG_MEDIA_TYPE = "application/vnd.stellaops.export.config.v1+json"
EXPORT_ID_ANNOTATION = "io.stellaops.export.id"
MANIFEST_DIGEST_ANNOTATION = "io.stellaops.export.manifest.digest"
PROFILE_ANNOTATION = "io.stellaops.export.profile"
_CREATED_ANNOTATION = "org.opencontainers.image.created"


def bundle_layout(bundle: Path, scratch: Path, tag: str) -> Path:
    """The OCI image layout to push for ``bundle``: Trivy's own, or a fresh artifact in ``scratch``.

    Raises:
        BundleIntegrityError: ``bundle`` has no readable ``export.json``.
    """
    trivy = bundle / OCI_DIR
    if (trivy / "index.json").is_file():
        return trivy
    manifest_bytes = _manifest(bundle)
    manifest = strictjson.loads(manifest_bytes, what=MANIFEST, error=BundleIntegrityError)
    archive = archive_bundle(bundle, scratch / f"{manifest['exportId']}.tar.zst")
    layout = scratch / "layout"
    write_oci_layout(
        layout,
        layer_path=archive,
        layer_media_type=BUNDLE_LAYER_MEDIA_TYPE,
        config_media_type=BUNDLE_CONFIG_MEDIA_TYPE,
        title=archive.name,
        annotations={
            EXPORT_ID_ANNOTATION: str(manifest["exportId"]),
            MANIFEST_DIGEST_ANNOTATION: "sha256:" + hashlib.sha256(manifest_bytes).hexdigest(),
            PROFILE_ANNOTATION: str(manifest.get("profile", {}).get("name", "")),
            _CREATED_ANNOTATION: str(manifest["generatedAt"]),  # from the data, never the clock
        },
        tag=tag,
    )
    archive.unlink()
    return layout


def _manifest(bundle: Path) -> bytes:
    try:
        data = (bundle / MANIFEST).read_bytes()
        strictjson.loads(data, what=MANIFEST, error=BundleIntegrityError)["exportId"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BundleIntegrityError(f"{bundle} has no readable export.json: not a bundle") from exc
    return data
