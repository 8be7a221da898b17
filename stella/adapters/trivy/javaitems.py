"""The ``trivy:java-db`` profile between SBOM records and the SQLite writer.

Each selected SBOM record becomes items of two sorted streams: ``java.rows`` (one per
Java DB row, keyed by the row itself, so equal rows from many SBOMs arrive together
and collapse into one) and ``java.skipped`` (one per component that gave no row, keyed
by reason first, so the report is grouped by reason). Rows are a fact about a jar's
bytes, not a revision of a document, so every selected SBOM revision contributes.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain, starmap
from operator import itemgetter
from pathlib import Path

from stella.adapters.trivy.javadb import JavaIndexRow, java_index_rows, write_java_db
from stella.adapters.trivy.osv import load_json
from stella.adapters.trivy.payload import JAVA_DB_LAYOUT, file_entry
from stella.adapters.trivy.sortkeys import decode_parts, encode_parts, encode_text_parts
from stella.bundle.manifest import ContentEntry
from stella.bundle.paths import REPORTS_DIR
from stella.bundle.shards import write_jsonl_shard
from stella.canonical import dumps
from stella.errors import UsageError
from stella.model import DocFormat, Kind, LedgerRecord, LedgerRow
from stella.rangemerge import SortedGroups
from stella.sorting import SortItem

__all__ = [
    "ROWS_GROUP",
    "SKIPPED_GROUP",
    "SKIPPED_REPORT",
    "conflict_items",
    "is_sbom",
    "is_sbom_row",
    "java_db_items",
    "java_db_row_items",
    "java_rows",
    "skipped_lines",
    "write_java_outputs",
]

ROWS_GROUP = "java.rows"
SKIPPED_GROUP = "java.skipped"
SKIPPED_REPORT = f"{REPORTS_DIR}/skipped-components.jsonl.zst"
_SBOM_FORMATS = frozenset({DocFormat.CYCLONEDX, DocFormat.SPDX})


def is_sbom(record: LedgerRecord) -> bool:
    """The records ``trivy:java-db`` reads: CycloneDX and SPDX SBOMs."""
    return record.kind is Kind.SBOM and record.format in _SBOM_FORMATS


def _skipped(reason: str, detail: str, record_id: str, digest: str, index: int = 0) -> SortItem:
    # The index keeps two equal skips of one SBOM apart; the same SBOM stored twice
    # (equal digests) gives equal pairs, which the report collapses.
    key = encode_parts(
        (reason.encode(), record_id.encode(), digest.encode(), b"%07d" % index, detail.encode())
    )
    line = dumps({"detail": detail, "digest": digest, "reason": reason, "sbom": record_id})
    return SKIPPED_GROUP, key, line


def _row_key(row: JavaIndexRow) -> bytes:
    return encode_text_parts((row.group_id, row.artifact_id, row.version, row.sha1.hex(), row.archive_type))


def java_db_items(record: LedgerRecord) -> list[SortItem]:
    """The sortable items of one SBOM record; a pure function."""
    return _items(record.document, record.format.value, record.upstream_id, record.digest)


def java_db_row_items(rows: list[LedgerRow]) -> list[SortItem]:
    """:func:`java_db_items` of a batch of ledger rows (the row read path: no record built per row)."""
    return list(chain.from_iterable(starmap(_items, map(_ROW_FIELDS, rows))))


def is_sbom_row(row: LedgerRow) -> bool:
    """:func:`is_sbom` of a ledger row."""
    return bool(row["kind"] == _SBOM and row["format"] in _SBOM_FORMAT_VALUES)


_ROW_FIELDS = itemgetter("document", "format", "upstream_id", "digest")
_SBOM = Kind.SBOM.value
_SBOM_FORMAT_VALUES = frozenset(f.value for f in _SBOM_FORMATS)


def _items(document: bytes, fmt: str, upstream_id: str, digest: str) -> list[SortItem]:
    try:
        rows, skipped = java_index_rows(load_json(document), fmt)
    except UsageError as exc:  # e.g. more components than an SBOM may sanely hold
        return [_skipped("unreadable-sbom", exc.message, upstream_id, digest)]
    items: list[SortItem] = [(ROWS_GROUP, _row_key(row), b"") for row in rows]
    items.extend(_skipped(s.reason, s.detail, upstream_id, digest, index) for index, s in enumerate(skipped))
    return items


def java_rows(pairs: Iterable[tuple[bytes, bytes]]) -> Iterator[JavaIndexRow]:
    """Unique rows, in order, from the sorted ``java.rows`` stream."""
    previous: bytes | None = None
    for key, _value in pairs:
        if key == previous:
            continue
        previous = key
        group, artifact, version, sha1, archive = (part.decode() for part in decode_parts(key))
        yield JavaIndexRow(group, artifact, version, bytes.fromhex(sha1), archive)


def conflict_items(conflicts: Sequence[JavaIndexRow], rows: Iterable[JavaIndexRow] = ()) -> list[SortItem]:
    """Skipped items for rows whose SHA-1 already names other coordinates.

    The DB's SHA-1 index is unique, so it keeps the first row in sort order (what
    ``write_java_db`` does); ``rows`` (sorted) lets the report name the kept one.
    """
    owner: dict[bytes, JavaIndexRow] = {}
    for row in rows:
        owner.setdefault(row.sha1, row)
    items = []
    for row in conflicts:
        other = owner.get(row.sha1)
        claimed = f" (kept {other.group_id}:{other.artifact_id}:{other.version})" if other else ""
        detail = f"{row.group_id}:{row.artifact_id}:{row.version} sha1 {row.sha1.hex()}{claimed}"
        items.append(_skipped("sha1-conflict", detail, "", ""))
    return sorted(items)


def skipped_lines(pairs: Iterable[tuple[bytes, bytes]], extra: Sequence[SortItem] = ()) -> Iterator[bytes]:
    """Report lines sorted by reason then SBOM: the sorted stream plus ``extra`` items."""
    extra_pairs = [(key, value) for _group, key, value in extra]
    previous: tuple[bytes, bytes] | None = None
    for pair in heapq.merge(pairs, extra_pairs):
        if pair != previous:
            yield pair[1]
        previous = pair


def write_java_outputs(root: str, groups: SortedGroups) -> list[ContentEntry]:
    """Write ``trivy-java.db`` and the skipped-components report under ``root`` from the sorted groups.

    The rows are held in memory once (``write_java_db`` inserts them in one
    transaction): one small row per distinct jar, far below the SBOMs they came from.
    """
    rows = list(java_rows(groups.pairs(ROWS_GROUP)))
    db_file = Path(root) / JAVA_DB_LAYOUT.db_path
    stats = write_java_db(db_file, rows)
    extra = conflict_items(stats.sha1_conflicts, rows)
    skipped = skipped_lines(groups.pairs(SKIPPED_GROUP), extra)
    return [
        file_entry(Path(root), JAVA_DB_LAYOUT.db_path, JAVA_DB_LAYOUT.db_content_type, stats.indices),
        write_jsonl_shard(root, SKIPPED_REPORT, skipped),
    ]
