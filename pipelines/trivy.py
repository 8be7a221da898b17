"""trivy:db and trivy:java-db compiled to Beam pipelines.

Both profiles have one shape and differ only in which records they keep, how a record
becomes sortable items, how the sorted items are merged into a database, and what the
manifest says about it::

    ReadLedger -> SelectRecords -> KeepRecords -> AdaptRecords -> WriteTrivyArtifact -> AssembleBundle
                                             \\-> SummarizeRecords (UpdatedAt, counts: side input)

trivy:db keeps OSV advisories and merges them into ``trivy.db`` (bbolt, latest revision
wins); trivy:java-db keeps CycloneDX/SPDX SBOMs and merges their Maven jars into
``trivy-java.db`` (SQLite). WriteTrivyArtifact then writes metadata, the tarball and
the OCI layout.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apache_beam as beam

from stella.adapters.interface import RecordAdapter
from stella.adapters.trivy.dbitems import (
    SUPERSEDED_REPORT,
    UNTRANSLATED_REPORT,
    is_osv_advisory,
    trivy_db_items,
    write_db_outputs,
)
from stella.adapters.trivy.javaitems import SKIPPED_REPORT, is_sbom, java_db_items, write_java_outputs
from stella.adapters.trivy.payload import (
    JAVA_DB_LAYOUT,
    TRIVY_DB_LAYOUT,
    TrivyLayout,
    parse_trivy_options,
    report_counts,
)
from stella.bundle.manifest import ContentEntry
from stella.bundle.request import ExportRequest
from stella.model import LedgerRecord
from transforms.bundle import AssembleBundle
from transforms.ledger import KeepRecords, ReadLedger, SelectRecords, SummarizeRecords
from transforms.shards import AdaptRecords
from transforms.trivy import ProfileFields, WriteTrivyArtifact

__all__ = ["build_trivy_db", "build_trivy_java_db"]


@dataclass(frozen=True)
class _TrivyProfile:
    keep: Callable[[LedgerRecord], bool]
    keep_label: str
    adapter: RecordAdapter
    layout: TrivyLayout
    merge: Any  # the merge callable WriteTrivyArtifact runs (write_db_outputs / write_java_outputs)
    write_label: str
    fields: ProfileFields


def _build(
    profile: _TrivyProfile, pipeline: beam.Pipeline, request: ExportRequest, staging: str
) -> beam.PCollection:
    options = parse_trivy_options(request.options)  # a bad option fails before anything runs
    kept = (
        pipeline
        | "ReadLedger" >> ReadLedger([s.path for s in request.segments])
        | "SelectRecords" >> SelectRecords(request.selectors)
        | profile.keep_label >> KeepRecords(profile.keep)
    )
    summary = kept | "SummarizeRecords" >> SummarizeRecords()
    written = (
        kept
        | "AdaptRecords" >> AdaptRecords(profile.adapter)
        | profile.write_label
        >> WriteTrivyArtifact(
            staging=staging,
            request=request,
            summary=summary,
            layout=profile.layout,
            options=options,
            merge=profile.merge,
            fields=profile.fields,
        )
    )
    return written["contents"] | "AssembleBundle" >> AssembleBundle(
        staging, request, summary, fields=written["fields"]
    )


def _db_fields(staging: Path, trivy: dict[str, Any], contents: list[ContentEntry]) -> dict[str, Any]:
    trivy["supersededRevisions"] = next(c for c in contents if c.path == SUPERSEDED_REPORT).records
    return {"untranslated": report_counts(staging, UNTRANSLATED_REPORT), "trivy": trivy}


def _java_fields(staging: Path, trivy: dict[str, Any], contents: list[ContentEntry]) -> dict[str, Any]:
    # The SQLite library's version is in the file header: recorded so a byte difference
    # between two machines can be told apart from a content difference.
    uri = (staging / JAVA_DB_LAYOUT.db_path).resolve().as_uri() + "?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as connection:
        (artifacts,) = connection.execute("SELECT count(*) FROM artifacts").fetchone()
    trivy.update({"artifacts": artifacts, "sqliteVersion": sqlite3.sqlite_version})
    return {"skipped": report_counts(staging, SKIPPED_REPORT), "trivy": trivy}


_DB = _TrivyProfile(
    is_osv_advisory,
    "KeepOsvAdvisories",
    trivy_db_items,
    TRIVY_DB_LAYOUT,
    write_db_outputs,
    "WriteTrivyDb",
    _db_fields,
)
_JAVA_DB = _TrivyProfile(
    is_sbom, "KeepSboms", java_db_items, JAVA_DB_LAYOUT, write_java_outputs, "WriteTrivyJavaDb", _java_fields
)


def build_trivy_db(pipeline: beam.Pipeline, request: ExportRequest, staging: str) -> beam.PCollection:
    return _build(_DB, pipeline, request, staging)


def build_trivy_java_db(pipeline: beam.Pipeline, request: ExportRequest, staging: str) -> beam.PCollection:
    return _build(_JAVA_DB, pipeline, request, staging)
