"""Applying a delta by rewriting only the shard files it touches.

A mirror state is laid out exactly as a mirror:full of the same records
(:mod:`stella.mirror.rebuild`): per group (a record kind, or an index) a shard count
that is a pure function of the group's row count, each row in the shard of its sort
key's bucket, rows sorted by key within a shard. While a delta leaves every group's
shard count as it was, a row never moves to another shard, so:

* a shard no change lands in is the same file: it is hard-linked into the new state;
* a touched raw shard is its old lines (their keys come from the old record index, in
  order, so kept lines are never parsed) less the dropped records, merged with the new
  lines;
* a touched index shard is its old Parquet table less the dropped records' rows, plus
  the new rows, sorted in Arrow by the sort key's columns (``modified`` joined from the
  record index) and written with the same settings (:func:`write_parquet_table`).

The dropped records' old lines give their exact index rows, so nothing else of the old
state is parsed. Anything outside that case (a shard count changes, rows that do not
match) returns None and the caller rebuilds the whole state, which gives the same bytes.
"""

from __future__ import annotations

import heapq
import json
import os
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stella.adapters.mirror.delta import ADD, Change
from stella.adapters.mirror.indexes import INDEX_GROUP, INDEX_SCHEMAS, index_table, write_parquet_table
from stella.adapters.mirror.items import items_of_line, mirror_shard_path, write_mirror_shard
from stella.bundle.manifest import ContentEntry
from stella.errors import BundleIntegrityError
from stella.guards.streams import iter_lines, open_decompressed
from stella.model import Kind
from stella.sorting import bucket_of, shard_count, shard_of_bucket

__all__ = ["patch_state"]

_PART = re.compile(r"part-(\d{5})-of-(\d{5})\.")
_KINDS: Final = {kind.plural: kind.value for kind in Kind}
_RECORDS: Final = INDEX_GROUP + "records"
Row = tuple[bytes, bytes]  # (sort key, value): a raw line or an index row as canonical JSON


def _group_of(path: str) -> str:
    parts = path.split("/")
    return _KINDS[parts[2]] if parts[1] == "raw" else INDEX_GROUP + parts[2]


def _shard(path: str) -> tuple[int, int]:
    match = _PART.search(path.rsplit("/", 1)[-1])
    if match is None:
        raise BundleIntegrityError(f"{path} is not a shard file name", details={"file": path})
    return int(match.group(1)), int(match.group(2))


def patch_state(
    old: Path,
    contents: Sequence[ContentEntry],
    changes: Mapping[bytes, Change],
    carried: Mapping[bytes, bytes],
    staging: Path,
    *,
    records_per_shard: int,
) -> list[ContentEntry] | None:
    """The new state's files under ``staging`` and their entries, or None to rebuild instead."""
    groups: defaultdict[str, dict[int, ContentEntry]] = defaultdict(dict)
    totals: dict[str, int] = {}
    for entry in contents:
        group = _group_of(entry.path)
        index, total = _shard(entry.path)
        groups[group][index] = entry
        totals[group] = total
    dropped = {key for key, change in changes.items() if change.op != ADD}
    added: defaultdict[str, list[Row]] = defaultdict(list)
    for key in sorted(carried):
        for group, sort_key, value in items_of_line(carried[key], where="delta"):
            added[group].append((sort_key, value))
    old_keys = _old_record_keys(old, groups.get(_RECORDS, {}))
    removed: defaultdict[str, list[Row]] = defaultdict(list)
    raw_plan: dict[str, dict[int, tuple[list[bytes], list[Row]]]] = {}
    for group in sorted(g for g in {*groups, *added} if not g.startswith(INDEX_GROUP)):
        count = sum(e.records or 0 for e in groups.get(group, {}).values())
        gone = sorted(k for k in old_keys.get(group, ()) if k in dropped)
        new = added.get(group, [])
        total = shard_count(count - len(gone) + len(new), records_per_shard=records_per_shard)
        if groups.get(group) and totals[group] != total:
            return None
        raw_plan[group] = _touched(total, [*gone, *(k for k, _v in new)], new)
        totals[group] = total
    entries: list[ContentEntry] = []
    for group, plan in sorted(raw_plan.items()):
        keys_of_shard = _keys_by_shard(old_keys.get(group, []), totals[group], set(plan))
        for index, entry in sorted(groups.get(group, {}).items()):
            if index not in plan:
                entries.append(_link(old, staging, entry))
        for index, (_touching, new) in sorted(plan.items()):
            path = mirror_shard_path(group, index, totals[group])
            keys = keys_of_shard.get(index, [])
            lines = _old_lines(old, groups.get(group, {}).get(index), keys)
            kept = _kept(lines, dropped, removed, where=path)
            try:
                if len(keys) - sum(1 for k in keys if k in dropped) + len(new):
                    rows = heapq.merge(kept, new, key=lambda row: row[0])
                    entries.append(write_mirror_shard(str(staging), path, rows))
                else:
                    for _row in kept:  # an emptied shard: no file, but its rows are still removed
                        pass
            except _Mismatch:
                return None
    if sum(len(v) for g, v in removed.items() if not g.startswith(INDEX_GROUP)) != len(dropped):
        return None  # a dropped key was not where the record index put it
    records_table: pa.Table | None = None
    # The records index first: the other indexes take each row's ``modified`` from it.
    index_groups = {g for g in {*groups, *added, *removed} if g.startswith(INDEX_GROUP)}
    for group in sorted(index_groups, key=lambda g: (g != _RECORDS, g)):
        name = group[len(INDEX_GROUP) :]
        count = sum(e.records or 0 for e in groups.get(group, {}).values())
        gone_rows, new_rows = removed.get(group, []), added.get(group, [])
        total = shard_count(count - len(gone_rows) + len(new_rows), records_per_shard=records_per_shard)
        if groups.get(group) and totals[group] != total:
            return None
        plan = _touched(total, [*(k for k, _v in gone_rows), *(k for k, _v in new_rows)], new_rows)
        gone_by_shard: defaultdict[int, list[Row]] = defaultdict(list)
        for row in gone_rows:
            gone_by_shard[shard_of_bucket(bucket_of(row[0]), total)].append(row)
        for index, entry in sorted(groups.get(group, {}).items()):
            if index not in plan:
                entries.append(_link(old, staging, entry))
        for index, (_touching, shard_rows) in sorted(plan.items()):
            previous = groups.get(group, {}).get(index)
            table = pq.read_table(old / previous.path) if previous else index_table(name, [])
            table = _drop_rows(name, table, gone_by_shard[index])
            if table is None:
                return None
            table = pa.concat_tables([table, index_table(name, [json.loads(v) for _k, v in shard_rows])])
            if name != "records":
                if records_table is None:
                    return None  # the records index sorts first and is always touched
                table = _sorted_by_key_columns(name, table, records_table)
                if table is None:
                    return None
            else:
                table = table.sort_by([("key", "ascending")])
                records_table = _concat(records_table, table)
            if table.num_rows:
                entries.append(
                    write_parquet_table(str(staging), mirror_shard_path(group, index, total), table)
                )
        if name == "records":
            for index, entry in groups.get(group, {}).items():
                if index not in plan:
                    records_table = _concat(records_table, pq.read_table(old / entry.path, columns=_TIMES))
    return sorted(entries)


def _touched(total: int, keys: list[bytes], new: list[Row]) -> dict[int, tuple[list[bytes], list[Row]]]:
    """shard index -> (keys touching it, its new rows in key order), for the shards anything touches."""
    plan: dict[int, tuple[list[bytes], list[Row]]] = {}
    for key in keys:
        plan.setdefault(shard_of_bucket(bucket_of(key), total), ([], []))[0].append(key)
    for key, value in new:
        plan[shard_of_bucket(bucket_of(key), total)][1].append((key, value))
    for _keys, rows in plan.values():
        rows.sort()
    return plan


def _old_record_keys(old: Path, shards: Mapping[int, ContentEntry]) -> dict[str, list[bytes]]:
    """kind -> every record key of the old state (from its record index)."""
    keys: defaultdict[str, list[bytes]] = defaultdict(list)
    for entry in shards.values():
        for key in pq.read_table(old / entry.path, columns=["key"]).column(0).to_pylist():
            keys[key.split(b"\x00", 1)[0].decode()].append(key)
    return keys


def _keys_by_shard(keys: list[bytes], total: int, wanted: set[int]) -> dict[int, list[bytes]]:
    found: defaultdict[int, list[bytes]] = defaultdict(list)
    for key in keys:
        index = shard_of_bucket(bucket_of(key), total)
        if index in wanted:
            found[index].append(key)
    return {index: sorted(shard) for index, shard in found.items()}


def _old_lines(old: Path, entry: ContentEntry | None, keys: list[bytes]) -> Iterator[Row]:
    """(key, line) of an old raw shard: its lines are its keys' records, in key order."""
    if entry is None:
        return
    what = entry.path
    count = 0
    with open_decompressed(
        (old / entry.path).open("rb"), "zstd", what=what, error=BundleIntegrityError
    ) as reader:
        for line in iter_lines(reader):
            if line.oversized or count >= len(keys):
                raise BundleIntegrityError(f"{what}: not the records its index lists", details={"file": what})
            yield keys[count], line.data
            count += 1
    if count != len(keys):
        raise BundleIntegrityError(f"{what}: not the records its index lists", details={"file": what})


class _Mismatch(Exception):
    """The old state is not laid out as its record index says: rebuild instead."""


def _kept(
    lines: Iterator[Row], dropped: set[bytes], removed: dict[str, list[Row]], *, where: str
) -> Iterator[Row]:
    """The lines not dropped, streamed; a dropped line's items (its index rows) go to ``removed``."""
    for key, line in lines:
        if key not in dropped:
            yield key, line
            continue
        items = list(items_of_line(line, where=where))
        if items[0][1] != key:
            raise _Mismatch(where)
        for group, sort_key, value in items:
            removed.setdefault(group, []).append((sort_key, value))


def _link(old: Path, staging: Path, entry: ContentEntry) -> ContentEntry:
    target = staging / entry.path
    target.parent.mkdir(parents=True, exist_ok=True)
    os.link(old / entry.path, target)
    return entry


_TIMES: Final = ["kind", "id", "digest", "modified"]


def _concat(first: pa.Table | None, second: pa.Table) -> pa.Table:
    """The record index's columns the other indexes sort by, accumulated shard by shard."""
    second = second.select(_TIMES)
    return second if first is None else pa.concat_tables([first, second])


def _identity(name: str, table: pa.Table) -> Any:
    """One value per row that names it: the record key, or every column of the row."""
    if name == "records":
        return table["key"]
    return pc.binary_join_element_wise(*(table[c] for c in table.column_names), "\x00")


def _drop_rows(name: str, table: pa.Table, rows: list[Row]) -> pa.Table | None:
    if not rows:
        return table
    values = index_table(name, [json.loads(v) for _k, v in rows])
    mask = pc.is_in(_identity(name, table), value_set=_identity(name, values))
    kept = table.filter(pc.invert(mask))
    return kept if table.num_rows - kept.num_rows == len(rows) else None


def _sorted_by_key_columns(name: str, table: pa.Table, records: pa.Table) -> pa.Table | None:
    """``table`` in its sort keys' order: term, then the record key (kind, id, modified, digest)."""
    schema = INDEX_SCHEMAS[name]
    term = schema.names[0]
    if "kind" not in table.column_names:
        table = table.append_column("kind", pa.array([name if name != "sboms" else "sbom"] * table.num_rows))
    times = records.select(_TIMES)
    times = times.append_column("found", pa.array([True] * times.num_rows, pa.bool_()))
    joined = table.append_column("row", pa.array(range(table.num_rows), pa.int64())).join(
        times, keys=["kind", "id", "digest"], join_type="left outer"
    )
    if joined.num_rows != table.num_rows or joined["found"].null_count:
        return None  # a row of no record, or two records with one (kind, id, digest)
    joined = joined.set_column(
        joined.schema.get_field_index("modified"), "modified", pc.fill_null(joined["modified"], "")
    )
    order = pc.sort_indices(
        joined,
        sort_keys=[(c, "ascending") for c in (term, "kind", "id", "modified", "digest", "row")],
    )
    return joined.take(order).select(schema.names).cast(schema)
