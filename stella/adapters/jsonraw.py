"""json:raw: each selected record as one canonical JSON line, grouped by kind.

A line is the record's envelope (provenance, identity, linkset) with the raw document
spliced in as the exact canonical bytes the ledger stored: the document is never
parsed, rewritten or enriched on the way out (Aggregation-Only Contract), and splicing
instead of re-serialising is what makes the export run at the speed of I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from stella.canonical import dumps_plain
from stella.model import LedgerRecord
from stella.sorting import SortItem

__all__ = ["RECORD_SCHEMA", "envelope_line", "jsonraw_items", "shard_path"]

RECORD_SCHEMA = "https://stella-ops.org/export-center/schemas/raw-record/v1"


def envelope_line(record: LedgerRecord) -> bytes:
    """RFC 8785 bytes of the record envelope, document included verbatim.

    JCS orders keys by UTF-16 code units: ``digest`` < ``document`` < every other
    envelope key, so the document can be placed between the two halves without
    re-encoding it.
    """
    rest: dict[str, Any] = {
        "format": record.format.value,
        "id": record.upstream_id,
        "ingestedAt": record.ingested_at,
        "kind": record.kind.value,
        "linkset": record.linkset.to_json(),
        "modified": record.modified,
        "revision": record.revision,
        "source": record.source,
        "tenant": record.tenant,
    }
    return b"".join(
        (
            b'{"digest":',
            dumps_plain(record.digest),
            b',"document":',
            record.document,
            b",",
            dumps_plain(rest)[1:],
        )
    )


def jsonraw_items(record: LedgerRecord) -> Iterator[SortItem]:
    yield record.kind.value, record.sort_key, envelope_line(record)


def shard_path(group: str, index: int, total: int) -> str:
    """``data/raw/<kind plural>/part-00000-of-00004.jsonl.zst``."""
    from stella.model import Kind

    return f"data/raw/{Kind(group).plural}/part-{index:05d}-of-{total:05d}.jsonl.zst"
