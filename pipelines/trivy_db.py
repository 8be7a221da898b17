"""trivy:db compiled to a Beam pipeline.

ReadLedger -> SelectRecords -> KeepRecords(OSV advisories) -> AdaptRecords(trivy_db_items)
    -> WriteTrivyArtifact (sorted runs -> revisions, trivy.db, reports -> metadata, db.tar.gz, OCI)
    -> AssembleBundle
SummarizeRecords (of the OSV advisories) feeds UpdatedAt and the manifest as a side input.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import apache_beam as beam

from stella.adapters.trivy.dbitems import (
    SUPERSEDED_REPORT,
    UNTRANSLATED_REPORT,
    is_osv_advisory,
    trivy_db_items,
    write_db_outputs,
)
from stella.adapters.trivy.payload import (
    TRIVY_DB_LAYOUT,
    TrivyOptions,
    artifact_fields,
    parse_trivy_options,
    report_counts,
)
from stella.bundle.manifest import ContentEntry
from stella.bundle.request import ExportRequest
from transforms.bundle import AssembleBundle
from transforms.ledger import ReadLedger, RecordSummary, SelectRecords, SummarizeRecords
from transforms.shards import AdaptRecords
from transforms.trivy import KeepRecords, WriteTrivyArtifact, artifact_times

__all__ = ["build_trivy_db"]

ManifestFields = Callable[[list[ContentEntry], RecordSummary], dict[str, Any]]


def _manifest_fields(staging: Path, request: ExportRequest, options: TrivyOptions) -> ManifestFields:
    def fields(contents: list[ContentEntry], summary: RecordSummary) -> dict[str, Any]:
        updated_at, next_update = artifact_times(request, summary, TRIVY_DB_LAYOUT, options)
        trivy = artifact_fields(
            staging, TRIVY_DB_LAYOUT, contents, updated_at=updated_at, next_update=next_update
        )
        superseded = next(c for c in contents if c.path == SUPERSEDED_REPORT)
        trivy["supersededRevisions"] = superseded.records
        return {"untranslated": report_counts(staging, UNTRANSLATED_REPORT), "trivy": trivy}

    return fields


def build_trivy_db(pipeline: beam.Pipeline, request: ExportRequest, staging: Path) -> beam.PCollection:
    options = parse_trivy_options(request.options)  # a bad option fails before anything runs
    advisories = (
        pipeline
        | "ReadLedger" >> ReadLedger([s.path for s in request.segments])
        | "SelectRecords" >> SelectRecords(request.selectors)
        | "KeepOsvAdvisories" >> KeepRecords(is_osv_advisory)
    )
    summary = advisories | "SummarizeRecords" >> SummarizeRecords()
    return (
        advisories
        | "AdaptRecords" >> AdaptRecords(trivy_db_items)
        | "WriteTrivyDb"
        >> WriteTrivyArtifact(
            staging=str(staging),
            request=request,
            summary=summary,
            layout=TRIVY_DB_LAYOUT,
            options=options,
            merge=write_db_outputs,
        )
        | "AssembleBundle"
        >> AssembleBundle(str(staging), request, summary, extra=_manifest_fields(staging, request, options))
    )
