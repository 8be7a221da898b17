"""Applying a delta by rewriting only the shard files it touches, one shard at a time.

A mirror state is laid out exactly as a mirror:full of the same records
(:mod:`stella.mirror.rebuild`): per group (a record kind, or an index) a shard count
that is a pure function of the group's row count, each row in the shard of its sort
key's bucket, rows sorted by key within a shard. Every group's new shard count is
planned before anything is written. While a delta leaves a group's shard count as it
was, none of its rows moves to another shard, so:

* a shard no change lands in is the same file: it is hard-linked into the new state;
* a touched raw shard is its old text less the dropped records' lines, with the new
  lines placed by key. Its keys, in order, come from the old record index (each key's
  bucket names its shard; they are spilled to ``temp_dir`` per raw shard, so memory is
  one shard's keys), which gives every dropped line and insertion point a line number:
  kept text is copied through in blocks, never parsed (:func:`merge_text`);
* a touched index shard is its old Parquet table less the dropped records' rows, plus
  the new rows, sorted in Arrow by the sort key's columns and written with the same
  settings (:func:`write_parquet_table`). Only the sort key's ``modified`` is not an
  index column: it is joined from the record index for the ids the delta adds, the only
  ones whose rows can tie with a new row up to ``modified``; the rows of other ids keep
  their (already sorted) order.

A group whose shard count the delta changes (it crosses a multiple of
``recordsPerShard``) is re-sharded alone (:mod:`stella.mirror.reshard`): its rows move,
the other groups' do not, so they are still patched and linked. The dropped records'
old lines give their exact index rows, so nothing else of the old state is parsed.
Memory is one shard (bounded by the shard-count function; a few while re-sharding) plus
the delta, whatever the mirror's size. Rows that do not match the record index return
None and the caller rebuilds the whole state, which gives the same bytes.
"""

from __future__ import annotations

import json
import os
import re
from bisect import bisect_left
from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stella.adapters.mirror.delta import ADD, Change
from stella.adapters.mirror.indexes import INDEX_GROUP, INDEX_SCHEMAS, index_table, write_parquet_table
from stella.adapters.mirror.items import items_of_line, mirror_shard_path
from stella.bundle.manifest import ContentEntry
from stella.bundle.shards import write_jsonl_blocks
from stella.errors import BundleIntegrityError
from stella.guards.streams import open_decompressed
from stella.mirror.lines import merge_text
from stella.mirror.reshard import (
    KIND_OF_INDEX,
    LayoutMismatch,
    Row,
    drop_rows,
    reshard_index,
    reshard_raw,
    shards_of_rows,
)
from stella.model import Kind
from stella.sorting import BUCKETS, bucket_of, shard_count

__all__ = ["patch_state"]

_PART = re.compile(r"part-(\d{5})-of-(\d{5})\.")
_KINDS: Final = {kind.plural: kind.value for kind in Kind}
_RECORDS: Final = INDEX_GROUP + "records"
_TIMES: Final = ["kind", "id", "digest", "modified"]


@dataclass
class _Touch:
    """What a delta does to one shard: the sort keys it removes, the rows it adds (in key order)."""

    gone: list[Row] = field(default_factory=list)
    new: list[Row] = field(default_factory=list)


@dataclass(frozen=True)
class _Group:
    """One group's shard counts before and after the delta, and the (new) shards the delta touches."""

    old_total: int
    total: int
    touched: Mapping[int, _Touch]

    @property
    def reshard(self) -> bool:
        """Rows move between shards: the group is re-sharded (:mod:`stella.mirror.reshard`), not patched."""
        return self.old_total != self.total

    @property
    def spilled(self) -> tuple[int, list[int]]:
        """(shard count, shards) whose old record keys a raw group needs: the touched ones, or all old ones."""
        if self.reshard:
            return self.old_total, list(range(self.old_total))
        return self.total, sorted(self.touched)


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
    temp_dir: Path,
) -> list[ContentEntry] | None:
    """The new state's files under ``staging`` and their entries, or None to rebuild instead.

    ``temp_dir`` (an existing folder) holds the record keys spilled per raw shard.
    """
    shards: defaultdict[str, dict[int, ContentEntry]] = defaultdict(dict)
    totals: dict[str, int] = {}
    for entry in contents:
        group = _group_of(entry.path)
        index, total = _shard(entry.path)
        shards[group][index] = entry
        totals[group] = total
    added: defaultdict[str, list[Row]] = defaultdict(list)
    for key in sorted(carried):
        for group, sort_key, value in items_of_line(carried[key], where="delta"):
            added[group].append((sort_key, value))
    gone_keys: defaultdict[str, list[Row]] = defaultdict(list)
    for key in sorted(k for k, change in changes.items() if change.op != ADD):
        gone_keys[key.split(b"\x00", 1)[0].decode()].append((key, b""))

    def plan(group: str, gone: list[Row]) -> _Group:
        count = sum(e.records or 0 for e in shards[group].values())
        new = added.get(group, [])
        total = shard_count(count - len(gone) + len(new), records_per_shard=records_per_shard)
        return _Group(totals.get(group, total), total, _touched(total, gone, new))

    entries: list[ContentEntry] = []
    removed: defaultdict[str, list[Row]] = defaultdict(list)
    try:
        # Every raw group is planned (shard counts known) before anything is written.
        raw = {g: plan(g, gone_keys.get(g, [])) for g in sorted({*shards, *added, *gone_keys}) if _is_raw(g)}
        spill = _KeySpill(temp_dir, raw)
        for entry in shards[_RECORDS].values():
            spill.add(pq.read_table(old / entry.path, columns=["key", "kind"]))
        for group, planned in sorted(raw.items()):
            if planned.reshard:
                entries += _reshard_raw(old, staging, group, shards[group], planned, spill, removed)
                continue
            for index, touch in sorted(planned.touched.items()):
                entries += _patch_raw(old, staging, group, shards[group].get(index), planned.total, index,
                                      spill.keys(group, index), touch, removed)  # fmt: skip
                spill.drop(group, index)
            entries += _links(old, staging, shards[group], planned.touched)
        # The records index first: the other indexes take ``modified`` (patched) or the record key
        # (re-sharded) from its new shards.
        wanted = pa.array(sorted({_kind_and_id(key) for key in carried}), pa.string())
        index_groups = {g for g in {*shards, *added, *removed} if not _is_raw(g)}
        records: list[Path] = []
        revisions = _empty_revisions()
        for group in sorted(index_groups, key=lambda g: (g != _RECORDS, g)):
            planned = plan(group, removed.get(group, []))
            name = group[len(INDEX_GROUP) :]
            if planned.reshard:
                written = reshard_index(old, staging, name, shards[group], (planned.old_total, planned.total),
                                        removed.get(group, []), added.get(group, []), records)  # fmt: skip
            else:
                written = _patch_index(old, staging, group, shards[group], planned, wanted, revisions)
            entries += written
            if group == _RECORDS:
                records = [staging / e.path for e in sorted(written)]
                revisions = pa.concat_tables(
                    [
                        revisions,
                        *(_revisions(pq.read_table(path, columns=_TIMES), wanted) for path in records),
                    ]
                )
    except LayoutMismatch:
        return None
    return sorted(entries)


def _is_raw(group: str) -> bool:
    return not group.startswith(INDEX_GROUP)


def _kind_and_id(key: bytes) -> str:
    return b"\x00".join(key.split(b"\x00", 2)[:2]).decode("utf-8")


def _touched(total: int, gone: Sequence[Row], new: Sequence[Row]) -> dict[int, _Touch]:
    """shard index -> what the delta does there, for the shards anything touches."""
    plan: defaultdict[int, _Touch] = defaultdict(_Touch)
    for index, rows in shards_of_rows(total, gone).items():
        plan[index].gone = rows
    for index, rows in shards_of_rows(total, new).items():
        plan[index].new = rows
    return dict(plan)


def _links(
    old: Path, staging: Path, shards: Mapping[int, ContentEntry], touched: Mapping[int, _Touch]
) -> list[ContentEntry]:
    """Hard links to the shards no change lands in: the same bytes, no copy."""
    linked = []
    for index, entry in sorted(shards.items()):
        if index not in touched:
            target = staging / entry.path
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(old / entry.path, target)
            linked.append(entry)
    return linked


class _KeySpill:
    """Each touched raw shard's old record keys, from the record index, spilled to disk.

    A raw shard holds the records of one kind whose key's bucket falls in its range; the
    record index is sharded by the same buckets with another shard count, so each of its
    shards contributes a piece to each raw shard. The pieces go to Arrow IPC files, so
    memory holds one record-index shard's keys while splitting, one raw shard's when read.
    """

    def __init__(self, folder: Path, raw: Mapping[str, _Group]) -> None:
        self._folder = folder
        self._raw = {group: planned.spilled for group, planned in raw.items() if planned.spilled[1]}
        self._files: defaultdict[tuple[str, int], list[Path]] = defaultdict(list)
        self._written = 0

    def add(self, table: pa.Table) -> None:
        if not self._raw or not table.num_rows:
            return
        keys = table["key"].combine_chunks()
        buckets = pa.array([bucket_of(key) for key in keys.to_pylist()], pa.int32())
        for group, (total, indexes) in self._raw.items():
            of_kind = pc.equal(table["kind"].combine_chunks(), group)
            shard = pc.divide(pc.multiply(buckets, total), BUCKETS)  # shard_of_bucket, vectorized
            for index in indexes:
                piece = keys.filter(pc.and_(of_kind, pc.equal(shard, index)))
                if len(piece):
                    path = self._folder / f"keys-{self._written}.arrow"
                    self._written += 1
                    with pa.ipc.new_file(path, pa.schema([("key", pa.binary())])) as writer:
                        writer.write_batch(pa.record_batch([piece], names=["key"]))
                    self._files[group, index].append(path)

    def keys(self, group: str, index: int) -> list[bytes]:
        """The old keys of raw shard ``index`` of ``group``, in order (the order of its lines)."""
        pieces = [pa.ipc.open_file(path).read_all()["key"] for path in self._files.get((group, index), [])]
        keys = pa.chunked_array(pieces, pa.binary()).combine_chunks()
        return keys.take(pc.sort_indices(keys)).to_pylist()  # type: ignore[no-any-return]

    def drop(self, group: str, index: int) -> None:
        for path in self._files.pop((group, index), []):
            path.unlink()


def _reshard_raw(
    old: Path,
    staging: Path,
    group: str,
    shards: Mapping[int, ContentEntry],
    planned: _Group,
    spill: _KeySpill,
    removed: defaultdict[str, list[Row]],
) -> list[ContentEntry]:
    """Re-shard one raw group; the dropped lines' index rows go to ``removed``."""
    gone = {key for touch in planned.touched.values() for key, _empty in touch.gone}
    new = {index: touch.new for index, touch in planned.touched.items()}
    dropped: list[Row] = []
    written = reshard_raw(old, staging, group, shards, (planned.old_total, planned.total),
                          lambda index: spill.keys(group, index), gone, new, dropped)  # fmt: skip
    for index in range(planned.old_total):
        spill.drop(group, index)
    if len(dropped) != len(gone):
        raise LayoutMismatch(group)  # a dropped key is not where the record index puts it
    for key, line in dropped:
        _remove_rows(line, key, removed, where=group)
    return written


def _remove_rows(line: bytes, key: bytes, removed: defaultdict[str, list[Row]], *, where: str) -> None:
    """A dropped line's index rows go to ``removed``, if it is the record its key names."""
    items = list(items_of_line(line, where=where))
    if items[0][1] != key:
        raise LayoutMismatch(where)
    for item_group, sort_key, value in items:
        removed[item_group].append((sort_key, value))


def _patch_raw(
    old: Path,
    staging: Path,
    group: str,
    entry: ContentEntry | None,
    total: int,
    index: int,
    keys: list[bytes],
    touch: _Touch,
    removed: defaultdict[str, list[Row]],
) -> list[ContentEntry]:
    """Rewrite one raw shard; the dropped lines' index rows go to ``removed``."""
    path = mirror_shard_path(group, index, total)
    drops = []
    for key, _empty in touch.gone:
        at = bisect_left(keys, key)
        if at == len(keys) or keys[at] != key:
            raise LayoutMismatch(path)  # a dropped key is not where the record index puts it
        drops.append(at)
    inserts = [(bisect_left(keys, key), line) for key, line in touch.new]
    gone_lines: list[bytes] = []
    reader = None
    if entry is not None:
        reader = open_decompressed(
            (old / entry.path).open("rb"), "zstd", what=path, error=BundleIntegrityError
        )
    text = merge_text(reader, len(keys), drops, inserts, gone_lines, where=path)
    records = len(keys) - len(drops) + len(inserts)
    written = []
    if records:
        written.append(write_jsonl_blocks(str(staging), path, text, records=records))
    else:  # an emptied shard: no file, but its lines are still read (their rows are removed)
        deque(text, maxlen=0)
    for at, line in zip(drops, gone_lines, strict=True):
        _remove_rows(line, keys[at], removed, where=path)
    return written


def _patch_index(
    old: Path,
    staging: Path,
    group: str,
    shards: Mapping[int, ContentEntry],
    planned: _Group,
    wanted: pa.Array,
    revisions: pa.Table,
) -> list[ContentEntry]:
    """Rewrite the touched shards of one index, one at a time (``revisions``: from the new records index)."""
    name = group[len(INDEX_GROUP) :]
    entries = _links(old, staging, shards, planned.touched)
    for index, touch in sorted(planned.touched.items()):
        previous = shards.get(index)
        table = pq.read_table(old / previous.path) if previous else index_table(name, [])
        table = drop_rows(name, table, touch.gone)
        table = pa.concat_tables([table, index_table(name, [json.loads(v) for _k, v in touch.new])])
        if name == "records":
            order = pc.sort_indices(table["key"])
        else:
            order = _key_order(name, table, revisions, wanted)
        if table.num_rows:
            path = mirror_shard_path(group, index, planned.total)
            entries.append(write_parquet_table(str(staging), path, table, order))
        del table, order
        pa.default_memory_pool().release_unused()  # one shard at a time: give its memory back
    return entries


def _empty_revisions() -> pa.Table:
    return index_table("records", []).select(_TIMES)


def _revisions(records: pa.Table, wanted: pa.Array) -> pa.Table:
    """The record index's (kind, id, digest, modified) of every record whose (kind, id) is in ``wanted``."""
    mask = pc.is_in(pc.binary_join_element_wise(records["kind"], records["id"], "\x00"), value_set=wanted)
    return records.select(_TIMES).filter(mask)


def _key_order(name: str, table: pa.Table, revisions: pa.Table, wanted: pa.Array) -> pa.Array:
    """The row numbers of ``table`` in its sort keys' order: term, then the record key (kind, id, modified, digest).

    Rows of an id in ``wanted`` get their ``modified`` from ``revisions`` (every record of
    those ids); the rows of any other id keep their order (the old shard's, already right),
    since no new row shares their term, kind and id. Only the wanted rows are joined.
    """
    schema = INDEX_SCHEMAS[name]
    size = table.num_rows
    kind = table["kind"] if "kind" in schema.names else pa.repeat(KIND_OF_INDEX.get(name, name), size)
    wanted_rows = pc.is_in(
        pc.binary_join_element_wise(kind, table["id"], "\x00"), value_set=wanted
    ).combine_chunks()
    at = pc.indices_nonzero(wanted_rows)
    rows = pa.table(
        {"kind": kind.take(at), "id": table["id"].take(at), "digest": table["digest"].take(at), "at": at}
    )
    found = revisions.append_column("found", pa.repeat(True, revisions.num_rows))
    joined = rows.join(found, keys=["kind", "id", "digest"], join_type="left outer").sort_by("at")
    if joined.num_rows != rows.num_rows or joined["found"].null_count:
        raise LayoutMismatch(name)  # a row of no record, or two records with one (kind, id, digest)
    blank = pa.repeat("", size)
    keys = pa.table(
        [
            table[schema.names[0]],
            kind,
            table["id"],
            pc.replace_with_mask(blank, wanted_rows, pc.fill_null(joined["modified"], "").combine_chunks()),
            pc.replace_with_mask(blank, wanted_rows, joined["digest"].combine_chunks()),
            pa.array(range(size), pa.int64()),
        ],
        names=["term", "kind", "id", "modified", "digest", "row"],
    )
    return pc.sort_indices(keys, sort_keys=[(c, "ascending") for c in keys.column_names])
