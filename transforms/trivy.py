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
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import apache_beam as beam

from stella.adapters.trivy.payload import TrivyLayout, TrivyOptions, write_artifact_files
from stella.bundle.assemble import generated_at
from stella.bundle.manifest import ContentEntry
from stella.bundle.request import ExportRequest
from stella.sorting import RunSlice, merge_slices
from stella.telemetry.tracing import TraceContext, stage_span
from transforms.ledger import RecordSummary
from transforms.shards import WriteRunsFn

__all__ = ["MergeRuns", "SortedStreams", "WriteTrivyArtifact", "artifact_times"]

_LOG = logging.getLogger(__name__)

SortedStreams = Callable[[str], Iterator[tuple[bytes, bytes]]]
"""group -> its (key, value) pairs in order (empty for a group without items)."""
MergeRuns = Callable[[str, SortedStreams], list[ContentEntry]]
"""(staging root, sorted streams) -> entries of the files written: one profile's merge."""


def artifact_times(
    request: ExportRequest, summary: RecordSummary, layout: TrivyLayout, options: TrivyOptions
) -> tuple[datetime, datetime]:
    """(UpdatedAt, NextUpdate): the bundle's ``generatedAt`` and the configured validity after it."""
    updated_at = datetime.fromisoformat(generated_at(request, summary.high_water))
    return updated_at, options.next_update_after(updated_at, layout.default_validity)


def _merge(
    slices: list[RunSlice], root: str, temp_dir: str, merge: MergeRuns, trace: TraceContext
) -> list[ContentEntry]:
    by_group: dict[str, list[RunSlice]] = defaultdict(list)
    for piece in slices:
        by_group[piece.group].append(piece)
    counts = {group: sum(p.count for p in pieces) for group, pieces in sorted(by_group.items())}
    _LOG.info(
        "merging sorted runs into the database: %s", ", ".join(f"{g} {n} items" for g, n in counts.items())
    )
    with stage_span("export.write", trace, **{"stella.artifact": root.rsplit("/", 1)[-1]}):
        entries = merge(root, lambda group: merge_slices(by_group.get(group, []), temp_dir=temp_dir))
    for entry in entries:
        _LOG.info("wrote %s: %d bytes", entry.path, entry.bytes)
    return entries


class WriteTrivyArtifact(beam.PTransform):  # type: ignore[misc]
    """Batches of (group, key, value) items -> ContentEntries of the DB, its reports and transport files.

    Args:
        staging: the bundle staging root.
        request: the export request (for ``--as-of``).
        summary: the singleton RecordSummary of the records the items came from.
        layout: which artifact (vulnerability DB or Java DB).
        options: validated profile options.
        merge: writes the DB and reports from the sorted streams.
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
    ) -> None:
        super().__init__()
        self._staging = staging
        self._request = request
        self._summary = summary
        self._layout = layout
        self._options = options
        self._merge_runs = merge

    def expand(self, items: beam.PCollection) -> beam.PCollection:
        staging, request, layout, options = self._staging, self._request, self._layout, self._options
        temp_dir = str(Path(staging) / ".runs")

        def package(contents: list[ContentEntry], summary: RecordSummary) -> list[ContentEntry]:
            updated_at, next_update = artifact_times(request, summary, layout, options)
            files = write_artifact_files(
                Path(staging), layout, updated_at=updated_at, next_update=next_update
            )
            return [*contents, *files]

        return (
            items
            | "WriteRuns" >> beam.ParDo(WriteRunsFn(temp_dir)).with_output_types(RunSlice)
            | "CollectRuns" >> beam.combiners.ToList()
            | "MergeRuns" >> beam.Map(_merge, staging, temp_dir, self._merge_runs, request.trace_context)
            | "PackageArtifact"
            >> beam.FlatMap(package, summary=beam.pvalue.AsSingleton(self._summary)).with_output_types(
                ContentEntry
            )
        )
