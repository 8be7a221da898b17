"""The ``trivy:db`` profile between adapter and bbolt writer: sortable items and the streaming merge.

Each selected OSV record becomes items of three sorted streams (groups):

* ``trivy.revisions`` -- one per record, keyed ``(upstream id, modified, digest)``. The
  ledger is append-only, so it may hold several revisions of one advisory; sorted this
  way they are adjacent and the last one is the latest (a tie on ``modified`` goes to
  the larger digest). Every earlier revision is *superseded*: its entries and
  untranslated parts are left out, because unioning two revisions would resurrect
  ranges, packages or aliases the feed has since withdrawn or corrected, and a
  withdrawn latest revision must take its older revisions with it.
* ``trivy.db`` -- one per DB entry, keyed by ``bucket_path + (key,)`` (order-preserving
  encoding, see :mod:`.sortkeys`) so the merge yields bbolt's depth-first order. The
  value is the record's raw 32-byte digest, then the canonical JSON value: the digest
  lets the merge drop superseded revisions without a join, and entries that different
  advisories emit for one bucket/key (a PYSEC and a GHSA record of one CVE) arrive
  together and are combined with :func:`~.osv.merge_value`, which is order-independent.
* ``trivy.untranslated`` -- one per :class:`~.osv.Untranslated`, keyed by reason first,
  so the report file is sorted and grouped by reason.

Memory during the merge: the superseded digests plus the distinct values of one bucket/key.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Container, Iterable, Iterator
from datetime import datetime
from itertools import chain, starmap
from operator import itemgetter
from pathlib import Path
from typing import Any

from stella.adapters.trivy.bbolt import Entry, write_bolt
from stella.adapters.trivy.osv import load_json, merge_value, translate_entries
from stella.adapters.trivy.payload import TRIVY_DB_LAYOUT, file_entry
from stella.adapters.trivy.sortkeys import decode_parts, encode_parts, encode_text_parts
from stella.bundle.manifest import ContentEntry
from stella.bundle.paths import REPORTS_DIR
from stella.bundle.shards import write_jsonl_shard
from stella.canonical import dumps_plain
from stella.model import DocFormat, Kind, LedgerRecord, LedgerRow
from stella.rangemerge import SortedGroups
from stella.sorting import SortItem

__all__ = [
    "DB_GROUP",
    "REVISIONS_GROUP",
    "SUPERSEDED_REPORT",
    "UNTRANSLATED_GROUP",
    "UNTRANSLATED_REPORT",
    "is_osv_advisory",
    "is_osv_row",
    "db_entry",
    "merged_db_entries",
    "merged_db_pairs",
    "reduce_db_range",
    "superseded_lines",
    "trivy_db_items",
    "trivy_db_row_items",
    "untranslated_lines",
    "write_db_outputs",
]

log = logging.getLogger(__name__)

REVISIONS_GROUP = "trivy.revisions"
DB_GROUP = "trivy.db"
UNTRANSLATED_GROUP = "trivy.untranslated"
SUPERSEDED_REPORT = f"{REPORTS_DIR}/superseded.jsonl.zst"
UNTRANSLATED_REPORT = f"{REPORTS_DIR}/untranslated.jsonl.zst"
_DIGEST_BYTES = 32
_TERMINATOR = encode_parts((b"",))  # what ends each part of an encoded key


def is_osv_advisory(record: LedgerRecord) -> bool:
    """The records ``trivy:db`` reads; SBOMs, VEX and other advisory formats carry no OSV ranges."""
    return record.kind is Kind.ADVISORY and record.format is DocFormat.OSV


def _sortable_time(moment: str | None) -> str:
    """Fixed microsecond precision, so text order is time order (the ledger omits zero fractions)."""
    if moment is None:
        return ""
    return datetime.fromisoformat(moment).isoformat(timespec="microseconds")


def _value_bytes(value: Any) -> bytes:
    """JSON bytes of a DB value or report line: sorted keys, no spaces, UTF-8.

    For what is written here (ASCII keys, strings, small integers, no floats) this is
    byte-identical to :func:`stella.canonical.dumps`, without its per-key scan for the
    characters where RFC 8785 and Python order keys differently: on a million advisories
    that scan alone costs a third of the bbolt writer's time. ``dumps_plain`` encodes
    with orjson (the standard encoder only for what orjson refuses).
    """
    return dumps_plain(value)


def trivy_db_items(record: LedgerRecord) -> list[SortItem]:
    """The sortable items of one OSV record (see the module docstring); a pure function."""
    return _items(record.digest, record.upstream_id, record.modified, record.source, record.document)


def trivy_db_row_items(rows: list[LedgerRow]) -> list[SortItem]:
    """:func:`trivy_db_items` of a batch of ledger rows (the row read path: no record built per row)."""
    return list(chain.from_iterable(starmap(_items, map(_ROW_FIELDS, rows))))


def is_osv_row(row: LedgerRow) -> bool:
    """:func:`is_osv_advisory` of a ledger row."""
    return bool(row["kind"] == _ADVISORY and row["format"] == _OSV)


_ROW_FIELDS = itemgetter("digest", "upstream_id", "modified", "source", "document")
_ADVISORY, _OSV = Kind.ADVISORY.value, DocFormat.OSV.value


def _items(
    digest: str, upstream_id: str, modified: str | None, source: str, document: bytes
) -> list[SortItem]:
    raw = bytes.fromhex(digest.split(":", 1)[1])
    identity = {"digest": digest, "id": upstream_id, "modified": modified}
    # The hex digest, not the raw one: raw digests hold zero bytes, which the key encoding
    # escapes, and escaped keys take the slow decoding path.
    revision = encode_text_parts((upstream_id, _sortable_time(modified), digest))
    items: list[SortItem] = [(REVISIONS_GROUP, revision, _value_bytes({**identity, "source": source}))]
    entries, untranslated = translate_entries(load_json(document), upstream_id=upstream_id)
    encoded: dict[int, bytes] = {}  # id(value) -> raw + JSON: entries may share one value object
    for bucket, name, value in entries:
        data = encoded.get(id(value))
        if data is None:
            data = encoded[id(value)] = raw + _value_bytes(value)
        items.append((DB_GROUP, encode_text_parts((*bucket, name)), data))
    for index, problem in enumerate(untranslated):
        # The index keeps two equal problems of one record apart; the same record stored
        # twice (equal digests) gives equal pairs, which the report collapses.
        key = encode_parts((problem.reason.encode(), revision, b"%06d" % index, problem.detail.encode()))
        line = _value_bytes({**identity, "detail": problem.detail, "reason": problem.reason})
        items.append((UNTRANSLATED_GROUP, key, raw + line))
    return items


def superseded_lines(revisions: Iterable[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
    """(raw digest, report line) of every revision a later revision of its advisory replaces.

    ``revisions`` must be the ``trivy.revisions`` stream in key order. A record stored
    twice (same digest, e.g. two ledgers merged) is one revision, never its own successor.
    """
    group: list[bytes] = []
    current: bytes | None = None
    for key, value in chain(revisions, [(b"", b"")]):  # the sentinel flushes the last group
        uid = key.split(_TERMINATOR, 1)[0] if key else None  # the encoded id: equal iff the ids are
        if uid != current and group:
            yield from _losers(group)
            group = []
        current = uid
        if key:
            group.append(value)


def _losers(group: list[bytes]) -> Iterator[tuple[bytes, bytes]]:
    if len(group) == 1:  # the usual case: one revision, nothing superseded, nothing to parse
        return
    latest = load_json(group[-1])
    winner = {"digest": latest["digest"], "modified": latest["modified"]}
    seen = {latest["digest"]}
    for line in group[:-1]:
        older = load_json(line)
        if older["digest"] in seen:
            continue
        seen.add(older["digest"])
        yield bytes.fromhex(older["digest"].split(":", 1)[1]), _value_bytes({**older, "supersededBy": winner})


def _combine(path: tuple[bytes, ...], unique: list[bytes]) -> bytes:
    if len(unique) == 1:
        return unique[0]
    bucket = tuple(part.decode() for part in path[:-1])
    merged: Any = load_json(unique[0])
    for value in unique[1:]:
        merged = merge_value(bucket, merged, load_json(value))
    return _value_bytes(merged)


def merged_db_entries(
    pairs: Iterable[tuple[bytes, bytes]], superseded: Container[bytes], counts: Counter[str] | None = None
) -> Iterator[Entry]:
    """bbolt entries in writer order from the sorted ``trivy.db`` stream (see :func:`merged_db_pairs`)."""
    return map(db_entry, merged_db_pairs(pairs, superseded, counts))


def merged_db_pairs(
    pairs: Iterable[tuple[bytes, bytes]], superseded: Container[bytes], counts: Counter[str] | None = None
) -> Iterator[tuple[bytes, bytes]]:
    """(encoded bucket path and key, final value) in key order from the sorted ``trivy.db`` stream.

    Values of superseded revisions are dropped; values several advisories gave one
    bucket/key are merged. ``counts`` (if given) receives ``merged`` and ``superseded``.

    A key's values are held once each, in arrival order, never once per advisory: every
    advisory of an ecosystem gives the same ``data-source`` entry, so a list of them would
    grow with the ledger (a third of all advisories on one key, hundreds of megabytes at
    10M documents).
    """
    tally: Counter[str] = counts if counts is not None else Counter()
    current: bytes | None = None
    first = b""
    more: dict[bytes, None] | None = None  # the key's distinct values, once it has a second one
    for key, value in pairs:
        if value[:_DIGEST_BYTES] in superseded:
            tally["superseded"] += 1
            continue
        if key != current:
            if current is not None:
                yield _final(current, first, more, tally)
            current, first, more = key, value[_DIGEST_BYTES:], None
        else:
            if more is None:
                more = {first: None}
            more[value[_DIGEST_BYTES:]] = None
    if current is not None:
        yield _final(current, first, more, tally)


def reduce_db_range(
    pairs: Iterator[tuple[bytes, bytes]], superseded: bytes, counts: Counter[str]
) -> Iterator[tuple[bytes, bytes]]:
    """:func:`merged_db_pairs` as a range reducer (:mod:`stella.rangemerge`): ``superseded`` packed.

    The superseded digests travel to a helper process as their 32-byte values joined.
    """
    digests = {superseded[at : at + _DIGEST_BYTES] for at in range(0, len(superseded), _DIGEST_BYTES)}
    return merged_db_pairs(pairs, digests, counts)


def _final(
    key: bytes, first: bytes, more: dict[bytes, None] | None, tally: Counter[str]
) -> tuple[bytes, bytes]:
    if more is not None:  # several advisories gave this bucket/key a value
        tally["merged"] += 1
        return key, _combine(decode_parts(key), list(more))
    return key, first


def db_entry(pair: tuple[bytes, bytes]) -> Entry:
    """A bbolt entry from an encoded (bucket path and key, value) pair."""
    path = decode_parts(pair[0])
    return path[:-1], path[-1], pair[1]


def untranslated_lines(pairs: Iterable[tuple[bytes, bytes]], superseded: Container[bytes]) -> Iterator[bytes]:
    """Report lines (sorted by reason, then record) for the records that are exported."""
    previous: tuple[bytes, bytes] | None = None
    for pair in pairs:
        if pair != previous and pair[1][:_DIGEST_BYTES] not in superseded:
            yield pair[1][_DIGEST_BYTES:]
        previous = pair


def write_db_outputs(root: str, groups: SortedGroups) -> list[ContentEntry]:
    """Write ``trivy.db`` and the two report files under ``root`` from the sorted groups.

    Order matters: revisions first (which records are superseded), then the DB and the
    untranslated report, both filtered by that answer. The DB's entries are merged and
    combined by ``groups.reduce``, in key ranges on helper processes when the run has
    several workers (:mod:`stella.rangemerge`), while this process writes the file.
    """
    superseded: set[bytes] = set()

    def remember(found: Iterator[tuple[bytes, bytes]]) -> Iterator[bytes]:
        for digest, line in found:
            superseded.add(digest)
            yield line

    revisions = groups.pairs(REVISIONS_GROUP)
    report = write_jsonl_shard(root, SUPERSEDED_REPORT, remember(superseded_lines(revisions)))
    db_file = Path(root) / TRIVY_DB_LAYOUT.db_path
    db_file.parent.mkdir(parents=True, exist_ok=True)
    counts: Counter[str] = Counter()
    context = b"".join(sorted(superseded))
    with groups.reduce(DB_GROUP, reduce_db_range, context, counts) as entries:
        # (Writing the untranslated report here, while the helpers merge the first ranges,
        # measured no faster, 45.6-46.2 s against 44.1-44.2 s at 1M: the helpers take every core.)
        stats = write_bolt(db_file, map(db_entry, entries))
    log.info("trivy.db: %d entries, %d merged across advisories", stats.entries, counts["merged"])
    untranslated = untranslated_lines(groups.pairs(UNTRANSLATED_GROUP), superseded)
    return [
        report,
        file_entry(Path(root), TRIVY_DB_LAYOUT.db_path, TRIVY_DB_LAYOUT.db_content_type, stats.entries),
        write_jsonl_shard(root, UNTRANSLATED_REPORT, untranslated),
    ]
