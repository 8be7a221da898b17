"""trivy:java-db compiled to a Beam pipeline.

ReadLedger -> SelectRecords -> KeepRecords(CycloneDX/SPDX SBOMs) -> AdaptRecords(java_db_items)
    -> WriteTrivyArtifact (sorted runs -> trivy-java.db, report -> metadata, javadb.tar.gz, OCI)
    -> AssembleBundle
SummarizeRecords (of the SBOMs) feeds UpdatedAt and the manifest as a side input.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import apache_beam as beam

from stella.adapters.trivy.javaitems import SKIPPED_REPORT, is_sbom, java_db_items, write_java_outputs
from stella.adapters.trivy.payload import (
    JAVA_DB_LAYOUT,
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

__all__ = ["build_trivy_java_db"]

ManifestFields = Callable[[list[ContentEntry], RecordSummary], dict[str, Any]]


def _manifest_fields(staging: Path, request: ExportRequest, options: TrivyOptions) -> ManifestFields:
    def fields(contents: list[ContentEntry], summary: RecordSummary) -> dict[str, Any]:
        updated_at, next_update = artifact_times(request, summary, JAVA_DB_LAYOUT, options)
        trivy = artifact_fields(
            staging, JAVA_DB_LAYOUT, contents, updated_at=updated_at, next_update=next_update
        )
        # The SQLite library's version is in the file header: recorded so a byte difference
        # between two machines can be told apart from a content difference.
        uri = (staging / JAVA_DB_LAYOUT.db_path).resolve().as_uri() + "?mode=ro"
        with closing(sqlite3.connect(uri, uri=True)) as connection:
            (artifacts,) = connection.execute("SELECT count(*) FROM artifacts").fetchone()
        trivy.update({"artifacts": artifacts, "sqliteVersion": sqlite3.sqlite_version})
        return {"skipped": report_counts(staging, SKIPPED_REPORT), "trivy": trivy}

    return fields


def build_trivy_java_db(pipeline: beam.Pipeline, request: ExportRequest, staging: Path) -> beam.PCollection:
    options = parse_trivy_options(request.options)  # a bad option fails before anything runs
    sboms = (
        pipeline
        | "ReadLedger" >> ReadLedger([s.path for s in request.segments])
        | "SelectRecords" >> SelectRecords(request.selectors)
        | "KeepSboms" >> KeepRecords(is_sbom)
    )
    summary = sboms | "SummarizeRecords" >> SummarizeRecords()
    return (
        sboms
        | "AdaptRecords" >> AdaptRecords(java_db_items)
        | "WriteTrivyJavaDb"
        >> WriteTrivyArtifact(
            staging=str(staging),
            request=request,
            summary=summary,
            layout=JAVA_DB_LAYOUT,
            options=options,
            merge=write_java_outputs,
        )
        | "AssembleBundle"
        >> AssembleBundle(str(staging), request, summary, extra=_manifest_fields(staging, request, options))
    )
