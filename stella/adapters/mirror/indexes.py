"""The mirror's Parquet indexes: one sorted file per index, written with fixed settings.

An analyst answers "which SBOMs contain a package affected by CVE-X" with DuckDB or
pandas alone (docs/mirror.md): ``vulnerabilities`` maps ids and aliases to records,
``packages`` maps purls (and their version-less base) to records, ``sboms`` and ``vex``
map SBOM subjects and VEX products to records, and ``records`` maps every record key
to its content digest and shard: the mirror's record index, whose digest the manifest
signs.

Rows come from the envelope fields (kind, id, digest, linkset), never from the
document, so the exporter (from ledger records) and the importer (from envelope lines)
derive the same rows. Bytes are reproducible: the writer settings are the bundle's one
Parquet configuration (:mod:`stella.bundle.parquet`: fixed row-group size, zstd level,
dictionary and statistics settings, no time in a footer), with data page v1 and no
embedded Arrow schema for these flat indexes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq

from stella import storage
from stella.bundle.manifest import ContentEntry
from stella.bundle.parquet import PARQUET_CONTENT_TYPE, ROW_GROUP_ROWS, parquet_writer
from stella.canonical import dumps_plain
from stella.sorting import SortItem

__all__ = [
    "INDEX_GROUP",
    "INDEX_SCHEMAS",
    "RECORDS",
    "index_items",
    "index_path",
    "index_table",
    "is_record_index",
    "purl_base",
    "write_parquet_index",
    "write_parquet_table",
]

RECORDS: Final = "records"
_STRING = pa.string()

INDEX_SCHEMAS: Final[Mapping[str, pa.Schema]] = {
    RECORDS: pa.schema(
        [
            ("key", pa.binary()),
            ("kind", _STRING),
            ("id", _STRING),
            ("modified", _STRING),
            ("digest", _STRING),
            ("lineDigest", _STRING),
            ("source", _STRING),
            ("ingestedAt", _STRING),
        ]
    ),
    "vulnerabilities": pa.schema(
        [("vulnId", _STRING), ("relation", _STRING), ("kind", _STRING), ("id", _STRING), ("digest", _STRING)]
    ),
    "packages": pa.schema(
        [("purl", _STRING), ("purlBase", _STRING), ("kind", _STRING), ("id", _STRING), ("digest", _STRING)]
    ),
    "sboms": pa.schema([("subject", _STRING), ("id", _STRING), ("digest", _STRING)]),
    "vex": pa.schema([("product", _STRING), ("id", _STRING), ("digest", _STRING)]),
}


INDEX_GROUP: Final = "index:"
"""Sort groups of index rows are ``index:<name>``, apart from the record kinds' groups."""


def index_path(name: str, index: int, total: int) -> str:
    """``data/indexes/<name>/part-00000-of-00001.parquet`` (DuckDB reads the folder as one table)."""
    return f"data/indexes/{name}/part-{index:05d}-of-{total:05d}.parquet"


def is_record_index(path: str) -> bool:
    return path.startswith(f"data/indexes/{RECORDS}/")


def purl_base(purl: str) -> str:
    """``pkg:type/ns/name`` without ``@version``, ``?qualifiers`` or ``#subpath``: what advisories name."""
    cut = len(purl)
    for mark in "#?":
        at = purl.find(mark)
        if at != -1:
            cut = min(cut, at)
    head = purl[:cut]
    slash = head.rfind("/")
    at = head.find("@", slash + 1)
    return head[:at] if at != -1 else head


def index_items(envelope: Mapping[str, Any], key: bytes, line_digest: str) -> Iterator[SortItem]:
    """Every index row of one record as (index name, sort key, row as canonical JSON).

    ``envelope`` needs ``kind``, ``id``, ``modified``, ``digest``, ``source``,
    ``ingestedAt`` and ``linkset`` (the json:raw field names).
    """
    kind, upstream_id, digest = str(envelope["kind"]), str(envelope["id"]), str(envelope["digest"])
    link = envelope["linkset"]
    yield (
        INDEX_GROUP + RECORDS,
        key,
        dumps_plain(
            [
                key.hex(),
                kind,
                upstream_id,
                envelope.get("modified"),
                digest,
                line_digest,
                envelope["source"],
                envelope["ingestedAt"],
            ]
        ),
    )

    def row(index: str, term: str, values: list[Any]) -> SortItem:
        return INDEX_GROUP + index, term.encode("utf-8") + b"\x00" + key, dumps_plain(values)

    if kind == "advisory":
        yield row("vulnerabilities", upstream_id, [upstream_id, "id", kind, upstream_id, digest])
        for alias in link["aliases"]:
            if alias != upstream_id:
                yield row("vulnerabilities", alias, [alias, "alias", kind, upstream_id, digest])
    for purl in link["purls"]:
        yield row("packages", purl, [purl, purl_base(purl), kind, upstream_id, digest])
    subject = link.get("sbomSubject")
    if kind == "sbom" and subject:
        yield row("sboms", subject, [subject, upstream_id, digest])
    if kind == "vex":
        for product in link["vexProducts"]:
            yield row("vex", product, [product, upstream_id, digest])


def _table(schema: pa.Schema, rows: list[list[Any]]) -> pa.Table:
    columns: list[Any] = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    arrays = []
    for field, column in zip(schema, columns, strict=True):
        values = [bytes.fromhex(v) for v in column] if field.type == pa.binary() else list(column)
        arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def index_table(name: str, rows: list[list[Any]]) -> pa.Table:
    """Rows of index ``name`` (decoded canonical JSON lists, as :func:`index_items` makes them) as a table."""
    return _table(INDEX_SCHEMAS[name], rows)


def _writer(hashing: storage.HashingWriter, schema: pa.Schema) -> pq.ParquetWriter:
    return parquet_writer(hashing, schema, data_page_version="1.0", store_schema=False)


def _entry(relative_path: str, hashing: storage.HashingWriter, count: int) -> ContentEntry:
    return ContentEntry(
        path=relative_path,
        digest=hashing.digest,
        bytes=hashing.size,
        records=count,
        content_type=PARQUET_CONTENT_TYPE,
    )


def write_parquet_index(root: str, relative_path: str, values: Iterable[bytes]) -> ContentEntry:
    """Write one index from its rows (canonical JSON lists, already in key order)."""
    schema = INDEX_SCHEMAS[relative_path.split("/")[2]]
    count = 0
    with storage.open_write(storage.join(root, relative_path)) as handle:
        hashing = storage.HashingWriter(handle)
        writer = _writer(hashing, schema)
        rows: list[list[Any]] = []
        for value in values:
            rows.append(json.loads(value))
            count += 1
            if len(rows) >= ROW_GROUP_ROWS:
                writer.write_table(_table(schema, rows), row_group_size=ROW_GROUP_ROWS)
                rows = []
        if rows or count == 0:
            writer.write_table(_table(schema, rows), row_group_size=ROW_GROUP_ROWS)
        writer.close()
    return _entry(relative_path, hashing, count)


def write_parquet_table(
    root: str, relative_path: str, table: pa.Table, order: pa.Array | None = None
) -> ContentEntry:
    """Write one index from a table in key order: the same bytes as :func:`write_parquet_index`.

    Row groups are cut at the same row counts and each is written from one contiguous
    chunk, as the row-by-row writer does, which is what makes the pages identical.
    ``order`` (row numbers of ``table`` in key order) is taken one row group at a time,
    so a table is written sorted without a sorted copy of it in memory.
    """
    schema = INDEX_SCHEMAS[relative_path.split("/")[2]]
    table = table.select(schema.names).cast(schema)
    with storage.open_write(storage.join(root, relative_path)) as handle:
        hashing = storage.HashingWriter(handle)
        writer = _writer(hashing, schema)
        for offset in range(0, max(table.num_rows, 1), ROW_GROUP_ROWS):
            group = (
                table.slice(offset, ROW_GROUP_ROWS)
                if order is None
                else table.take(order.slice(offset, ROW_GROUP_ROWS))
            )
            writer.write_table(group.combine_chunks(), row_group_size=ROW_GROUP_ROWS)
        writer.close()
    return _entry(relative_path, hashing, table.num_rows)
