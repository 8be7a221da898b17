"""Rebuilding a mirror state's files from its records, exactly as the exporter writes them.

When :mod:`stella.mirror.patch` finds the old state laid out otherwise than its record
index says (a delta that changes shard counts is re-sharded per group, not rebuilt), the
importer regenerates every raw shard and index of the new state from its records: :func:`write_sorted` is :class:`transforms.shards.WriteSortedShards`
without Beam (the same runs, the same bucket-to-shard assignment, the same merge and the
same writers), so the result is byte-identical to a mirror:full export of the same
records. Memory is bounded in bytes, whatever the state's size: one batch (cut at
``_RUN_ITEMS`` items or ``_RUN_BYTES`` bytes, whichever comes first: a few large documents
must not make a batch of gigabytes), then per merge at most ``_MERGE_BYTES`` of open run
blocks (a block holds at least one record, so 2,048 slices of ~160 KB SBOM lines held
~650 MB before that cap), and the shard writer's ~4 MiB of joined lines.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Final

from stella.adapters.mirror.items import mirror_shard_path, write_mirror_shard
from stella.bundle.manifest import ContentEntry
from stella.sorting import (
    BATCH_BYTES,
    MERGE_BYTES,
    RunSlice,
    SortItem,
    merge_slices,
    shard_count,
    shard_of_bucket,
    write_run,
)

__all__ = ["write_sorted"]

_RUN_ITEMS: Final = 100_000
_RUN_BYTES: Final = BATCH_BYTES  # the exporter's batch cap: the rebuild holds no more than one batch
_MERGE_BYTES: Final = MERGE_BYTES  # the exporter's merge cap: open run blocks per merge


def write_sorted(
    items: Iterable[SortItem], *, temp_dir: str, out_root: str, records_per_shard: int
) -> list[ContentEntry]:
    """Sort ``items`` into the mirror's shard files under ``out_root``; their entries, sorted."""
    slices: list[RunSlice] = []
    batch: list[SortItem] = []
    size = 0
    for item in items:
        batch.append(item)
        size += len(item[1]) + len(item[2])
        if len(batch) >= _RUN_ITEMS or size >= _RUN_BYTES:
            slices += write_run(temp_dir, batch)
            batch, size = [], 0
    slices += write_run(temp_dir, batch)
    groups: defaultdict[str, list[RunSlice]] = defaultdict(list)
    for piece in slices:
        groups[piece.group].append(piece)
    entries: list[ContentEntry] = []
    for group, pieces in sorted(groups.items()):
        total = shard_count(sum(p.count for p in pieces), records_per_shard=records_per_shard)
        shards: defaultdict[int, list[RunSlice]] = defaultdict(list)
        for piece in pieces:
            shards[shard_of_bucket(piece.bucket, total)].append(piece)
        for index, members in sorted(shards.items()):
            path = mirror_shard_path(group, index, total)
            entries.append(
                write_mirror_shard(
                    out_root, path, merge_slices(members, temp_dir=temp_dir, max_bytes=_MERGE_BYTES)
                )
            )
    return sorted(entries)
