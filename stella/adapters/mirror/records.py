"""What a mirror record is: its key, its content digest, and the set digest of a whole mirror.

The record key is the ledger's record key (kind, upstream id, modified, document
digest): the ledger is append-only and the mirror holds every selected record, as
json:raw does, so a new revision is an *addition*; a *change* is the same key with
different envelope bytes (its provenance was rewritten, e.g. a rebuilt ledger); a
*removal* is a key no longer selected (an exclude selector, a narrower selection).

The content digest is the sha256 of the record's canonical envelope line (the json:raw
line), so provenance is covered, not only the document.

The record-set digest is an order-independent sum of per-record hashes: Beam can fold
it in any order on any worker, and the importer recomputes it over the state it built
to prove that base + delta gave exactly the records the exporter selected (TUF's
snapshot role, research §1.3). It is a consistency check, not the security boundary:
every byte is already bound to the signature through the file digests.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from stella.adapters.jsonraw import envelope_line
from stella.canonical import sha256_digest
from stella.errors import BundleIntegrityError
from stella.model import DocFormat, Kind, LedgerRecord, Linkset

__all__ = [
    "SET_ALGORITHM",
    "RecordSet",
    "key_fields",
    "key_of_envelope",
    "line_digest",
    "record_from_line",
    "record_key",
    "set_term",
]

SET_ALGORITHM: Final = "sum-sha256"
_MODULUS: Final = 1 << 256


def record_key(record: LedgerRecord) -> bytes:
    return record.sort_key


def key_fields(key: bytes) -> list[str]:
    """``[kind, id, modified, documentDigest]``: how a key is written in tombstones."""
    return [part.decode("utf-8") for part in key.split(b"\x00")]


def key_of_envelope(envelope: Mapping[str, Any]) -> bytes:
    """The record key of a parsed envelope line (the same bytes as ``LedgerRecord.sort_key``)."""
    return b"\x00".join(
        (
            str(envelope["kind"]).encode(),
            str(envelope["id"]).encode("utf-8"),
            str(envelope.get("modified") or "").encode(),
            str(envelope["digest"]).encode(),
        )
    )


def line_digest(line: bytes) -> str:
    return sha256_digest(line)


def set_term(key: bytes, digest: str) -> int:
    return int.from_bytes(hashlib.sha256(key + b"\n" + digest.encode()).digest(), "big")


@dataclass(frozen=True, slots=True)
class RecordSet:
    """The multiset digest of (key, content digest) pairs and how many there are."""

    total: int = 0
    records: int = 0

    def add(self, key: bytes, digest: str) -> RecordSet:
        return RecordSet((self.total + set_term(key, digest)) % _MODULUS, self.records + 1)

    def merge(self, other: RecordSet) -> RecordSet:
        return RecordSet((self.total + other.total) % _MODULUS, self.records + other.records)

    @classmethod
    def of(cls, pairs: Iterable[tuple[bytes, str]]) -> RecordSet:
        total = records = 0
        for key, digest in pairs:
            total += set_term(key, digest)
            records += 1
        return cls(total % _MODULUS, records)

    def to_json(self) -> dict[str, Any]:
        return {"algorithm": SET_ALGORITHM, "digest": f"{self.total:064x}", "records": self.records}


def record_from_line(line: bytes, *, where: str) -> LedgerRecord:
    """The ledger record a json:raw / mirror line stands for, with its original provenance.

    Proven exact: the record is turned back into its line and must give the same bytes,
    so nothing a mirror carries can be loaded into a ledger in an altered form.

    Raises:
        BundleIntegrityError: the line is not a canonical envelope line.
    """
    from stella.canonical import canonical_document

    try:
        envelope = json.loads(line)
        link = envelope["linkset"]
        _value, document = canonical_document(json.dumps(envelope["document"], ensure_ascii=False))
        record = LedgerRecord(
            tenant=str(envelope["tenant"]),
            kind=Kind(envelope["kind"]),
            format=DocFormat(envelope["format"]),
            upstream_id=str(envelope["id"]),
            modified=envelope["modified"],
            revision=envelope["revision"],
            source=str(envelope["source"]),
            ingested_at=str(envelope["ingestedAt"]),
            digest=str(envelope["digest"]),
            document=document,
            linkset=Linkset(
                ecosystems=tuple(link["ecosystems"]),
                packages=tuple(link["packages"]),
                purls=tuple(link["purls"]),
                aliases=tuple(link["aliases"]),
                vex_products=tuple(link["vexProducts"]),
                sbom_subject=link.get("sbomSubject"),
                withdrawn=link.get("withdrawn"),
            ),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleIntegrityError(
            f"{where}: not a mirror record line: {exc}", details={"file": where}
        ) from exc
    if envelope_line(record) != line:
        raise BundleIntegrityError(
            f"{where}: record {record.upstream_id} is not in canonical envelope form",
            details={"file": where, "id": record.upstream_id},
        )
    return record
