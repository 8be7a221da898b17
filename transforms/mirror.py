"""Composites of the mirror profiles: ``SummarizeMirror``, ``ReselectBaseRecords``, ``DigestRecords``,
``DiffAgainstBase``, ``KeepChangedRecords``, ``WriteChanges``.

Each wraps pure functions of :mod:`stella.adapters.mirror`. The join of a delta is a
``CoGroupByKey`` on the record key's bucket (:func:`stella.sorting.bucket_of`) of the
records that may have changed with the base's digests for those keys (looked up in the
base's record index, :mod:`stella.adapters.mirror.base`); what crosses the shuffle is
(key, content digest) pairs, never documents, and only as many as the delta touches.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam

from stella.adapters.jsonraw import row_items
from stella.adapters.mirror.base import BaseLink, base_digests, reselect
from stella.adapters.mirror.delta import ADD, CHANGE, CHANGES_PATH, REMOVE, Change, diff_pairs
from stella.adapters.mirror.records import RecordSet, key_fields, line_digest, set_term
from stella.bundle.manifest import ContentEntry
from stella.bundle.shards import write_jsonl_shard
from stella.errors import BaseMissingError
from stella.model import LedgerRow, record_key
from stella.selectors import Selectors
from stella.sorting import bucket_of
from stella.timefmt import later
from transforms.coders import RowBatch
from transforms.ledger import RecordSummary, SummarizeRecords

__all__ = [
    "DiffAgainstBase",
    "DigestRecords",
    "KeepChangedRecords",
    "MirrorSummary",
    "ReselectBaseRecords",
    "Reselected",
    "SummarizeMirror",
    "WriteChanges",
    "count_ops",
    "delta_summary",
]

Pairs = list[tuple[bytes, str]]


@dataclass(frozen=True)
class MirrorSummary(RecordSummary):
    """The record summary plus the record-set digest of the selection (the mirror's state)."""

    record_set: RecordSet = field(default_factory=RecordSet)


def _row_key(row: LedgerRow) -> bytes:
    return record_key(row["kind"], row["upstream_id"], row["modified"], row["digest"])


def _row_pairs(batch: Iterable[LedgerRow]) -> Pairs:
    """(record key, line digest) of each row: json:raw's items (its compiled builder), digested."""
    return [(key, line_digest(line)) for _kind, key, line in row_items(list(batch))]


class _RecordSetFn(beam.CombineFn):  # type: ignore[misc]
    def create_accumulator(self) -> RecordSet:
        return RecordSet()

    def add_input(self, acc: RecordSet, batch: RowBatch) -> RecordSet:
        return acc.merge(RecordSet.of(_row_pairs(batch)))

    def merge_accumulators(self, accumulators: Iterable[RecordSet]) -> RecordSet:
        total = RecordSet()
        for acc in accumulators:
            total = total.merge(acc)
        return total

    def extract_output(self, acc: RecordSet) -> RecordSet:
        return acc


class SummarizeMirror(beam.PTransform):  # type: ignore[misc]
    """Batches of rows -> one MirrorSummary: counts, high-water mark and record-set digest."""

    def expand(self, batches: beam.PCollection) -> beam.PCollection:
        summary = batches | "SummarizeRecords" >> SummarizeRecords(rows=True)
        record_set = batches | "DigestRecordSet" >> beam.CombineGlobally(_RecordSetFn()).with_output_types(
            RecordSet
        )

        def combine(summary: RecordSummary, record_set: RecordSet) -> MirrorSummary:
            return MirrorSummary(summary.counts, summary.high_water, record_set)

        return summary | "AddRecordSet" >> beam.Map(
            combine, record_set=beam.pvalue.AsSingleton(record_set)
        ).with_output_types(MirrorSummary)


def _by_bucket(pairs: Pairs) -> Iterator[tuple[int, Pairs]]:
    buckets: defaultdict[int, Pairs] = defaultdict(list)
    for key, digest in pairs:
        buckets[bucket_of(key)].append((key, digest))
    yield from buckets.items()


def _keys_by_bucket(keys: list[bytes]) -> Iterator[tuple[int, list[bytes]]]:
    buckets: defaultdict[int, list[bytes]] = defaultdict(list)
    for key in keys:
        buckets[bucket_of(key)].append(key)
    yield from buckets.items()


@dataclass(frozen=True)
class Reselected:
    """What one batch of the base's segments gives a delta (see :func:`reselect`)."""

    entering: RowBatch
    leaving: list[bytes]
    high: str | None


class ReselectBaseRecords(beam.PTransform):  # type: ignore[misc]
    """Batches of the base's segments' rows -> Reselected: rows now selected and not before, keys
    no longer selected, and the high-water mark of what is selected now.

    One output type, split by the caller with plain maps: tagged outputs are not carried
    the same way by every runner (the Dask runner mixes them into the main output).
    """

    def __init__(self, base: Selectors, current: Selectors) -> None:
        super().__init__()
        self._base = base
        self._current = current

    def expand(self, batches: beam.PCollection) -> beam.PCollection:
        base, current = self._base, self._current

        def split(batch: RowBatch) -> Reselected:
            entering, leaving, high = reselect(batch, base, current)
            return Reselected(RowBatch(entering), leaving, high)

        return batches | "SplitBySelection" >> beam.Map(split).with_output_types(Reselected)


class DigestRecords(beam.PTransform):  # type: ignore[misc]
    """Batches of rows -> lists of (record key, content digest): the only records a delta hashes."""

    def expand(self, batches: beam.PCollection) -> beam.PCollection:
        return batches | "DigestLines" >> beam.Map(_row_pairs)


class DiffAgainstBase(beam.PTransform):  # type: ignore[misc]
    """(carried pairs, leaving keys) -> lists of Change, one per bucket that changed.

    The base side is looked up in the base's chain (:func:`base_digests`, reading only the
    members the driver staged: ``chain`` holds URLs, never a path of the driver) for the keys
    either side names, and joined on the record key's bucket (``CoGroupByKey``): a
    leaving key the base does not hold means the base and the ledger disagree.
    """

    def __init__(self, chain: Sequence[BaseLink]) -> None:
        super().__init__()
        self._chain = tuple(chain)

    def expand(self, sides: tuple[beam.PCollection, beam.PCollection]) -> beam.PCollection:
        carried, leaving = sides
        chain = self._chain
        export_id = chain[-1].export_id

        def wanted(parts: Iterable[list[bytes]]) -> list[bytes]:
            return sorted({key for part in parts for key in part})

        carried_keys = carried | "CarriedKeys" >> beam.Map(lambda pairs: [key for key, _digest in pairs])
        keys = (
            (carried_keys, leaving)
            | "FlattenTouched" >> beam.Flatten()
            | "CollectTouched" >> beam.combiners.ToList()
            | "TouchedKeys" >> beam.Map(wanted)
        )
        base = (
            carried.pipeline
            | "StartLookUp" >> beam.Create([None])
            | "LookUpBase"
            >> beam.FlatMap(
                lambda _, keys: _by_bucket(sorted(base_digests(chain, keys).items())),
                keys=beam.pvalue.AsSingleton(keys),
            )
        )

        def diff(element: tuple[int, dict[str, Iterable[Any]]]) -> Iterator[list[Change]]:
            _bucket, grouped = element
            before = [p for part in grouped["base"] for p in part]
            held = {key for key, _digest in before}
            for part in grouped["leaving"]:
                for key in part:
                    if key not in held:
                        raise BaseMissingError(
                            f"base {export_id} does not hold record {key_fields(key)[1]} that the ledger's "
                            "segments give it; export mirror:full instead",
                            details={"base": export_id},
                        )
            changes = diff_pairs((p for part in grouped["current"] for p in part), before)
            if changes:
                yield changes

        return (
            {
                "current": carried | "KeyCurrentByBucket" >> beam.FlatMap(_by_bucket),
                "leaving": leaving | "KeyLeavingByBucket" >> beam.FlatMap(_keys_by_bucket),
                "base": base,
            }
            | "JoinOnRecordKey" >> beam.CoGroupByKey()
            | "CompareDigests" >> beam.FlatMap(diff)
        )


def delta_summary(
    carried: RecordSummary,
    changes: Iterable[list[Change]],
    base_counts: Mapping[str, int],
    base_set: RecordSet,
    highs: Iterable[str],
) -> MirrorSummary:
    """The current selection's summary from the base's and the changes, without its records.

    Counts and record set are the base's, less what was removed or replaced, plus what
    was added or replaced in: what the importer finds after applying the changes.
    """
    counts = Counter(base_counts)
    total = base_set.total
    records = base_set.records
    for part in changes:
        for change in part:
            kind = key_fields(change.key)[0]
            if change.old_digest is not None:
                total -= set_term(change.key, change.old_digest)
                records -= 1
                counts[kind] -= 1
            if change.digest is not None:
                total += set_term(change.key, change.digest)
                records += 1
                counts[kind] += 1
    return MirrorSummary(
        {k: n for k, n in sorted(counts.items()) if n},
        later(carried.high_water, *highs),
        RecordSet(total % (1 << 256), records),
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
    """Batches of rows -> batches of only the added or changed rows (the delta's payload).

    ``changes`` is the delta's changes collected once (one element: every list of Change),
    shared with :class:`WriteChanges` and the summary.
    """

    def __init__(self, changes: beam.PCollection) -> None:
        super().__init__()
        self._changes = changes

    def expand(self, batches: beam.PCollection) -> beam.PCollection:
        def carried(parts: Iterable[list[Change]]) -> frozenset[bytes]:
            return frozenset(c.key for part in parts for c in part if c.op in (ADD, CHANGE))

        keys = self._changes | "CarriedKeys" >> beam.Map(carried)

        def keep(batch: RowBatch, wanted: frozenset[bytes]) -> Iterator[RowBatch]:
            kept = RowBatch(r for r in batch if _row_key(r) in wanted)
            if kept:
                yield kept

        return batches | "KeepChanged" >> beam.FlatMap(
            keep, wanted=beam.pvalue.AsSingleton(keys)
        ).with_output_types(RowBatch)


class WriteChanges(beam.PTransform):  # type: ignore[misc]
    """The changes collected (one element: every list of Change) -> the ContentEntry of
    ``data/delta/changes.jsonl.zst`` (always written)."""

    def __init__(self, staging: str) -> None:
        super().__init__()
        self._staging = staging

    def expand(self, changes: beam.PCollection) -> beam.PCollection:
        staging = self._staging

        def write(parts: list[list[Change]]) -> ContentEntry:
            ordered = sorted(c for part in parts for c in part)
            return write_jsonl_shard(staging, CHANGES_PATH, (c.to_line() for c in ordered))

        return changes | "WriteChangeList" >> beam.Map(write).with_output_types(ContentEntry)
