"""``AdaptRecords`` and ``WriteSortedShards``: from records to sorted, hashed payload files.

``WriteSortedShards`` is an external sort spread over Beam: ``WriteRunsFn`` sorts what
each worker has into run files and emits only small descriptors (one packed
``SliceTable`` per run file and group); descriptors are split by shard (a pure function
of the record key and the group's size) and grouped; each ``MergeShardFn`` streams its
runs back in key order into one output file. No document ever passes through the
shuffle, which keeps memory flat on the in-process runner.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import chain

import apache_beam as beam

from stella.adapters.interface import RecordAdapter
from stella.bundle.manifest import ContentEntry
from stella.model import LedgerRecord, LedgerRow
from stella.runtime import tune_gc
from stella.slicetable import SliceTable, slices_of
from stella.sorting import (
    BUCKETS,
    SortItem,
    merge_slices,
    shard_count,
    shard_of_bucket,
    write_run,
)
from stella.telemetry.tracing import TraceContext, stage_span
from transforms.coders import ItemBatch
from transforms.progress import relay_progress

__all__ = [
    "RUNS_DIR",
    "AdaptRecords",
    "AdaptRows",
    "MergeShardFn",
    "ShardRuns",
    "ShardWriter",
    "WriteRuns",
    "WriteRunsFn",
    "WriteSortedShards",
]

_LOG = logging.getLogger(__name__)

RUNS_DIR = ".runs"
"""Where sorted runs go under a run's staging root (never part of the bundle)."""
ShardWriter = Callable[[str, str, Iterator[tuple[bytes, bytes]]], ContentEntry]
"""(output root, relative path, sorted (key, value) pairs) -> the written file's entry."""
RowsAdapter = Callable[[list[LedgerRow]], list[SortItem]]
"""A batch of ledger rows -> its (group, key, value) items: an adapter of the row read path."""
PathFor = Callable[[str, int, int], str]
"""(group, shard index, shard total) -> relative output path."""


class AdaptRecords(beam.PTransform):  # type: ignore[misc]
    """Batches of records -> batches of (group, key, value) items, via a pure adapter."""

    def __init__(self, adapter: RecordAdapter, trace: TraceContext = ()) -> None:
        super().__init__()
        self._adapter = adapter
        self._trace = trace

    def expand(self, batches: beam.PCollection) -> beam.PCollection:
        adapter, trace = self._adapter, self._trace

        def adapt(batch: list[LedgerRecord]) -> ItemBatch:
            with stage_span("export.adapt", trace, **{"stella.records": len(batch)}):
                return ItemBatch(chain.from_iterable(map(adapter, batch)))  # no Python step per item

        return batches | "ApplyAdapter" >> beam.Map(adapt).with_output_types(ItemBatch)


class AdaptRows(beam.PTransform):  # type: ignore[misc]
    """Batches of ledger rows -> batches of (group, key, value) items, via a pure batch adapter.

    The adapter takes the whole batch: one call per batch, its loop a comprehension.
    """

    def __init__(self, adapter: RowsAdapter, trace: TraceContext = ()) -> None:
        super().__init__()
        self._adapter = adapter
        self._trace = trace

    def expand(self, batches: beam.PCollection) -> beam.PCollection:
        adapter, trace = self._adapter, self._trace

        def adapt(batch: list[LedgerRow]) -> ItemBatch:
            with stage_span("export.adapt", trace, **{"stella.records": len(batch)}):
                return ItemBatch(adapter(batch))

        return batches | "ApplyAdapter" >> beam.Map(adapt).with_output_types(ItemBatch)


class WriteRunsFn(beam.DoFn):  # type: ignore[misc]
    """Writes each incoming batch as one sorted run and emits its slices, one table per group.

    Deliberately stateless (one run per element, nothing emitted from
    ``finish_bundle``): the Dask runner drops finish_bundle output, and batches are
    already large (see ``ReadLedger``), so runs stay few. ``bucketed=False`` is for
    merges that take every bucket of a group (one output file, no shards).
    """

    def __init__(
        self, temp_dir: str, *, bucketed: bool = True, max_shards: int | Mapping[str, int] = BUCKETS
    ) -> None:
        self._temp_dir = temp_dir
        self._bucketed = bucketed
        self._max_shards = max_shards

    def setup(self) -> None:
        tune_gc()

    def process(self, items: list[SortItem]) -> Iterator[SliceTable]:
        yield from SliceTable.pack(
            write_run(self._temp_dir, items, bucketed=self._bucketed, max_shards=self._max_shards)
        )


class MergeShardFn(beam.DoFn):  # type: ignore[misc]
    """Merges one shard's slices into its output file (bounded fan-in: see stella.sorting)."""

    def __init__(
        self, out_root: str, path_for: PathFor, writer: ShardWriter, temp_dir: str, trace: TraceContext = ()
    ) -> None:
        self._root = out_root
        self._path_for = path_for
        self._writer = writer
        self._temp_dir = temp_dir
        self._trace = trace

    def setup(self) -> None:
        tune_gc()
        relay_progress()

    def process(self, element: tuple[tuple[str, int, int], Iterable[SliceTable]]) -> Iterator[ContentEntry]:
        (group, index, total), tables = element
        path = self._path_for(group, index, total)
        with stage_span("export.write", self._trace, **{"stella.shard": path}):
            entry = self._writer(self._root, path, merge_slices(slices_of(tables), temp_dir=self._temp_dir))
        _LOG.info(
            "wrote %s: %s records, %d bytes",
            path,
            entry.records,
            entry.bytes,
            extra={"progress": {"stage": "write", "records": entry.records or 0, "bytes": entry.bytes}},
        )
        yield entry


class WriteRuns(beam.PTransform):  # type: ignore[misc]
    """Batches of (group, key, value) -> the slice tables of their sorted run files.

    Apply it right after each producer and flatten the *descriptors*: the in-process
    runner materializes a multi-input ``Flatten`` in memory, so flattening the batches
    themselves would hold every item of the run.

    ``max_shards``: no group will get more shards than this (see ``WriteSortedShards``),
    so each run slice may span a whole :func:`~stella.sorting.bucket_ranges` range.
    """

    def __init__(self, temp_dir: str, *, max_shards: int | Mapping[str, int] = BUCKETS) -> None:
        super().__init__()
        self._temp_dir = temp_dir
        self._max_shards = max_shards

    def expand(self, batches: beam.PCollection) -> beam.PCollection:
        return batches | "WriteRunFiles" >> beam.ParDo(
            WriteRunsFn(self._temp_dir, max_shards=self._max_shards)
        ).with_output_types(SliceTable)


class ShardRuns(beam.PTransform):  # type: ignore[misc]
    """Slice tables -> one ContentEntry per written shard (see ``WriteSortedShards``).

    A group's tables are split by shard and joined, so the second shuffle carries one table
    per shard (see stella.slicetable for why not one element per slice).
    """

    def __init__(
        self, *, out_root: str, path_for: PathFor, writer: ShardWriter, records_per_shard: int, temp_dir: str,
        trace: TraceContext = (),
    ) -> None:  # fmt: skip
        super().__init__()
        if records_per_shard < 1:
            raise ValueError(f"records_per_shard must be positive, got {records_per_shard}")
        self._merge = MergeShardFn(out_root, path_for, writer, temp_dir, trace)
        self._per_shard = records_per_shard

    def expand(self, slices: beam.PCollection) -> beam.PCollection:
        per_shard = self._per_shard

        def assign(
            element: tuple[str, Iterable[SliceTable]],
        ) -> Iterator[tuple[tuple[str, int, int], SliceTable]]:
            group, tables = element
            listed = list(tables)
            total = shard_count(sum(table.count for table in listed), records_per_shard=per_shard)

            def shard_of(bucket: int, width: int) -> int:
                shard = shard_of_bucket(bucket, total)
                if shard_of_bucket(bucket + width - 1, total) != shard:
                    # a max_shards bound below the real shard count: never guess a layout
                    raise ValueError(
                        f"run slice of group {group!r} spans buckets {bucket}-{bucket + width - 1}, "
                        f"split by {total} shards"
                    )
                return shard

            parts: dict[int, list[SliceTable]] = {}
            for table in listed:
                for shard, part in table.split(shard_of).items():
                    parts.setdefault(shard, []).append(part)
            for shard, pieces in sorted(parts.items()):
                yield (group, shard, total), SliceTable.join(group, pieces)

        # Group sizes come from a GroupByKey of descriptors, not a combiner feeding an
        # AsDict side input: the Dask runner miscounts the latter (seen: 5x), and a
        # wrong count would silently change the shard layout.
        return (
            slices
            | "KeyByGroup" >> beam.Map(lambda piece: (piece.group, piece))
            | "GroupRunsByGroup" >> beam.GroupByKey()
            | "AssignShards" >> beam.FlatMap(assign)
            | "GroupRunsByShard" >> beam.GroupByKey()
            | "MergeShards" >> beam.ParDo(self._merge).with_output_types(ContentEntry)
        )


class WriteSortedShards(beam.PTransform):  # type: ignore[misc]
    """Batches of (group, key, value) -> one ContentEntry per written shard: ``WriteRuns`` + ``ShardRuns``.

    Args:
        temp_dir: where run files go (must be visible to every worker).
        out_root: the bundle staging root the shard paths are relative to.
        path_for: names shard files; must be a pure function.
        writer: writes one shard from its sorted pairs.
        records_per_shard: a group with n items gets ceil(n / records_per_shard) shards,
            at most ``sorting.BUCKETS``.
        max_items: an upper bound on the items of any one group, when the caller knows one
            (json:raw: the selected segments' record count, one item per record), or a
            mapping of such bounds for the groups that have one (mirror:full: its record
            groups; groups not in it are unbounded). It bounds the shard count before any
            item is seen, so runs hold one slice per bucket range no shard can split instead
            of one per bucket: the merges open several times fewer slices. Same bytes either
            way; a bound that proves wrong fails the run instead of moving records.
    """

    def __init__(
        self,
        *,
        temp_dir: str,
        out_root: str,
        path_for: PathFor,
        writer: ShardWriter,
        records_per_shard: int,
        trace: TraceContext = (),
        max_items: int | Mapping[str, int] | None = None,
    ) -> None:
        super().__init__()
        self._shards = ShardRuns(
            out_root=out_root, path_for=path_for, writer=writer, records_per_shard=records_per_shard,
            temp_dir=temp_dir, trace=trace,
        )  # fmt: skip
        per_shard = records_per_shard
        max_shards: int | dict[str, int] = BUCKETS
        if isinstance(max_items, int):
            max_shards = shard_count(max_items, records_per_shard=per_shard)
        elif max_items is not None:
            max_shards = {
                group: shard_count(n, records_per_shard=per_shard) for group, n in max_items.items()
            }
        self._runs = WriteRuns(temp_dir, max_shards=max_shards)

    def expand(self, batches: beam.PCollection) -> beam.PCollection:
        return batches | "WriteRuns" >> self._runs | "ShardRuns" >> self._shards
