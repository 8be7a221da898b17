"""``WriteTrivyArtifact``: from adapter items to a Trivy DB bundle payload.

A Trivy DB is one file, not a set of shards, and its groups depend on each other (the
revision stream decides what the DB stream may contain), so instead of
``WriteSortedShards``' one merge per shard there is one merge step for the whole
artifact. The sort itself is still spread over Beam: ``WriteRunsFn`` sorts what each
worker has into run files, only the small run descriptors are collected, and the merge
streams the runs back in key order. No document passes through the shuffle.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import apache_beam as beam

from stella import storage
from stella.adapters.trivy.payload import TrivyLayout, TrivyOptions, artifact_fields, write_artifact_files
from stella.bundle.assemble import generated_at
from stella.bundle.manifest import ContentEntry
from stella.bundle.request import ExportRequest
from stella.rangemerge import RunGroups, SortedGroups
from stella.slicetable import SliceTable, slices_of
from stella.sorting import RunSlice
from stella.telemetry.tracing import TraceContext, stage_span
from transforms.ledger import RecordSummary
from transforms.progress import relay_progress
from transforms.shards import RUNS_DIR, WriteRunsFn

__all__ = [
    "ArtifactPayload",
    "MergeRuns",
    "ProfileFields",
    "WriteTrivyArtifact",
    "artifact_times",
]

_LOG = logging.getLogger(__name__)

MergeRuns = Callable[[str, SortedGroups], list[ContentEntry]]
"""(local root, sorted groups) -> entries of the files written: one profile's merge."""
ProfileFields = Callable[[Path, dict[str, Any], list[ContentEntry]], dict[str, Any]]
"""(local root, manifest ``trivy`` object so far, contents) -> the profile's manifest fields."""


def artifact_times(
    request: ExportRequest, summary: RecordSummary, layout: TrivyLayout, options: TrivyOptions
) -> tuple[datetime, datetime]:
    """(UpdatedAt, NextUpdate): the bundle's ``generatedAt`` and the configured validity after it."""
    updated_at = datetime.fromisoformat(generated_at(request, summary.high_water))
    return updated_at, options.next_update_after(updated_at, layout.default_validity)


def _merge(
    slices: list[RunSlice], root: str, temp_dir: str, merge: MergeRuns, trace: TraceContext, helpers: int
) -> list[ContentEntry]:
    relay_progress()
    by_group: dict[str, list[RunSlice]] = defaultdict(list)
    for piece in slices:
        by_group[piece.group].append(piece)
    counts = {group: sum(p.count for p in pieces) for group, pieces in sorted(by_group.items())}
    if counts:
        _LOG.info(
            "merging sorted runs into the database: %s",
            ", ".join(f"{g} {n:,} items" for g, n in counts.items()),
        )
    with stage_span("export.write", trace, **{"stella.artifact": "trivy"}):
        entries = merge(root, RunGroups(by_group, temp_dir=temp_dir, helpers=helpers))
    for entry in entries:
        _LOG.info(
            "wrote %s: %d bytes",
            entry.path,
            entry.bytes,
            extra={"progress": {"stage": "write", "records": 0, "bytes": entry.bytes}},
        )
    return entries


@dataclass(frozen=True)
class ArtifactPayload:
    """What the artifact step wrote (its manifest entries) and the manifest fields describing it."""

    contents: tuple[ContentEntry, ...]
    fields: dict[str, Any]


class WriteTrivyArtifact(beam.PTransform):  # type: ignore[misc]
    """Batches of (group, key, value) items -> ``{"contents": ContentEntries, "fields": manifest fields}``.

    The database, tarball and OCI layout are built in a folder local to the worker that
    runs the step (SQLite and the bbolt writer need a real file) and copied to
    ``staging`` through Beam's FileSystems, so the step runs on any worker whether
    ``staging`` is a local folder or ``gs://``. The profile's manifest fields are
    computed there too, from the local files (a singleton ``fields`` output).

    Args:
        staging: the bundle staging root (a local folder or a ``gs://`` prefix).
        request: the export request (for ``--as-of``).
        summary: the singleton RecordSummary of the records the items came from.
        layout: which artifact (vulnerability DB or Java DB).
        options: validated profile options.
        merge: writes the DB and reports from the sorted streams.
        fields: (local root, manifest ``trivy`` object so far, contents) -> the profile's manifest fields.
        threads: the run's worker count. The artifact step runs alone once every run is
            written, so it merges the database's key ranges on that many helper processes
            (:mod:`stella.rangemerge`) and compresses the tarball on that many threads; the
            bytes are the same for any count (:mod:`stella.gzipstream`).
    """

    def __init__(
        self,
        *,
        staging: str,
        request: ExportRequest,
        summary: beam.PCollection,
        layout: TrivyLayout,
        options: TrivyOptions,
        merge: MergeRuns,
        fields: ProfileFields,
        threads: int = 1,
    ) -> None:
        super().__init__()
        self._staging = staging
        self._request = request
        self._summary = summary
        self._layout = layout
        self._options = options
        self._merge_runs = merge
        self._fields = fields
        self._threads = threads

    def expand(self, items: beam.PCollection) -> dict[str, beam.PCollection]:
        staging, request, layout, options = self._staging, self._request, self._layout, self._options
        merge_runs, profile_fields, threads = self._merge_runs, self._fields, self._threads
        temp_dir = storage.join(staging, RUNS_DIR)

        def build(tables: list[SliceTable], summary: RecordSummary) -> ArtifactPayload:
            updated_at, next_update = artifact_times(request, summary, layout, options)
            with storage.local_folder_for(staging) as root:
                contents = _merge(
                    slices_of(tables), str(root), temp_dir, merge_runs, request.trace_context, threads
                )
                contents += write_artifact_files(
                    root, layout, updated_at=updated_at, next_update=next_update, threads=threads
                )
                trivy = artifact_fields(
                    root, layout, contents, updated_at=updated_at, next_update=next_update
                )
                fields = profile_fields(root, trivy, contents)
            return ArtifactPayload(tuple(contents), fields)

        payload = (
            items
            | "WriteRuns" >> beam.ParDo(WriteRunsFn(temp_dir, bucketed=False)).with_output_types(SliceTable)
            | "CollectRuns" >> beam.combiners.ToList()
            | "BuildArtifact"
            >> beam.Map(build, summary=beam.pvalue.AsSingleton(self._summary)).with_output_types(
                ArtifactPayload
            )
        )
        return {
            "contents": payload
            | "ListContents" >> beam.FlatMap(lambda p: p.contents).with_output_types(ContentEntry),
            "fields": payload | "ManifestFields" >> beam.Map(lambda p: p.fields),
        }
