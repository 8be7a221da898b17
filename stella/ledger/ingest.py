"""``stella ledger ingest``: files, folders and JSONL streams into the ledger.

Every unit of input (a JSON file, or one line of a ``.jsonl``/``.jsonl.zst`` stream)
ends in exactly one of three places, and the report counts all three: a new ledger
record, a duplicate of one already there (same received bytes: nothing is added), or
the quarantine with its bytes and the reason. One bad document never stops the run.
"""

from __future__ import annotations

import stat
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from stella.canonical import canonical_document, sha256_digest
from stella.documents import recognise
from stella.errors import InputError, StellaError
from stella.guards.files import kind_of, open_regular, path_error, scan_tree
from stella.guards.streams import (
    MAX_DOCUMENT_BYTES,
    MAX_LINE_BYTES,
    QUARANTINE_PREFIX_BYTES,
    compression_of,
    iter_lines,
    open_decompressed,
    read_document,
)
from stella.ledger.store import SEGMENT_MAX_BYTES, SEGMENT_MAX_RECORDS, LedgerStore, SegmentInfo, batched
from stella.model import DocFormat, Kind, LedgerRecord, validate_tenant

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "IngestReport",
    "Rejection",
    "Unreadable",
    "identify_known",
    "ingest_paths",
    "iter_units",
    "to_record",
]

_STREAM_SUFFIXES = (".jsonl", ".jsonl.zst", ".jsonl.gz", ".ndjson", ".ndjson.zst", ".ndjson.gz")
_DOCUMENT_SUFFIXES = (".json", ".json.zst", ".json.gz")


@dataclass(frozen=True, slots=True)
class Rejection:
    source: str
    reason: str
    quarantined: str

    def to_json(self) -> dict[str, str]:
        return {"source": self.source, "reason": self.reason, "quarantined": self.quarantined}


@dataclass
class IngestReport:
    """What an ingest did, for the CLI table, ``--json`` and the API alike."""

    tenant: str
    added: Counter[tuple[str, str]] = field(default_factory=Counter)
    duplicates: Counter[tuple[str, str]] = field(default_factory=Counter)
    rejections: list[Rejection] = field(default_factory=list)
    skipped_files: list[str] = field(default_factory=list)
    # Links and special files met in input folders: (label, kind). Never opened.
    refused: list[tuple[str, str]] = field(default_factory=list)
    # Added documents whose time was a placeholder (Go's 0001-01-01): (source, id, note).
    placeholder_times: list[tuple[str, str, str]] = field(default_factory=list)
    # Temp files of killed runs removed before this one wrote anything.
    cleaned: list[str] = field(default_factory=list)
    segments: list[SegmentInfo] = field(default_factory=list)
    # Added documents whose ``modified`` is later than their receipt: kept as received,
    # dated at receipt in bundles (LedgerRecord.high_water); (source, id, modified).
    future_dated: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def total_added(self) -> int:
        return sum(self.added.values())

    @property
    def total_duplicates(self) -> int:
        return sum(self.duplicates.values())

    def to_json(self) -> dict[str, Any]:
        by_kind: dict[str, dict[str, dict[str, int]]] = {}
        for (kind, fmt), n in self.added.items():
            by_kind.setdefault(kind, {}).setdefault(fmt, {"added": 0, "duplicates": 0})["added"] = n
        for (kind, fmt), n in self.duplicates.items():
            by_kind.setdefault(kind, {}).setdefault(fmt, {"added": 0, "duplicates": 0})["duplicates"] = n
        return {
            "tenant": self.tenant,
            "added": self.total_added,
            "duplicates": self.total_duplicates,
            "rejected": len(self.rejections),
            "byKind": {k: dict(sorted(v.items())) for k, v in sorted(by_kind.items())},
            "rejections": [r.to_json() for r in self.rejections],
            "skippedFiles": self.skipped_files,
            "refusedFiles": [{"source": label, "kind": kind} for label, kind in self.refused],
            "cleanedTempFiles": self.cleaned,
            "placeholderTimes": [
                {"source": source, "id": upstream_id, "note": note}
                for source, upstream_id, note in self.placeholder_times
            ],
            "modifiedAfterIngestion": [
                {"source": source, "id": upstream_id, "modified": modified}
                for source, upstream_id, modified in self.future_dated
            ],
            "segments": [{"name": s.name, "digest": s.digest, "records": s.records} for s in self.segments],
        }


def _is_stream(path: Path) -> bool:
    return path.name.endswith(_STREAM_SUFFIXES)


@dataclass(frozen=True, slots=True)
class _Input:
    path: Path
    label: str
    follow_links: bool  # a file named on the command line (the user's link is their choice)


def _expand(arguments: Iterable[str], report: IngestReport) -> Iterator[_Input]:
    """Regular files to read; labels are relative to the argument so they don't leak host paths.

    Links and special files inside folders (a FIFO would block, a link to /dev/urandom
    would never end) are listed in ``report.refused``, never opened.
    """
    for argument in arguments:
        path = Path(argument)
        try:
            info = path.stat()
        except OSError as exc:
            raise path_error(argument, "input path") from exc
        if stat.S_ISDIR(info.st_mode):
            scan = scan_tree(path, skip_hidden=True)
            for refused in scan.refused:
                report.refused.append((_label(path, refused.path), refused.kind))
            for file in scan.files:
                label = _label(path, file)
                if file.name.endswith(_STREAM_SUFFIXES + _DOCUMENT_SUFFIXES):
                    yield _Input(file, label, follow_links=False)
                else:
                    report.skipped_files.append(label)
        elif stat.S_ISREG(info.st_mode):
            yield _Input(path, path.name, follow_links=True)
        else:
            report.refused.append((path.name, kind_of(info.st_mode)))


def _label(root: Path, file: Path) -> str:
    return f"{root.name}/{file.relative_to(root).as_posix()}"


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A unit that could not be read as a document: why, and the bytes kept for the quarantine."""

    error: InputError
    kept: bytes


def iter_units(source: _Input) -> Iterator[tuple[str, bytes | Unreadable]]:
    """Each document's bytes with its source label; unreadable units come back as :class:`Unreadable`.

    A stream that turns out truncated, padded or a bomb ends with one ``Unreadable``
    for the whole file (the lines before the fault were already yielded), carrying
    the count of records read and up to :data:`MAX_LINE_BYTES` of the file's raw bytes.
    """
    path, label = source.path, source.label
    read = 0
    try:
        raw = open_regular(path, label, follow_links=source.follow_links)
    except StellaError as exc:
        yield label, Unreadable(InputError(exc.message, details=exc.details), b"")
        return
    try:
        with open_decompressed(raw, compression_of(path.name), what=label) as handle:
            if not _is_stream(path):
                data = read_document(handle, what=label, limit=MAX_DOCUMENT_BYTES)
                yield label, data
                return
            for line in iter_lines(handle, max_line=MAX_LINE_BYTES, keep=QUARANTINE_PREFIX_BYTES):
                read += 1
                unit = f"{label}#{line.number}"
                if line.oversized:
                    error = InputError(
                        f"line of {line.size} bytes exceeds the {MAX_LINE_BYTES}-byte record limit "
                        f"(first {len(line.data)} bytes kept)",
                        details={"file": unit, "reason": "too-large", "bytes": line.size},
                    )
                    yield unit, Unreadable(error, line.data)
                else:
                    yield unit, line.data
    except InputError as exc:
        what = "records" if _is_stream(path) else "documents"
        error = InputError(
            f"{exc.message}; {read} {what} read before the fault",
            details={**exc.details, "recordsRead": read},
        )
        yield label, Unreadable(error, _prefix(source))
    except OSError as exc:
        yield label, Unreadable(InputError(f"cannot read {path.name}: {exc}", details={"file": label}), b"")


def _prefix(source: _Input) -> bytes:
    """Up to :data:`MAX_LINE_BYTES` of a file's raw bytes, for the quarantine."""
    try:
        with open_regular(source.path, source.label, follow_links=source.follow_links) as handle:
            return handle.read(MAX_LINE_BYTES)
    except (StellaError, OSError):
        return b""


def to_record(
    raw: bytes,
    *,
    tenant: str,
    source: str,
    ingested_at: str,
    already_canonical: bool = False,
    time_notes: list[tuple[str, str, str]] | None = None,
    digest: str | None = None,
) -> LedgerRecord:
    """Turn received bytes into a ledger record, or raise InputError saying why not.

    ``already_canonical`` is for producers that emit RFC 8785 bytes themselves (the
    synthetic generator, whose tests prove it): the bytes are parsed once for their
    identity but not re-serialised. ``time_notes`` collects ``(source, id, note)`` when
    a placeholder time (Go's zero time) was skipped in favour of another date.
    ``digest`` is ``sha256_digest(raw)`` when the caller has it already.
    """
    if digest is None:
        digest = sha256_digest(raw)
    if already_canonical:
        value, canonical = orjson.loads(raw), raw
    else:
        value, canonical = canonical_document(raw)
    parsed = recognise(value, digest=digest)
    if parsed.time_note is not None and time_notes is not None:
        time_notes.append((source, parsed.upstream_id, parsed.time_note))
    return LedgerRecord(
        tenant=tenant,
        kind=parsed.kind,
        format=parsed.format,
        upstream_id=parsed.upstream_id,
        modified=parsed.modified,
        revision=parsed.revision,
        source=source,
        ingested_at=ingested_at,
        digest=digest,
        document=canonical,
        linkset=parsed.linkset,
    )


def identify_known(raw: bytes, digest: str) -> tuple[Kind, DocFormat] | None:
    """Kind and format of bytes the ledger already holds, without canonicalising them.

    Bytes whose digest is known were accepted once (validated, canonicalised, stored),
    and the same bytes always give the same result, so a duplicate needs only what the
    report counts it by. None when the fast parse refuses them (a BOM, say): the caller
    then takes the full path, which decides exactly as it did the first time.
    """
    try:
        parsed = recognise(orjson.loads(raw), digest=digest)
    except (orjson.JSONDecodeError, InputError):
        return None
    return parsed.kind, parsed.format


def ingest_paths(
    store: LedgerStore,
    tenant: str,
    paths: Iterable[str],
    *,
    ingested_at: str,
    progress: Callable[[int], None] | None = None,
) -> IngestReport:
    """Ingest every document under ``paths`` into ``tenant``'s ledger.

    Records are buffered per segment, sorted by record key and written as immutable
    segments, so the same inputs (in any order, within one segment's worth) produce the
    same segment bytes.
    """
    validate_tenant(tenant)
    with store.writer_lock(tenant):
        return _ingest_locked(store, tenant, paths, ingested_at=ingested_at, progress=progress)


def _ingest_locked(
    store: LedgerStore,
    tenant: str,
    paths: Iterable[str],
    *,
    ingested_at: str,
    progress: Callable[[int], None] | None,
) -> IngestReport:
    report = IngestReport(tenant=tenant)
    report.cleaned = store.clean_stale(tenant)
    known = store.known_digests(tenant)

    def reject(source: str, error: StellaError, kept: bytes) -> None:
        reason = {"source": source, "reason": error.message, "code": error.code, "receivedAt": ingested_at}
        if error.details.get("reason"):
            reason["fault"] = error.details["reason"]
        where = store.quarantine(tenant, kept, reason=reason)
        report.rejections.append(Rejection(source, error.message, where))

    def accepted() -> Iterator[LedgerRecord]:
        count = 0
        for source_file in _expand(paths, report):
            for source, unit in iter_units(source_file):
                count += 1
                if progress is not None and count % 10_000 == 0:
                    progress(count)
                if isinstance(unit, Unreadable):
                    reject(source, unit.error, unit.kept)
                    continue
                digest = sha256_digest(unit)
                if digest in known and (identity := identify_known(unit, digest)) is not None:
                    report.duplicates[identity[0].value, identity[1].value] += 1
                    continue
                try:
                    notes: list[tuple[str, str, str]] = []
                    record = to_record(
                        unit,
                        tenant=tenant,
                        source=source,
                        ingested_at=ingested_at,
                        time_notes=notes,
                        digest=digest,
                    )
                except InputError as exc:
                    reject(source, exc, unit)
                    continue
                key = (record.kind.value, record.format.value)
                if digest in known:
                    report.duplicates[key] += 1
                    continue
                known.add(digest)
                report.added[key] += 1
                report.placeholder_times.extend(notes)
                if record.modified_after_ingestion:
                    assert record.modified is not None
                    report.future_dated.append((source, record.upstream_id, record.modified))
                yield record

    for batch in batched(accepted(), max_records=SEGMENT_MAX_RECORDS, max_bytes=SEGMENT_MAX_BYTES):
        written = store.write_segment(tenant, batch)
        if written is not None:
            report.segments.append(written)
    return report
