"""Re-sharding one group of a mirror state whose shard count a delta changes.

A group's shard count is a pure function of its row count, so a delta that moves a
group across a multiple of ``recordsPerShard`` moves that group's rows between shards,
and only that group's: every other group keeps its shards and is patched
(:mod:`stella.mirror.patch`). Each new shard covers a contiguous bucket range, which
overlaps one or a few old shards; it is built from the rows of those old shards whose
bucket falls in its range, less the delta's removals, plus its additions, in sort-key
order, and written with the exporter's writers, so the bytes are a mirror:full's.

* A **raw** group: each overlapping old shard is streamed line by line beside its
  record keys (from the record index, in order), the lines of the range are merged by
  key with the new lines (:func:`heapq.merge`), and the dropped lines are handed back
  (their index rows are removed from the indexes). Nothing is parsed but the dropped lines.
* An **index** group: the old shards are read one at a time (Arrow), less the removed
  rows; each row's sort key (its term, then its record key) needs the record key, which
  an index row does not hold (only kind, id and digest): it is looked up in the new
  record index, held in parts of about ``_LOOKUP_BYTES`` (:class:`_Lookup`). A new shard
  is written once the last old shard overlapping it has been read.

Memory is a few old shards (bounded by the shard-count function) plus one lookup part,
whatever the mirror's size; time is the group's size plus the delta (and, past one
lookup part, the record index read again per old shard). Anything unexpected raises
:class:`LayoutMismatch` and the caller rebuilds the whole state.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from hashlib import blake2b
from heapq import merge
from itertools import chain
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stella.adapters.mirror.indexes import INDEX_GROUP, index_table, write_parquet_table
from stella.adapters.mirror.items import mirror_shard_path
from stella.bundle.manifest import ContentEntry
from stella.bundle.shards import write_jsonl_shard
from stella.errors import BundleIntegrityError
from stella.guards.streams import iter_lines, open_decompressed
from stella.sorting import BUCKETS, bucket_of, shard_of_bucket

__all__ = [
    "KIND_OF_INDEX",
    "LayoutMismatch",
    "Row",
    "drop_rows",
    "reshard_index",
    "reshard_raw",
    "shards_of_rows",
]

Row = tuple[bytes, bytes]  # (sort key, value): a raw line or an index row as canonical JSON
KIND_OF_INDEX: Final = {"sboms": "sbom"}  # the kind of every row of an index without a kind column
_SORT_KEY: Final = "sortKey"
_JOIN: Final = ["kind", "id", "digest"]
# The record index's (kind NUL id NUL digest, key) held at once to look up index rows'
# record keys: ~220 bytes a record, so one lookup up to ~1M records, more beyond.
_LOOKUP_BYTES: Final = 256 * 1024 * 1024


class LayoutMismatch(Exception):
    """The old state is not laid out as its record index says: rebuild instead."""


def shards_of_rows(total: int, rows: Sequence[Row]) -> dict[int, list[Row]]:
    """``rows`` by the shard of their sort key's bucket among ``total`` shards, each list sorted."""
    split: defaultdict[int, list[Row]] = defaultdict(list)
    for row in rows:
        split[shard_of_bucket(bucket_of(row[0]), total)].append(row)
    return {index: sorted(part) for index, part in split.items()}


def _sources(index: int, total: int, old_total: int) -> list[int]:
    """The old shards whose buckets overlap new shard ``index``, in order."""
    buckets = [b for b in range(BUCKETS) if shard_of_bucket(b, total) == index]
    return sorted({shard_of_bucket(b, old_total) for b in buckets})


def reshard_raw(
    old: Path,
    staging: Path,
    group: str,
    shards: Mapping[int, ContentEntry],
    totals: tuple[int, int],
    old_keys: Callable[[int], list[bytes]],
    gone: set[bytes],
    new: Mapping[int, Sequence[Row]],
    dropped: list[Row],
) -> list[ContentEntry]:
    """Write raw group ``group`` with ``totals`` = (old, new) shard counts; (key, line) of each line of a
    key in ``gone`` goes to ``dropped``.

    ``old_keys(i)``: the record keys of old shard ``i``, in order (the order of its lines).
    """
    old_total, total = totals
    entries: list[ContentEntry] = []
    for index in range(total):
        streams = [
            _range_lines(old, shards.get(i), old_keys(i), index, total, gone, dropped)
            for i in _sources(index, total, old_total)
        ]
        rows = merge(*streams, new.get(index, ()))
        first = next(rows, None)
        if first is not None:
            path = mirror_shard_path(group, index, total)
            lines = (line for _key, line in chain([first], rows))
            entries.append(write_jsonl_shard(str(staging), path, lines))
    return entries


def _range_lines(
    old: Path,
    entry: ContentEntry | None,
    keys: list[bytes],
    index: int,
    total: int,
    gone: set[bytes],
    dropped: list[Row],
) -> Iterator[Row]:
    """(key, line) of the old shard's lines whose bucket falls in new shard ``index``, less ``gone``."""
    if entry is None:
        if keys:
            raise LayoutMismatch(f"{len(keys)} records of a shard that does not exist")
        return
    reader = open_decompressed(
        (old / entry.path).open("rb"), "zstd", what=entry.path, error=BundleIntegrityError
    )
    with reader:
        number = 0
        for line in iter_lines(reader):
            if number == len(keys) or line.oversized:
                raise LayoutMismatch(entry.path)
            key = keys[number]
            number += 1
            if shard_of_bucket(bucket_of(key), total) != index:
                continue
            if key in gone:
                dropped.append((key, line.data))
                continue
            yield key, line.data
        if number != len(keys):
            raise LayoutMismatch(entry.path)


def reshard_index(
    old: Path,
    staging: Path,
    name: str,
    shards: Mapping[int, ContentEntry],
    totals: tuple[int, int],
    gone: Sequence[Row],
    new: Sequence[Row],
    records: Sequence[Path],
) -> list[ContentEntry]:
    """Write index ``name`` with ``totals`` = (old, new) shard counts, less ``gone``, plus ``new``.

    ``records``: the new state's record-index shards (the record keys of every row).
    """
    old_total, total = totals
    lookup = _Lookup(records if name != "records" else [])
    gone_by_shard = shards_of_rows(old_total, gone)
    new_by_shard = shards_of_rows(total, new)
    last = {index: _sources(index, total, old_total)[-1] for index in range(total)}
    pending: defaultdict[int, list[pa.Table]] = defaultdict(list)
    entries: list[ContentEntry] = []
    for i in range(old_total):
        entry = shards.get(i)
        if entry is not None:
            table = drop_rows(name, pq.read_table(old / entry.path), gone_by_shard.pop(i, []))
            table = table.append_column(_SORT_KEY, _sort_keys(name, table, lookup.parts()))
            buckets = pa.array(_buckets(table[_SORT_KEY].to_pylist()), pa.int32())
            target = pc.divide(pc.multiply(buckets, total), BUCKETS)  # shard_of_bucket, vectorized
            for index in pc.unique(target).to_pylist():
                pending[index].append(table.filter(pc.equal(target, index)))
            del table, buckets, target
        for index in [j for j, at in last.items() if at == i]:
            entries += _write_shard(
                staging, name, index, total, pending.pop(index, []), new_by_shard.get(index, [])
            )
            pa.default_memory_pool().release_unused()
    if gone_by_shard:
        raise LayoutMismatch(f"{name}: removed rows of a shard that does not exist")
    return entries


def _write_shard(
    staging: Path, name: str, index: int, total: int, pieces: list[pa.Table], new: Sequence[Row]
) -> list[ContentEntry]:
    added = index_table(name, [json.loads(value) for _key, value in new])
    added = added.append_column(_SORT_KEY, pa.array([key for key, _value in new], pa.binary()))
    table = pa.concat_tables([*pieces, added]) if pieces else added
    if not table.num_rows:
        return []
    # Rows with one sort key are one record's row for one term: equal rows, so ties need no order.
    order = pc.sort_indices(table, sort_keys=[(_SORT_KEY, "ascending")])
    path = mirror_shard_path(INDEX_GROUP + name, index, total)
    return [write_parquet_table(str(staging), path, table, order)]


class _Lookup:
    """The new record index as (kind NUL id NUL digest, record key) arrays of about ``_LOOKUP_BYTES`` each.

    Up to ~1M records that is one pair, read once and kept: each old index shard is
    looked up once. A larger mirror is read again, a pair at a time, for each old
    shard, so memory stays one pair whatever the mirror's size.
    """

    def __init__(self, records: Sequence[Path]) -> None:
        self._records = records
        parts = self._read()
        first, second = next(parts, None), next(parts, None)
        self._kept = [first] if first is not None and second is None else None
        del first, second

    def parts(self) -> Iterator[tuple[pa.Array, pa.Array]]:
        return iter(self._kept) if self._kept is not None else self._read()

    def _read(self) -> Iterator[tuple[pa.Array, pa.Array]]:
        names: list[pa.Array] = []
        keys: list[pa.Array] = []
        size = 0
        for at, path in enumerate(self._records, 1):
            table = pq.read_table(path, columns=["key", *_JOIN])  # one record-index shard at a time
            names.append(_names(table["kind"], table))
            keys.append(table["key"].combine_chunks())
            del table
            size += names[-1].nbytes + keys[-1].nbytes
            if size >= _LOOKUP_BYTES or at == len(self._records):
                known = pa.concat_arrays(names)
                if pc.count_distinct(known).as_py() != len(known):
                    raise LayoutMismatch("two records with one (kind, id, digest)")
                yield known, pa.concat_arrays(keys)
                names, keys, size = [], [], 0


def _names(kind: pa.Array | pa.ChunkedArray, table: pa.Table) -> pa.Array:
    """kind NUL id NUL digest: what an index row and its record have in common."""
    return pc.binary_join_element_wise(kind, table["id"], table["digest"], "\x00").combine_chunks()


def _buckets(keys: Sequence[bytes]) -> list[int]:
    """:func:`bucket_of` of each key, inlined (the bucket is the 16-bit digest mod 64: its low byte's 6 bits)."""
    return [blake2b(key, digest_size=2).digest()[1] & (BUCKETS - 1) for key in keys]


def _sort_keys(name: str, table: pa.Table, lookup: Iterable[tuple[pa.Array, pa.Array]]) -> pa.Array:
    """Each row's sort key: the record key (records), or its term, a NUL and its record's key."""
    if name == "records":
        return table["key"].combine_chunks()
    size = table.num_rows
    kind = table["kind"] if "kind" in table.column_names else pa.repeat(KIND_OF_INDEX.get(name, name), size)
    names = _names(kind, table)
    keys = pa.nulls(size, pa.binary())
    hits = 0
    for known, record_keys in lookup:
        at = pc.index_in(names, value_set=known)
        found = pc.is_valid(at)
        hits += pc.sum(found).as_py() or 0
        keys = pc.if_else(found, record_keys.take(at), keys)
    if hits != size or keys.null_count:
        raise LayoutMismatch(f"{name}: a row of no record, or of two")
    term = table.column(0).cast(pa.binary())
    return pc.binary_join_element_wise(term, keys, pa.scalar(b"\x00", pa.binary())).combine_chunks()


def _identity(name: str, table: pa.Table) -> pa.ChunkedArray:
    """One value per row that names it: the record key, or every column of the row."""
    if name == "records":
        return table["key"]
    return pc.binary_join_element_wise(*(table[c] for c in table.column_names), "\x00")


def drop_rows(name: str, table: pa.Table, rows: Sequence[Row]) -> pa.Table:
    """``table`` less exactly ``rows`` (candidates first by document digest, so few rows are joined)."""
    if not rows:
        return table
    values = index_table(name, [json.loads(v) for _k, v in rows])
    column = "key" if name == "records" else "digest"
    candidates = pc.indices_nonzero(pc.is_in(table[column], value_set=values[column]))
    hits = pc.is_in(_identity(name, table.take(candidates)), value_set=_identity(name, values))
    gone = pc.filter(candidates, hits)
    if len(gone) != len(rows):
        raise LayoutMismatch(name)
    keep = pc.invert(pc.is_in(pa.array(range(table.num_rows), pa.uint64()), value_set=gone))
    return table.filter(keep)
