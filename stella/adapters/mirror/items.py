"""The mirror adapter: one ledger row (or one envelope line) -> its raw line and its index rows.

The exporter runs :func:`mirror_row_items` on batches of ledger rows; the importer runs
:func:`items_of_line` on the lines it holds after applying a delta. Both end in
:func:`_items`, and both outputs go through the same sort, sharding and writers
(:func:`mirror_shard_path`, :func:`write_mirror_shard`), which is why the two mirrors
are the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from stella.adapters.jsonraw import row_items, shard_path
from stella.adapters.mirror.indexes import INDEX_GROUP, index_items, index_path, write_parquet_index
from stella.adapters.mirror.records import key_of_envelope, line_digest
from stella.bundle.manifest import ContentEntry
from stella.bundle.shards import write_jsonl_shard
from stella.errors import BundleIntegrityError
from stella.model import LedgerRow, linkset_of_row
from stella.sorting import SortItem

__all__ = ["items_of_line", "mirror_row_items", "mirror_shard_path", "write_mirror_shard"]


def _items(envelope: Mapping[str, Any], key: bytes, line: bytes) -> Iterator[SortItem]:
    yield str(envelope["kind"]), key, line
    yield from index_items(envelope, key, line_digest(line))


def mirror_row_items(rows: Sequence[LedgerRow]) -> list[SortItem]:
    """Every row's json:raw line (the bytes json:raw writes) and its index rows, in row order."""
    items: list[SortItem] = []
    for row, (_kind, key, line) in zip(rows, row_items(rows), strict=True):
        envelope = {
            "kind": row["kind"],
            "id": row["upstream_id"],
            "modified": row["modified"],
            "digest": row["digest"],
            "source": row["source"],
            "ingestedAt": row["ingested_at"],
            "linkset": linkset_of_row(row),
        }
        items.extend(_items(envelope, key, line))
    return items


def items_of_line(line: bytes, *, where: str) -> Iterator[SortItem]:
    """Raises BundleIntegrityError: the line is not a record envelope."""
    try:
        envelope = json.loads(line)
        key = key_of_envelope(envelope)
        items = list(_items(envelope, key, line))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BundleIntegrityError(
            f"{where}: not a mirror record line: {exc}", details={"file": where}
        ) from exc
    yield from items


def mirror_shard_path(group: str, index: int, total: int) -> str:
    if group.startswith(INDEX_GROUP):
        return index_path(group[len(INDEX_GROUP) :], index, total)
    return shard_path(group, index, total)


def write_mirror_shard(root: str, path: str, pairs: Iterable[tuple[bytes, bytes]]) -> ContentEntry:
    values = (value for _key, value in pairs)
    if path.endswith(".parquet"):
        return write_parquet_index(root, path, values)
    return write_jsonl_shard(root, path, values)
