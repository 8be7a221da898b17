"""``JoinRuns``: a co-group of sides already spilled to sorted runs, one partition per element.

Beam's ``CoGroupByKey`` would shuffle the joined values themselves, and the in-process
runner holds a shuffled PCollection in memory (measured: peak RSS growing with the
input). Here each side is first written as sorted runs (``WriteRuns``, fused with its
producer); only the run descriptors are grouped, by partition of hash buckets; each
partition's runs are merged back per side and co-grouped by a sort-merge (``stella.sorting``), one join
key at a time. Memory: one key group plus a read buffer per run, whatever the input.
"""

from __future__ import annotations

import typing
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import apache_beam as beam
from apache_beam import typehints

from stella.slicetable import SliceTable
from stella.sorting import (
    BATCH_BYTES,
    DEFAULT_FAN_IN,
    RunSlice,
    SortItem,
    cogroup_sorted,
    merge_slices,
    shard_of_bucket,
)
from transforms.coders import ItemBatch

__all__ = ["COUNTS", "ITEMS", "PARTITIONS", "JoinBucketFn", "JoinRuns", "KeyJoin"]

PARTITIONS = 8
"""Join partitions, each a contiguous range of hash buckets. Every partition writes at least
one run per next step, each run one slice per bucket, and a merge opens at most
``sorting.DEFAULT_FAN_IN`` slices before spilling: 8 x 64 slices stay within it, enough
partitions to keep two to eight workers busy."""
ITEMS = "items"
COUNTS = "counts"
KeyJoin = Callable[[bytes, Mapping[str, Sequence[bytes]], Any], tuple[list[SortItem], Counter[str]]]
"""(join key, {side: that key's encoded values}, context) -> (items for the next step, counts)."""


class JoinBucketFn(beam.DoFn):  # type: ignore[misc]
    """One partition's run slices -> ``join`` applied to every key, its items batched.

    Emits (``ItemBatch`` of at most ``batch_size`` items or about ``BATCH_BYTES``, counts) pairs: the next
    ``WriteRuns`` turns each batch into one run; the partition's summed counts come with
    its last batch (empty before). Pairs, not a tagged output: the Dask runner mixes tagged
    outputs into the main one.

    The sides' merges run side by side, so they share one fan-in: ``fan_in`` open slices in
    all (each side gets its share), never ``fan_in`` per side.
    """

    def __init__(
        self,
        sides: Sequence[str],
        join: KeyJoin,
        temp_dir: str,
        batch_size: int,
        *,
        fan_in: int = DEFAULT_FAN_IN,
    ) -> None:
        self._sides = tuple(sides)
        self._join = join
        self._temp_dir = temp_dir
        self._batch_size = batch_size
        self._fan_in = max(2, fan_in // max(1, len(self._sides)))

    def process(self, element: tuple[int, Iterable[SliceTable]], context: Any = None) -> Iterator[Any]:
        _partition, tables = element
        by_side: dict[str, list[RunSlice]] = {side: [] for side in self._sides}
        for table in tables:
            by_side[table.group] += table.slices()
        streams: Mapping[str, Iterable[tuple[bytes, bytes]]] = {
            side: merge_slices(listed, temp_dir=self._temp_dir, fan_in=self._fan_in)
            for side, listed in by_side.items()
        }
        batch, counts, size = ItemBatch(), Counter[str](), 0
        for key, groups in cogroup_sorted(streams):
            items, found = self._join(key, groups, context)
            batch.extend(items)
            size += sum(len(item[1]) + len(item[2]) for item in items)
            counts.update(found)
            if len(batch) >= self._batch_size or size >= BATCH_BYTES:
                yield batch, Counter[str]()
                batch, size = ItemBatch(), 0
        yield batch, counts


def _partition_of(bucket: int, _width: int) -> int:
    return shard_of_bucket(bucket, PARTITIONS)


class JoinRuns(beam.PTransform):  # type: ignore[misc]
    """Slice tables -> ``{"items": ItemBatch, "counts": Counter}`` from ``join`` per key.

    Slices are grouped by partition (``PARTITIONS`` contiguous ranges of buckets; a key's
    bucket is a hash of the key, so a key's values all meet in one partition).

    Slices of groups other than ``sides`` are ignored, so one set of runs can feed
    several joins. ``context`` (e.g. an ``AsSingleton`` side input) is passed to every
    call of ``join``; without it, ``None``.
    """

    def __init__(
        self, sides: Sequence[str], join: KeyJoin, *, temp_dir: str, batch_size: int = 20_000,
        context: Any = None,
    ) -> None:  # fmt: skip
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self._sides = frozenset(sides)
        self._fn = JoinBucketFn(sorted(sides), join, temp_dir, batch_size)
        self._context = () if context is None else (context,)

    def expand(self, slices: beam.PCollection) -> dict[str, beam.PCollection]:
        sides = self._sides
        pairs = (
            slices
            | "KeyByPartition"
            >> beam.FlatMap(lambda table: table.split(_partition_of).items() if table.group in sides else [])
            | "GroupRunsByPartition" >> beam.GroupByKey()
            | "JoinPartitions"
            >> beam.ParDo(self._fn, *self._context).with_output_types(typehints.Tuple[ItemBatch, typing.Any])
        )
        items = pairs | "KeepItems" >> beam.FlatMap(
            lambda pair: [pair[0]] if pair[0] else []
        ).with_output_types(ItemBatch)
        counts = pairs | "KeepCounts" >> beam.FlatMap(lambda pair: [pair[1]] if pair[1] else [])
        return {ITEMS: items, COUNTS: counts}
