"""json:raw: each selected record as one canonical JSON line, grouped by kind.

A line is the record's envelope (provenance, identity, linkset) with the raw document
spliced in as the exact canonical bytes the ledger stored: the document is never
parsed, rewritten or enriched on the way out (Aggregation-Only Contract), and splicing
instead of re-serialising is what makes the export run at the speed of I/O.

The export builds lines straight from the segment's Avro rows (:func:`row_items`):
building a :class:`LedgerRecord` per row cost more than the line itself. Records
(:func:`envelope_line`, for profiles and checks that hold records) go through the same
builder, so both give the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import orjson

from stella.canonical import dumps_plain, trimmed
from stella.model import LedgerRecord, LedgerRow, linkset_of_row, record_key
from stella.sorting import SortItem

__all__ = [
    "RECORD_SCHEMA",
    "envelope_line",
    "jsonraw_items",
    "row_items",
    "row_line",
    "shard_path",
]

RECORD_SCHEMA = "https://stella-ops.org/export-center/schemas/raw-record/v1"

_compiled_row_items: Callable[[Sequence[LedgerRow]], list[SortItem]] | None
try:  # json:raw's compiled line builder (setup.py); the Python one below builds the same bytes
    from stella.adapters._jsonrawc import row_items as _compiled_row_items
except ImportError:  # pragma: no cover - an install without a C compiler
    _compiled_row_items = None


def _spliced(envelope: dict[str, Any], document: bytes) -> bytes:
    """The general path: JCS of the envelope without the document, the document spliced in.

    JCS orders keys by UTF-16 code units: ``digest`` < ``document`` < every other
    envelope key, so the document goes between the digest and the rest.
    """
    rest = {key: value for key, value in envelope.items() if key not in ("digest", "document")}
    digest = envelope["digest"]
    return b"".join(
        (b'{"digest":', dumps_plain(digest), b',"document":', document, b",", dumps_plain(rest)[1:])
    )


def _line(envelope: dict[str, Any], document: bytes) -> bytes:
    """RFC 8785 bytes of ``envelope`` (a fresh dict, taken over) with ``document`` spliced in.

    The fast path is one orjson call with the document as a ``Fragment`` (its bytes
    copied verbatim, never parsed): every key is ASCII, so orjson's sorted order is
    JCS's, and it escapes strings exactly as JCS does (see :mod:`stella.canonical`).
    Values orjson refuses (a string subclass, a lone surrogate) take :func:`_spliced`,
    which is what :func:`stella.canonical.dumps_plain` does with them.
    """
    envelope["document"] = orjson.Fragment(document)
    try:
        return trimmed(orjson.dumps(envelope, option=orjson.OPT_SORT_KEYS))
    except orjson.JSONEncodeError:
        return _spliced(envelope, document)


def _row_envelope(row: LedgerRow) -> dict[str, Any]:
    return {
        "digest": row["digest"],
        "document": orjson.Fragment(row["document"]),
        "format": row["format"],
        "id": row["upstream_id"],
        "ingestedAt": row["ingested_at"],
        "kind": row["kind"],
        "linkset": linkset_of_row(row),
        "modified": row["modified"],
        "revision": row["revision"],
        "source": row["source"],
        "tenant": row["tenant"],
    }


def row_line(row: LedgerRow) -> bytes:
    """The json:raw line of a ledger row: the same bytes as :func:`envelope_line` of its record."""
    return _line(_row_envelope(row), row["document"])


def envelope_line(record: LedgerRecord) -> bytes:
    """RFC 8785 bytes of the record envelope, document included verbatim."""
    return _line(
        {
            "digest": record.digest,
            "format": record.format.value,
            "id": record.upstream_id,
            "ingestedAt": record.ingested_at,
            "kind": record.kind.value,
            "linkset": record.linkset.to_json(),
            "modified": record.modified,
            "revision": record.revision,
            "source": record.source,
            "tenant": record.tenant,
        },
        record.document,
    )


def jsonraw_items(record: LedgerRecord) -> Iterator[SortItem]:
    yield record.kind.value, record.sort_key, envelope_line(record)


def row_items(rows: Sequence[LedgerRow]) -> list[SortItem]:
    """:func:`jsonraw_items` of a batch of rows: (kind, record key, line) per row, in row order.

    The hot loop of a json:raw export. The compiled builder (``_jsonrawc.pyx``) writes the
    same bytes without an envelope per row; a batch it refuses (a value of another type, a
    string that is not valid Unicode) is built here: :func:`row_line` inlined, one orjson
    call per row, and a batch holding a value orjson refuses redone row by row.
    """
    if _compiled_row_items is not None:
        try:
            return _compiled_row_items(rows)
        except (TypeError, ValueError, KeyError):
            pass  # the Python builder below decides: the same bytes, or its own error
    dumps, sort = orjson.dumps, orjson.OPT_SORT_KEYS
    try:
        lines = [trimmed(dumps(_row_envelope(row), option=sort)) for row in rows]
    except orjson.JSONEncodeError:
        lines = [row_line(row) for row in rows]
    return [
        (row["kind"], record_key(row["kind"], row["upstream_id"], row["modified"], row["digest"]), line)
        for row, line in zip(rows, lines, strict=True)
    ]


def shard_path(group: str, index: int, total: int) -> str:
    """``data/raw/<kind plural>/part-00000-of-00004.jsonl.zst``."""
    from stella.model import Kind

    return f"data/raw/{Kind(group).plural}/part-{index:05d}-of-{total:05d}.jsonl.zst"
