"""json:raw compiled to a Beam pipeline.

ReadLedger -> SelectRecords -> AdaptRecords(jsonraw) -> WriteSortedShards -> AssembleBundle
                             \\-> SummarizeRecords ------------------------/ (side input)
"""

from __future__ import annotations

from collections.abc import Iterator
from operator import itemgetter

import apache_beam as beam

from stella import storage
from stella.adapters.jsonraw import jsonraw_items, shard_path
from stella.bundle.manifest import ContentEntry
from stella.bundle.request import ExportRequest
from stella.bundle.shards import write_jsonl_shard
from stella.profiles import Profile, ProfileStatus
from transforms.bundle import AssembleBundle
from transforms.ledger import ReadLedger, SelectRecords, SummarizeRecords
from transforms.shards import RUNS_DIR, AdaptRecords, WriteSortedShards

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
        | "ReadLedger" >> ReadLedger([s.path for s in request.segments], trace=request.trace_context)
        | "SelectRecords" >> SelectRecords(request.selectors)
    )
    summary = selected | "SummarizeRecords" >> SummarizeRecords()
    return (
        selected
        | "AdaptRecords" >> AdaptRecords(jsonraw_items, request.trace_context)
        | "WriteSortedShards"
        >> WriteSortedShards(
            temp_dir=storage.join(staging, RUNS_DIR),
            out_root=staging,
            path_for=shard_path,
            writer=_write,
            records_per_shard=request.records_per_shard,
            trace=request.trace_context,
        )
        | "AssembleBundle" >> AssembleBundle(staging, request, summary)
    )
