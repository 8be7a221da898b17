"""``stella ledger ingest``: files, folders and JSONL streams into the ledger.

Every unit of input (a JSON file, or one line of a ``.jsonl``/``.jsonl.zst`` stream)
ends in exactly one of three places, and the report counts all three: a new ledger
record, a duplicate of one already there (same received bytes: nothing is added), or
the quarantine with its bytes and the reason. One bad document never stops the run.
"""

from __future__ import annotations

import gzip
import io
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

from stella.canonical import canonical_document, sha256_digest
from stella.documents import recognise
from stella.errors import InputError, NotFoundError
from stella.ledger.store import SEGMENT_MAX_BYTES, SEGMENT_MAX_RECORDS, LedgerStore, SegmentInfo, batched
from stella.model import LedgerRecord, validate_tenant

__all__ = ["MAX_DOCUMENT_BYTES", "IngestReport", "Rejection", "ingest_paths", "iter_units", "to_record"]

# A single evidence document above this is almost certainly not one (or is hostile):
# the largest real SBOMs we know are a few tens of MB.
MAX_DOCUMENT_BYTES = 256 * 1024 * 1024
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
            "modifiedAfterIngestion": [
                {"source": source, "id": upstream_id, "modified": modified}
                for source, upstream_id, modified in self.future_dated
            ],
            "segments": [{"name": s.name, "digest": s.digest, "records": s.records} for s in self.segments],
        }


def _decompressed(path: Path) -> io.BufferedIOBase:
    raw = path.open("rb")
    if path.name.endswith(".zst"):
        reader = zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)
        return io.BufferedReader(reader)
    if path.name.endswith(".gz"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    return raw


def _is_stream(path: Path) -> bool:
    return path.name.endswith(_STREAM_SUFFIXES)


def _expand(arguments: Iterable[str], skipped: list[str]) -> Iterator[tuple[Path, str]]:
    """(file, label) pairs; labels are relative to the argument so they don't leak host paths."""
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            for directory, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    file = Path(directory) / name
                    label = f"{path.name}/{file.relative_to(path).as_posix()}"
                    if name.startswith("."):
                        continue
                    if name.endswith(_STREAM_SUFFIXES + _DOCUMENT_SUFFIXES):
                        yield file, label
                    else:
                        skipped.append(label)
        elif path.is_file():
            yield path, path.name
        else:
            raise NotFoundError(f"input path {argument} does not exist", details={"path": argument})


def iter_units(path: Path, label: str) -> Iterator[tuple[str, bytes | InputError]]:
    """Each document's bytes with its source label; unreadable units come back as errors."""
    try:
        with _decompressed(path) as handle:
            if not _is_stream(path):
                data = handle.read(MAX_DOCUMENT_BYTES + 1)
                if len(data) > MAX_DOCUMENT_BYTES:
                    yield label, InputError(f"document larger than {MAX_DOCUMENT_BYTES} bytes")
                else:
                    yield label, data
                return
            for number, line in enumerate(handle, start=1):
                stripped = line.rstrip(b"\r\n")
                if stripped.strip():
                    yield f"{label}#{number}", stripped
    except (OSError, zstandard.ZstdError, EOFError) as exc:
        yield label, InputError(f"cannot read {path.name}: {exc}")


def to_record(
    raw: bytes, *, tenant: str, source: str, ingested_at: str, already_canonical: bool = False
) -> LedgerRecord:
    """Turn received bytes into a ledger record, or raise InputError saying why not.

    ``already_canonical`` is for producers that emit RFC 8785 bytes themselves (the
    synthetic generator, whose tests prove it): the bytes are parsed once for their
    identity but not re-serialised.
    """
    digest = sha256_digest(raw)
    if already_canonical:
        value, canonical = json.loads(raw), raw
    else:
        value, canonical = canonical_document(raw)
    parsed = recognise(value, digest=digest)
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
    known = store.known_digests(tenant)
    seen_rejected: set[str] = set()

    def accepted() -> Iterator[LedgerRecord]:
        count = 0
        for file, label in _expand(paths, report.skipped_files):
            for source, unit in iter_units(file, label):
                count += 1
                if progress is not None and count % 10_000 == 0:
                    progress(count)
                if isinstance(unit, InputError):
                    report.rejections.append(Rejection(source, unit.message, ""))
                    continue
                digest = sha256_digest(unit)
                try:
                    record = to_record(unit, tenant=tenant, source=source, ingested_at=ingested_at)
                except InputError as exc:
                    if digest in seen_rejected:
                        continue
                    seen_rejected.add(digest)
                    where = store.quarantine(
                        tenant,
                        unit,
                        reason={
                            "source": source,
                            "reason": exc.message,
                            "code": exc.code,
                            "receivedAt": ingested_at,
                        },
                    )
                    report.rejections.append(Rejection(source, exc.message, where))
                    continue
                key = (record.kind.value, record.format.value)
                if record.digest in known:
                    report.duplicates[key] += 1
                    continue
                known.add(record.digest)
                report.added[key] += 1
                if record.modified_after_ingestion:
                    assert record.modified is not None
                    report.future_dated.append((source, record.upstream_id, record.modified))
                yield record

    for batch in batched(accepted(), max_records=SEGMENT_MAX_RECORDS, max_bytes=SEGMENT_MAX_BYTES):
        written = store.write_segment(tenant, batch)
        if written is not None:
            report.segments.append(written)
    return report
