"""json:raw compiled to a Beam pipeline.

ReadLedger -> SelectRecords -> AdaptRows(jsonraw) -> WriteSortedShards -> AssembleBundle
                             \\-> SummarizeRecords ---------------------/ (side input)

Every step works on the segments' Avro rows (``rows=True``): a line is spliced from its
row's fields and stored document bytes, with no LedgerRecord built on the way.
"""

from __future__ import annotations

from collections.abc import Iterator
from operator import itemgetter

import apache_beam as beam

from stella import storage
from stella.adapters.jsonraw import row_items, shard_path
from stella.bundle.manifest import ContentEntry
from stella.bundle.request import ExportRequest
from stella.bundle.shards import write_jsonl_shard
from stella.profiles import Profile, ProfileStatus
from transforms.bundle import AssembleBundle
from transforms.ledger import ReadLedger, SelectRecords, SummarizeRecords
from transforms.shards import RUNS_DIR, AdaptRows, WriteSortedShards

__all__ = ["PROFILE", "build"]

PROFILE = Profile(
    name="json:raw",
    kind="json",
    variant="raw",
    revision="r1",
    status=ProfileStatus.AVAILABLE,
    contents="canonical advisories, SBOMs and VEX as sorted .jsonl.zst shards with digests",
    consumer="any JSON tooling; zstd -d",
)


def _write(root: str, path: str, pairs: Iterator[tuple[bytes, bytes]]) -> ContentEntry:
    return write_jsonl_shard(root, path, map(itemgetter(1), pairs))


def build(pipeline: beam.Pipeline, request: ExportRequest, staging: str) -> beam.PCollection:
    selected = (
        pipeline
        | "ReadLedger"
        >> ReadLedger([s.path for s in request.segments], trace=request.trace_context, rows=True)
        | "SelectRecords" >> SelectRecords(request.selectors, rows=True)
    )
    summary = selected | "SummarizeRecords" >> SummarizeRecords(rows=True)
    return (
        selected
        | "AdaptRows" >> AdaptRows(row_items, request.trace_context)
        | "WriteSortedShards"
        >> WriteSortedShards(
            temp_dir=storage.join(staging, RUNS_DIR),
            out_root=staging,
            path_for=shard_path,
            writer=_write,
            records_per_shard=request.records_per_shard,
            trace=request.trace_context,
            max_items=sum(segment.records for segment in request.segments),  # one line per record
        )
        | "AssembleBundle" >> AssembleBundle(staging, request, summary)
    )
