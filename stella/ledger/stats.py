"""What a tenant's ledger holds: record counts per kind and format, segments, quarantine.

Shared by ``stella ledger stats`` and any other surface that reports on a ledger, so the
numbers are counted one way.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from stella.ledger.store import LedgerStore, SegmentInfo
from stella.model import validate_tenant

__all__ = ["LedgerStats", "ledger_stats"]


@dataclass(frozen=True)
class LedgerStats:
    tenant: str
    ledger: str
    by_kind_format: dict[tuple[str, str], int]  # sorted by (kind, format)
    segments: tuple[SegmentInfo, ...]
    quarantined: int
    # Rejections behind the quarantined entries (the same bytes rejected twice: one entry).
    quarantine_rejections: int = 0
    # Quarantine reason files that cannot be read (torn by a crash before writes were atomic).
    quarantine_torn: tuple[str, ...] = ()

    @property
    def records(self) -> int:
        return sum(self.by_kind_format.values())

    @property
    def bytes(self) -> int:
        return sum(segment.bytes for segment in self.segments)

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "ledger": self.ledger,
            "records": self.records,
            "byKindFormat": {f"{k}/{f}": n for (k, f), n in self.by_kind_format.items()},
            "segments": [
                {"name": s.name, "records": s.records, "bytes": s.bytes, "digest": s.digest}
                for s in self.segments
            ],
            "quarantined": self.quarantined,
            "quarantineRejections": self.quarantine_rejections,
            "quarantineTorn": list(self.quarantine_torn),
        }


def ledger_stats(store: LedgerStore, tenant: str) -> LedgerStats:
    """Count a tenant's records by reading every segment once.

    Raises:
        UsageError: a malformed tenant.
        NotFoundError: the tenant has no segments.
    """
    tenant = validate_tenant(tenant)
    segments = tuple(store.require_segments(tenant))
    counts: Counter[tuple[str, str]] = Counter((r.kind.value, r.format.value) for r in store.read(tenant))
    quarantined = store.quarantined(tenant)
    return LedgerStats(
        tenant=tenant,
        ledger=store.root,
        by_kind_format=dict(sorted(counts.items())),
        segments=segments,
        quarantined=len(quarantined),
        quarantine_rejections=sum(len(q.get("sources", [None])) for q in quarantined if not q.get("torn")),
        quarantine_torn=tuple(str(q["file"]) for q in quarantined if q.get("torn")),
    )
