"""trivy:db: OSV advisories merged into Trivy's vulnerability DB (bbolt, schema 2).

The shape is :class:`pipelines.trivy.TrivyPipeline`; this profile keeps OSV
advisories, and the latest revision of an advisory wins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import apache_beam as beam

from pipelines.trivy import TrivyPipeline, next_update_option
from stella.adapters.trivy.dbitems import (
    SUPERSEDED_REPORT,
    UNTRANSLATED_REPORT,
    is_osv_advisory,
    is_osv_row,
    trivy_db_row_items,
    write_db_outputs,
)
from stella.adapters.trivy.payload import TRIVY_DB_LAYOUT, report_counts
from stella.bundle.manifest import ContentEntry
from stella.bundle.request import ExportRequest
from stella.profiles import Profile, ProfileStatus

__all__ = ["KEEP", "PROFILE", "build"]

PROFILE = Profile(
    name="trivy:db",
    kind="trivy",
    variant="db",
    revision="r1",
    status=ProfileStatus.AVAILABLE,
    contents="Trivy vulnerability DB schema 2 (bbolt) as db.tar.gz and OCI layout",
    consumer="Trivy 0.76",
    options=(next_update_option(TRIVY_DB_LAYOUT),),
)


KEEP = is_osv_advisory
"""The records this profile takes from a selection (``stella export plan`` counts with it too)."""


def _fields(root: Path, trivy: dict[str, Any], contents: list[ContentEntry]) -> dict[str, Any]:
    trivy["supersededRevisions"] = next(c for c in contents if c.path == SUPERSEDED_REPORT).records
    return {"untranslated": report_counts(root, UNTRANSLATED_REPORT), "trivy": trivy}


_PIPELINE = TrivyPipeline(
    keep=is_osv_row,
    keep_label="KeepOsvAdvisories",
    adapter=trivy_db_row_items,
    layout=TRIVY_DB_LAYOUT,
    merge=write_db_outputs,
    write_label="WriteTrivyDb",
    fields=_fields,
)


def build(pipeline: beam.Pipeline, request: ExportRequest, staging: str) -> beam.PCollection:
    return _PIPELINE.build(pipeline, request, staging)
