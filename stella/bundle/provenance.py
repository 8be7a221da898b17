"""``provenance.json``: an in-toto Statement v1 with a SLSA provenance v1 predicate.

Subjects bind the manifest (and through its digests, every payload file); the
predicate records what was asked (profile, selectors, tenant, policy snapshot) and
what was read (ledger segments by relative path and digest). Nothing host- or
clock-dependent goes in, so the statement is as reproducible as the bundle.
"""

from __future__ import annotations

from typing import Any

from stella import TOOL_NAME, __version__
from stella.bundle.request import ExportRequest

__all__ = ["BUILDER_ID", "BUILD_TYPE", "build_provenance"]

BUILD_TYPE = "https://stella-ops.org/export-center/buildtypes/export/v1"
BUILDER_ID = f"https://stella-ops.org/export-center/builder/{TOOL_NAME}@{__version__}"


def build_provenance(
    request: ExportRequest, manifest: dict[str, Any], *, manifest_digest: str
) -> dict[str, Any]:
    subjects = [{"name": "export.json", "digest": {"sha256": manifest_digest.split(":", 1)[1]}}]
    dependencies = [
        {
            "uri": f"stella-ledger:tenants/{request.tenant}/segments/{segment.name}",
            "digest": {"sha256": segment.digest.split(":", 1)[1]},
        }
        for segment in sorted(request.segments, key=lambda s: s.name)
    ]
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": subjects,
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "profile": manifest["profile"],
                    "selectors": manifest["selectors"],
                    "tenant": request.tenant,
                    "policySnapshotId": request.policy_snapshot_id,
                },
                "internalParameters": {"tool": {"name": TOOL_NAME, "version": __version__}},
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {"id": BUILDER_ID},
                "metadata": {"invocationId": manifest["exportId"]},
            },
        },
    }
