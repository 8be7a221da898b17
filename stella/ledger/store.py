"""The evidence ledger: append-only Avro segments per tenant.

Layout under the ledger root (a local folder or a ``gs://`` prefix)::

    tenants/<tenant>/segments/<seq>-<hash>.avro         records, sorted by record key
    tenants/<tenant>/segments/<seq>-<hash>.meta.json    digest, size, record count
    tenants/<tenant>/segments/<seq>-<hash>.digests.zst  received-bytes digests (dedupe index)
    tenants/<tenant>/quarantine/<hex>.bin / .json       rejected bytes and the reason

Segments are never rewritten. Each is written under a temporary name and renamed into
place, sidecars first and the ``.avro`` last, so a reader that lists ``*.avro`` never
sees half a segment. Segment bytes are deterministic (sorted rows, a sync marker derived
from the content, fixed codec), so the same records always make the same segment.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from importlib import resources
from io import BytesIO
from itertools import islice
from pathlib import Path
from typing import Any

import fastavro
import zstandard
from backports import zstd

from stella import storage
from stella.errors import ConflictError, InputError, NotFoundError
from stella.guards import strictjson
from stella.guards.streams import open_decompressed, read_document
from stella.model import DocFormat, Kind, LedgerRecord, LedgerRow, Linkset, validate_tenant

__all__ = [
    "SEGMENT_MAX_BYTES",
    "SEGMENT_MAX_RECORDS",
    "LedgerStore",
    "SegmentInfo",
    "batched",
    "default_ledger_root",
    "read_rows",
    "read_segment",
    "record_from_row",
    "record_to_row",
]

# Segments are the unit of parallel reading; these bounds keep one segment's sort and
# write comfortably in memory while giving a large ledger enough segments to spread.
SEGMENT_MAX_RECORDS = 50_000
SEGMENT_MAX_BYTES = 64 * 1024 * 1024
_CODEC = "zstandard"


@cache
def _schema_text() -> str:
    return resources.files("schemas").joinpath("ledger-record.avsc").read_text("utf-8")


def _schema() -> Any:
    """The schema as written in schemas/, unparsed.

    fastavro embeds ``json.dumps`` of the schema object it is given in every file
    header. A schema fastavro has parsed has field properties in hash-seed-dependent
    order, which made segment bytes differ between processes; the raw dict keeps the
    file's own key order, so headers (and segment digests) are stable.
    """
    return json.loads(_schema_text())


def default_ledger_root(environ: dict[str, str] | os._Environ[str] | None = None) -> str:
    """``$STELLA_HOME/ledger``, or ``~/.stella/ledger`` when STELLA_HOME is unset."""
    env = os.environ if environ is None else environ
    home = env.get("STELLA_HOME") or str(Path("~/.stella").expanduser())
    return storage.join(home, "ledger")


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """A segment as provenance names it: where it is and what its bytes hash to."""

    path: str
    name: str
    digest: str
    bytes: int
    records: int


def record_to_row(record: LedgerRecord) -> dict[str, Any]:
    link = record.linkset
    return {
        "tenant": record.tenant,
        "kind": record.kind.value,
        "format": record.format.value,
        "upstream_id": record.upstream_id,
        "modified": record.modified,
        "revision": record.revision,
        "source": record.source,
        "ingested_at": record.ingested_at,
        "digest": record.digest,
        "document": record.document,
        "ecosystems": list(link.ecosystems),
        "packages": list(link.packages),
        "purls": list(link.purls),
        "aliases": list(link.aliases),
        "vex_products": list(link.vex_products),
        "sbom_subject": link.sbom_subject,
        "withdrawn": link.withdrawn,
    }


# Enum lookups by value cost a call each (~1 µs, a tenth of decoding a row): a dict
# of the members is the hot path, the Enum call the fallback that names a bad value.
_KINDS = {kind.value: kind for kind in Kind}
_FORMATS = {fmt.value: fmt for fmt in DocFormat}


def record_from_row(row: LedgerRow) -> LedgerRecord:
    return LedgerRecord(
        tenant=row["tenant"],
        kind=_KINDS.get(row["kind"]) or Kind(row["kind"]),
        format=_FORMATS.get(row["format"]) or DocFormat(row["format"]),
        upstream_id=row["upstream_id"],
        modified=row["modified"],
        revision=row["revision"],
        source=row["source"],
        ingested_at=row["ingested_at"],
        digest=row["digest"],
        document=row["document"],
        linkset=Linkset(
            ecosystems=tuple(row["ecosystems"]),
            packages=tuple(row["packages"]),
            purls=tuple(row["purls"]),
            aliases=tuple(row["aliases"]),
            vex_products=tuple(row["vex_products"]),
            sbom_subject=row["sbom_subject"],
            withdrawn=row["withdrawn"],
        ),
    )


try:  # fastavro's compiled reader: its codec table and its length-prefixed bytes reader
    from fastavro._read import BLOCK_READERS as _BLOCK_READERS
    from fastavro._read import read_bytes as _read_avro_bytes  # type: ignore[attr-defined]
except ImportError:  # a build without it keeps fastavro's own codec path
    _BLOCK_READERS = {}
_DECOMPRESSORS = threading.local()


def _zstd_avro_block(handle: Any) -> BytesIO:
    """fastavro's ``zstandard`` block reader with one decompression context per thread.

    fastavro's own reader builds a fresh zstd context for every ~16 KB block, which cost
    a json:raw export more than the decompression itself (~1.5 of ~11 µs per row). Same
    bytes out: a block that is not one frame of known size (or is corrupt) takes
    fastavro's path, which raises what it always raised. It plugs into the compiled
    reader's codec table (not a documented extension point: the test in
    tests/unit/test_ledger.py holds it to fastavro's rows and errors).
    """
    data = _read_avro_bytes(handle)
    decompressor = getattr(_DECOMPRESSORS, "context", None)
    if decompressor is None:
        decompressor = _DECOMPRESSORS.context = zstandard.ZstdDecompressor()
    try:
        return BytesIO(decompressor.decompress(data, allow_extra_data=False))
    except zstandard.ZstdError:
        return BytesIO(zstd.decompress(data))


if "zstandard" in _BLOCK_READERS:
    _BLOCK_READERS["zstandard"] = _zstd_avro_block


_decode_block: Callable[[memoryview, int, tuple[str, ...]], list[LedgerRow]] | None
try:  # the compiled decoder for the ledger's schema (setup.py); fastavro decodes without it
    from stella.ledger._rowcodec import decode_block as _decode_block
except ImportError:  # pragma: no cover - an install without a C compiler
    _decode_block = None


@cache
def _kind_symbols() -> tuple[str, ...]:
    (kind,) = (field for field in _schema()["fields"] if field["name"] == "kind")
    return tuple(kind["type"]["symbols"])


def _row_blocks(handle: Any) -> Iterator[list[LedgerRow]]:
    """The rows of each Avro block of a segment, decoded by the compiled loop when it can.

    fastavro still reads the container (header, sync markers, codec), so truncation and
    padding fail as they always did; the compiled loop only decodes a block's rows, and
    only under a header that carries the ledger schema exactly (any other segment is read
    by fastavro alone). A block the loop refuses is decoded by fastavro, whose rows or
    error are then the answer.
    """
    blocks = fastavro.block_reader(handle)
    decode = _decode_block
    if decode is None or json.loads(blocks.metadata.get("avro.schema", "null")) != _schema():
        handle.seek(0)
        rows = fastavro.reader(handle)
        while chunk := list(islice(rows, 1024)):
            yield chunk  # type: ignore[misc]  # fastavro types rows as any Avro datum
        return
    kinds = _kind_symbols()
    for block in blocks:
        data = block.bytes_  # type: ignore[attr-defined]  # fastavro: every codec gives a BytesIO at 0
        if isinstance(data, BytesIO):
            try:
                yield decode(data.getbuffer(), block.num_records, kinds)
                continue
            except ValueError:
                data.seek(0)
        yield list(block)  # type: ignore[arg-type]  # fastavro types rows as any Avro datum


def read_rows(path: str, *, chunk: int = 1024) -> Iterator[list[LedgerRow]]:
    """Stream the rows of one segment (local or remote), in stored order, ``chunk`` at a time.

    Rows are plain dicts as decoded (fastavro's, or the compiled loop's identical ones),
    nothing built per row: the fast read path of every profile.

    Raises:
        InputError: the segment is truncated, padded or corrupt.
    """
    with storage.open_read(path) as handle:
        try:
            pending: list[LedgerRow] = []
            for rows in _row_blocks(handle):
                pending += rows
                while len(pending) >= chunk:
                    yield pending[:chunk]
                    del pending[:chunk]
            if pending:
                yield pending
        except Exception as exc:  # the body only parses the file's bytes (below)
            # Truncated, padded or corrupt. fastavro raises what its parse tripped on (EOFError,
            # ValueError, IndexError for a length past the end, KeyError or SchemaParseException
            # for a damaged header, the zstd errors as they are): all mean "these bytes are bad".
            raise InputError(
                f"ledger segment {path} is unreadable: {exc}", details={"segment": path, "file": path}
            ) from exc


def read_segment(path: str) -> Iterator[LedgerRecord]:
    """Stream the records of one segment (local or remote), in stored order."""
    for rows in read_rows(path):
        yield from map(record_from_row, rows)


class LedgerStore:
    """One ledger root. Cheap to construct; every method goes to storage."""

    def __init__(self, root: str) -> None:
        self.root = root

    def _tenant_dir(self, tenant: str, *parts: str) -> str:
        return storage.join(self.root, "tenants", validate_tenant(tenant), *parts)

    def tenants(self) -> list[str]:
        metas = storage.list_files(storage.join(self.root, "tenants"), ".meta.json")
        return sorted({Path(m.replace("://", "/")).parts[-3] for m in metas})

    def segments(self, tenant: str) -> list[SegmentInfo]:
        """Every complete segment of a tenant, in name order."""
        directory = self._tenant_dir(tenant, "segments")
        found: list[SegmentInfo] = []
        for avro in storage.list_files(directory, ".avro"):
            if storage.TEMP_MARK in avro.rsplit("/", 1)[-1]:
                continue
            meta_path = avro[: -len(".avro")] + ".meta.json"
            try:
                with storage.open_read(meta_path) as handle:
                    meta = strictjson.loads(handle.read(), what=f"segment sidecar {meta_path}")
            except (OSError, InputError) as exc:
                raise InputError(
                    f"ledger segment {avro} has no readable {meta_path.rsplit('/', 1)[-1]}: {exc}",
                    details={"segment": avro, "file": meta_path},
                ) from exc
            found.append(
                SegmentInfo(
                    path=avro,
                    name=avro.rsplit("/", 1)[-1],
                    digest=meta["digest"],
                    bytes=meta["bytes"],
                    records=meta["records"],
                )
            )
        return found

    def require_segments(self, tenant: str) -> list[SegmentInfo]:
        segments = self.segments(tenant)
        if not segments:
            raise NotFoundError(
                f"tenant {tenant!r} has no records in ledger {self.root}; ingest some first "
                f"(stella ledger ingest --tenant {tenant} PATH...) or generate a demo ledger",
                details={"tenant": tenant, "ledger": self.root},
            )
        return segments

    def known_digests(self, tenant: str) -> set[str]:
        known: set[str] = set()
        for info in self.segments(tenant):
            index = info.path[: -len(".avro")] + ".digests.zst"
            with open_decompressed(storage.open_read(index), "zstd", what=index) as handle:
                known.update(
                    read_document(handle, what=index, limit=SEGMENT_MAX_RECORDS * 80).decode().split()
                )
        return known

    def write_segment(
        self, tenant: str, records: Sequence[LedgerRecord], *, sequence: int | None = None
    ) -> SegmentInfo | None:
        """Append one immutable segment holding ``records`` (all of ``tenant``).

        Returns None, writing nothing, when a segment with exactly these documents is
        already in the ledger (its name carries a digest of the document digests).
        ``sequence`` lets parallel writers number their segments without racing.
        """
        if not records:
            raise ValueError("a segment needs at least one record")
        if any(r.tenant != tenant for r in records):
            raise ValueError("every record of a segment must belong to its tenant")
        ordered = sorted(records, key=lambda r: r.sort_key)
        digests = sorted(r.digest for r in ordered)
        content_id = hashlib.sha256("\n".join(digests).encode()).digest()
        existing = self.segments(tenant)
        if any(s.name.endswith(f"-{content_id.hex()[:16]}.avro") for s in existing):
            return None
        if sequence is None:
            sequence = self.next_sequence(tenant, existing)
        name = f"{sequence:06d}-{content_id.hex()[:16]}"
        directory = self._tenant_dir(tenant, "segments")
        final_avro = storage.join(directory, name + ".avro")
        # Every file goes through temp + fsync + rename + folder fsync. The .avro (the one
        # name readers list) streams into its temp file first, the sidecars (which need
        # its digest) are published while it is still unnamed, and it is renamed last.
        with storage.open_atomic(final_avro) as sink:
            writer = storage.HashingWriter(sink)
            fastavro.writer(
                writer,  # type: ignore[arg-type]  # duck-typed: write, flush, seekable
                _schema(),
                (record_to_row(r) for r in ordered),
                codec=_CODEC,
                sync_marker=content_id[:16],
            )
            meta = {"digest": writer.digest, "bytes": writer.size, "records": len(ordered)}
            storage.write_atomic(
                storage.join(directory, name + ".digests.zst"),
                zstandard.ZstdCompressor(level=3).compress("\n".join(digests).encode()),
            )
            storage.write_atomic(
                storage.join(directory, name + ".meta.json"), json.dumps(meta, sort_keys=True).encode()
            )
        return SegmentInfo(final_avro, name + ".avro", str(meta["digest"]), writer.size, len(ordered))

    @contextmanager
    def writer_lock(self, tenant: str) -> Iterator[None]:
        """One writer per tenant at a time (local ledgers), so dedupe checks can't race.

        Object stores have no cheap lock; there the single-writer rule is the
        operator's (and the scheduler's) to keep.
        """
        if storage.is_remote(self.root):
            yield
            return
        directory = Path(self._tenant_dir(tenant))
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / ".writer.lock", "a+b") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise ConflictError(
                    f"another ingest or generate is writing to tenant {tenant!r} of {self.root}; "
                    "wait for it to finish",
                    details={"tenant": tenant, "ledger": self.root},
                ) from exc
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def next_sequence(self, tenant: str, existing: Sequence[SegmentInfo] | None = None) -> int:
        segments = self.segments(tenant) if existing is None else existing
        return 1 + max((int(s.name.split("-", 1)[0]) for s in segments), default=0)

    def read(self, tenant: str) -> Iterator[LedgerRecord]:
        for info in self.segments(tenant):
            yield from read_segment(info.path)

    def quarantine(self, tenant: str, raw: bytes, *, reason: dict[str, Any]) -> str:
        """Keep rejected bytes with the reason, so nothing handed to us is lost.

        The bytes and then the reason are each written atomically and durably; the
        reason, written last, is what marks an entry complete. The same bytes rejected
        again (another file, another run) add their source to the existing reason.
        """
        hex_digest = hashlib.sha256(raw).hexdigest()
        base = self._tenant_dir(tenant, "quarantine", hex_digest)
        record = {**reason, "sources": [reason["source"]]} if "source" in reason else dict(reason)
        previous = self._reason(base + ".json")
        if previous is not None:
            sources = list(previous.get("sources", [previous.get("source")]))
            if record.get("source") in sources:
                return base + ".bin"
            record = {**previous, "sources": [*sources, record.get("source")]}
        else:
            storage.write_atomic(base + ".bin", raw)
        storage.write_atomic(base + ".json", json.dumps(record, sort_keys=True, indent=2).encode())
        return base + ".bin"

    @staticmethod
    def _reason(path: str) -> dict[str, Any] | None:
        if not storage.exists(path):
            return None
        try:
            with storage.open_read(path) as handle:
                value = strictjson.loads(handle.read(), what=path)
        except InputError:
            return None  # torn (written before writes were atomic): rewritten whole
        return value if isinstance(value, dict) else None

    def quarantined(self, tenant: str) -> list[dict[str, Any]]:
        """Every quarantine reason; a torn or unreadable one is listed with ``torn: true``."""
        entries = []
        for path in storage.list_files(self._tenant_dir(tenant, "quarantine"), ".json"):
            name = path.rsplit("/", 1)[-1]
            if storage.TEMP_MARK in name:
                continue  # an unfinished write of a live or killed run, not an entry
            value = self._reason(path)
            entries.append(value if value is not None else {"file": name, "torn": True})
        return entries

    def clean_stale(self, tenant: str) -> list[str]:
        """Remove temp files that killed runs left in this tenant's folders (local ledgers).

        Call with :meth:`writer_lock` held; a temp file whose writer is still alive is kept.
        """
        if storage.is_remote(self.root):
            return []
        removed: list[str] = []
        for folder in ("segments", "quarantine"):
            directory = Path(self._tenant_dir(tenant, folder))
            removed.extend(f"{folder}/{name}" for name in storage.remove_stale(directory))
        return removed


def batched(
    records: Iterable[LedgerRecord], *, max_records: int, max_bytes: int
) -> Iterator[list[LedgerRecord]]:
    """Cut a record stream into segment-sized lists."""
    batch: list[LedgerRecord] = []
    size = 0
    for record in records:
        batch.append(record)
        size += len(record.document)
        if len(batch) >= max_records or size >= max_bytes:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch
