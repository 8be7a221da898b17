"""Composites of the mirror profiles: ``SummarizeMirror``, ``DiffAgainstBase``, ``KeepChangedRecords``, ``WriteChanges``.

Each wraps pure functions of :mod:`stella.adapters.mirror`. The join of a delta is a
``CoGroupByKey`` on the record key's bucket (:func:`stella.sorting.bucket_of`), and
what crosses the shuffle is (key, content digest) pairs grouped per batch and bucket,
never documents: the join costs a few elements per batch, whatever the ledger size.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import apache_beam as beam

from stella.adapters.jsonraw import envelope_line
from stella.adapters.mirror.delta import ADD, CHANGE, CHANGES_PATH, REMOVE, Change, diff_pairs
from stella.adapters.mirror.records import RecordSet, line_digest
from stella.bundle.manifest import ContentEntry
from stella.bundle.shards import write_jsonl_shard
from stella.model import LedgerRecord
from stella.sorting import bucket_of
from transforms.coders import RecordBatch
from transforms.ledger import RecordSummary, SummarizeRecords

__all__ = [
    "DiffAgainstBase",
    "count_ops",
    "KeepChangedRecords",
    "MirrorSummary",
    "SummarizeMirror",
    "WriteChanges",
]

Pairs = list[tuple[bytes, str]]


@dataclass(frozen=True)
class MirrorSummary(RecordSummary):
    """The record summary plus the record-set digest of the selection (the mirror's state)."""

    record_set: RecordSet = field(default_factory=RecordSet)


def _pairs(batch: Iterable[LedgerRecord]) -> Pairs:
    return [(r.sort_key, line_digest(envelope_line(r))) for r in batch]


class _RecordSetFn(beam.CombineFn):  # type: ignore[misc]
    def create_accumulator(self) -> RecordSet:
        return RecordSet()

    def add_input(self, acc: RecordSet, batch: RecordBatch) -> RecordSet:
        return acc.merge(RecordSet.of(_pairs(batch)))

    def merge_accumulators(self, accumulators: Iterable[RecordSet]) -> RecordSet:
        total = RecordSet()
        for acc in accumulators:
            total = total.merge(acc)
        return total

    def extract_output(self, acc: RecordSet) -> RecordSet:
        return acc


class SummarizeMirror(beam.PTransform):  # type: ignore[misc]
    """Batches -> one MirrorSummary: counts, high-water mark and record-set digest."""

    def expand(self, batches: beam.PCollection) -> beam.PCollection:
        summary = batches | "SummarizeRecords" >> SummarizeRecords()
        record_set = batches | "DigestRecordSet" >> beam.CombineGlobally(_RecordSetFn()).with_output_types(
            RecordSet
        )

        def combine(summary: RecordSummary, record_set: RecordSet) -> MirrorSummary:
            return MirrorSummary(summary.counts, summary.high_water, record_set)

        return summary | "AddRecordSet" >> beam.Map(
            combine, record_set=beam.pvalue.AsSingleton(record_set)
        ).with_output_types(MirrorSummary)


def _by_bucket(batch: RecordBatch) -> Iterator[tuple[int, Pairs]]:
    buckets: defaultdict[int, Pairs] = defaultdict(list)
    for key, digest in _pairs(batch):
        buckets[bucket_of(key)].append((key, digest))
    yield from buckets.items()


class DiffAgainstBase(beam.PTransform):  # type: ignore[misc]
    """(current batches, base batches) -> lists of Change, one per bucket that changed."""

    def expand(self, sides: tuple[beam.PCollection, beam.PCollection]) -> beam.PCollection:
        current, base = sides

        def diff(element: tuple[int, dict[str, Iterable[Pairs]]]) -> Iterator[list[Change]]:
            _bucket, grouped = element
            changes = diff_pairs(
                (p for part in grouped["current"] for p in part),
                (p for part in grouped["base"] for p in part),
            )
            if changes:
                yield changes

        return (
            {
                "current": current | "KeyCurrentByBucket" >> beam.FlatMap(_by_bucket),
                "base": base | "KeyBaseByBucket" >> beam.FlatMap(_by_bucket),
            }
            | "JoinOnRecordKey" >> beam.CoGroupByKey()
            | "CompareDigests" >> beam.FlatMap(diff)
        )


def count_ops(parts: Iterable[list[Change]]) -> dict[str, int]:
    """``{"added": n, "changed": n, "removed": n}`` for the manifest's ``delta`` block."""
    names = {ADD: "added", CHANGE: "changed", REMOVE: "removed"}
    counts = dict.fromkeys(names.values(), 0)
    for part in parts:
        for change in part:
            counts[names[change.op]] += 1
    return counts


class KeepChangedRecords(beam.PTransform):  # type: ignore[misc]
    """Batches -> batches of only the added or changed records (the delta's payload)."""

    def __init__(self, changes: beam.PCollection) -> None:
        super().__init__()
        self._changes = changes

    def expand(self, batches: beam.PCollection) -> beam.PCollection:
        def carried(parts: Iterable[list[Change]]) -> frozenset[bytes]:
            return frozenset(c.key for part in parts for c in part if c.op in (ADD, CHANGE))

        keys = (
            self._changes | "CollectChanges" >> beam.combiners.ToList() | "CarriedKeys" >> beam.Map(carried)
        )

        def keep(batch: RecordBatch, wanted: frozenset[bytes]) -> Iterator[RecordBatch]:
            kept = RecordBatch(r for r in batch if r.sort_key in wanted)
            if kept:
                yield kept

        return batches | "KeepChanged" >> beam.FlatMap(
            keep, wanted=beam.pvalue.AsSingleton(keys)
        ).with_output_types(RecordBatch)


class WriteChanges(beam.PTransform):  # type: ignore[misc]
    """Lists of Change -> the ContentEntry of ``data/delta/changes.jsonl.zst`` (always written)."""

    def __init__(self, staging: str) -> None:
        super().__init__()
        self._staging = staging

    def expand(self, changes: beam.PCollection) -> beam.PCollection:
        staging = self._staging

        def write(parts: list[list[Change]]) -> ContentEntry:
            ordered = sorted(c for part in parts for c in part)
            return write_jsonl_shard(staging, CHANGES_PATH, (c.to_line() for c in ordered))

        return (
            changes
            | "CollectAllChanges" >> beam.combiners.ToList()
            | "WriteChangeList" >> beam.Map(write).with_output_types(ContentEntry)
        )
