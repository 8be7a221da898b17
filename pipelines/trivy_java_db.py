"""trivy:java-db: the Maven jars of SBOMs merged into Trivy's Java DB (SQLite, schema 1).

The shape is :class:`pipelines.trivy.TrivyPipeline`; this profile keeps CycloneDX and
SPDX SBOMs and indexes their jars by SHA-1.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import apache_beam as beam

from pipelines.trivy import TrivyPipeline, next_update_option
from stella.adapters.trivy.javaitems import (
    SKIPPED_REPORT,
    is_sbom,
    is_sbom_row,
    java_db_row_items,
    write_java_outputs,
)
from stella.adapters.trivy.payload import JAVA_DB_LAYOUT, report_counts
from stella.bundle.manifest import ContentEntry
from stella.bundle.request import ExportRequest
from stella.profiles import Profile, ProfileStatus

__all__ = ["KEEP", "PROFILE", "build"]

PROFILE = Profile(
    name="trivy:java-db",
    kind="trivy",
    variant="java-db",
    revision="r1",
    status=ProfileStatus.AVAILABLE,
    contents="Trivy Java DB schema 1 (SQLite: jar SHA-1 -> Maven GAV)",
    consumer="Trivy 0.76",
    options=(next_update_option(JAVA_DB_LAYOUT),),
)


KEEP = is_sbom
"""The records this profile takes from a selection (``stella export plan`` counts with it too)."""


def _fields(root: Path, trivy: dict[str, Any], contents: list[ContentEntry]) -> dict[str, Any]:
    # The SQLite library's version is in the file header: recorded so a byte difference
    # between two machines can be told apart from a content difference.
    uri = (root / JAVA_DB_LAYOUT.db_path).resolve().as_uri() + "?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as connection:
        (artifacts,) = connection.execute("SELECT count(*) FROM artifacts").fetchone()
    trivy.update({"artifacts": artifacts, "sqliteVersion": sqlite3.sqlite_version})
    return {"skipped": report_counts(root, SKIPPED_REPORT), "trivy": trivy}


_PIPELINE = TrivyPipeline(
    keep=is_sbom_row,
    keep_label="KeepSboms",
    adapter=java_db_row_items,
    layout=JAVA_DB_LAYOUT,
    merge=write_java_outputs,
    write_label="WriteTrivyJavaDb",
    fields=_fields,
)


def build(pipeline: beam.Pipeline, request: ExportRequest, staging: str) -> beam.PCollection:
    return _PIPELINE.build(pipeline, request, staging)
