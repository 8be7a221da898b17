"""``stella ledger ingest --from-mirror``: a mirror's records back into a ledger, provenance intact.

Each line is turned back into the ledger record it was exported from
(:func:`stella.adapters.mirror.records.record_from_line`, which proves the round trip
byte-exact), so ``ingestedAt``, ``source`` and ``digest`` stay the sending side's, and a
json:raw export on this side equals the sending side's export of the same selection.
Records already in the ledger (same digest) are counted as duplicates, as any ingest.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from stella.adapters.mirror.records import record_from_line
from stella.errors import MirrorScopeError, NotFoundError
from stella.ledger.ingest import IngestReport
from stella.ledger.store import SEGMENT_MAX_BYTES, SEGMENT_MAX_RECORDS, LedgerStore, batched
from stella.mirror.importer import state_lines
from stella.mirror.state import current_state
from stella.model import LedgerRecord, validate_tenant

__all__ = ["ingest_mirror"]


def ingest_mirror(store: LedgerStore, tenant: str, mirror: Path) -> IngestReport:
    """Load the current state of ``mirror`` into ``tenant``'s ledger.

    Raises:
        NotFoundError: no mirror there.
        MirrorScopeError: the mirror holds another tenant's records.
        BundleIntegrityError: a line is not an exact envelope line.
    """
    validate_tenant(tenant)
    state = current_state(mirror) if mirror.is_dir() else None
    if state is None:
        raise NotFoundError(f"{mirror} holds no mirror", details={"mirror": str(mirror)})
    if state.tenant != tenant:
        raise MirrorScopeError(
            f"mirror {mirror} holds tenant {state.tenant!r}, not {tenant!r}",
            details={"tenant": tenant, "mirrorTenant": state.tenant},
        )
    report = IngestReport(tenant=tenant)
    with store.writer_lock(tenant):
        known = store.known_digests(tenant)

        def records() -> Iterator[LedgerRecord]:
            for where, line in state_lines(state.path):
                record = record_from_line(line, where=where)
                key = (record.kind.value, record.format.value)
                if record.digest in known:
                    report.duplicates[key] += 1
                    continue
                known.add(record.digest)
                report.added[key] += 1
                yield record

        for batch in batched(records(), max_records=SEGMENT_MAX_RECORDS, max_bytes=SEGMENT_MAX_BYTES):
            written = store.write_segment(tenant, batch)
            if written is not None:
                report.segments.append(written)
    return report
