"""``provenance.json``: an in-toto Statement v1 with a SLSA provenance v1 predicate.

Subjects bind the manifest, every payload file (plaintext digests, as the manifest
states them) and, for an encrypted bundle, every ciphertext actually shipped; the
predicate records what was asked (profile, selectors, tenant, policy snapshot) and what
was read (ledger segments by name and digest). Nothing host- or clock-dependent goes in,
so the statement is as reproducible as the bundle. The statement itself is built by
:func:`stella.attest.intoto.provenance_statement`, the one place that knows the format.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stella import TOOL_NAME, __version__
from stella.attest.intoto import BUILD_TYPE, provenance_statement
from stella.bundle.paths import MANIFEST
from stella.bundle.request import ExportRequest

__all__ = ["BUILDER_ID", "BUILD_TYPE", "build_provenance", "segment_uri"]

BUILDER_ID = f"https://stella-ops.org/export-center/builder/{TOOL_NAME}@{__version__}"


def segment_uri(tenant: str, name: str) -> str:
    """A ledger segment as a resolved dependency, named by content only.

    Location-free, so any copy of the ledger matches; and without the segment's sequence
    number (``<seq>-<content>.avro`` -> ``<content>.avro``), so ingesting the same
    batches in another order -- which numbers the same segments differently -- resolves
    to the same dependencies and the same provenance bytes.
    """
    content = name.split("-", 1)[-1]
    return f"stella-ledger:tenants/{tenant}/segments/{content}"


def build_provenance(
    request: ExportRequest,
    manifest: Mapping[str, Any],
    *,
    manifest_digest: str,
    encryption: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The statement for one bundle.

    ``encryption`` is :meth:`stella.bundle.encrypt.EncryptionRecord.to_provenance` of an
    encrypted run: it lands in ``internalParameters.encryption`` and its ciphertexts
    become subjects, so the signature over provenance covers the bytes actually shipped.
    """
    subjects = {MANIFEST: manifest_digest}
    subjects.update({str(entry["path"]): str(entry["digest"]) for entry in manifest["contents"]})
    internal: dict[str, Any] = {}
    if encryption is not None:
        subjects.update({str(f["path"]): str(f["digest"]) for f in encryption["files"]})
        internal["encryption"] = dict(encryption)
    return provenance_statement(
        subjects=subjects,
        profile=manifest["profile"],
        selectors=manifest["selectors"],
        tenant=request.tenant,
        policy_snapshot_id=request.policy_snapshot_id,
        dependencies=[(segment_uri(request.tenant, s.name), s.digest) for s in request.segments],
        builder_id=BUILDER_ID,
        tool_version=__version__,
        extra_internal=internal,
        invocation_id=str(manifest["exportId"]),
    )
