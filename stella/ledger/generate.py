"""``stella ledger generate``: a synthetic ledger, in parallel, idempotently.

Documents come from :mod:`stella.ledger.synthetic` in fixed-size slices; each slice
becomes one segment, written by a worker process. Documents already in the tenant
(same digest) are skipped, so generating the same (count, seed) twice adds nothing,
exactly like ingesting the same files twice.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

from stella.ledger.ingest import to_record
from stella.ledger.store import LedgerStore, SegmentInfo
from stella.model import validate_tenant

__all__ = ["SLICE_SIZE", "GenerateReport", "generate_ledger"]

SLICE_SIZE = 25_024  # a multiple of the generator's 64-document block


@dataclass(frozen=True)
class GenerateReport:
    tenant: str
    requested: int
    added: int
    segments: tuple[SegmentInfo, ...]


_KNOWN: set[str] = set()


def _load_known(root: str, tenant: str) -> None:
    """Pool initializer: each worker loads the tenant's digests once, to skip duplicates."""
    _KNOWN.update(LedgerStore(root).known_digests(tenant))


def _generate_slice(
    root: str,
    tenant: str,
    start: int,
    stop: int,
    seed: int,
    sequence: int,
    ingested_at: str,
    advisories_only: bool,
) -> tuple[int, SegmentInfo | None]:
    from stella.ledger.synthetic import synthetic_slice

    generated = 0
    records = []
    for offset, (_fmt, raw) in enumerate(
        synthetic_slice(start, stop, seed=seed, advisories_only=advisories_only)
    ):
        generated += 1
        record = to_record(
            raw,
            tenant=tenant,
            source=f"synthetic/seed-{seed}#{start + offset + 1}",
            ingested_at=ingested_at,
            already_canonical=True,
        )
        if record.digest not in _KNOWN:
            records.append(record)
    if not records:
        return generated, None
    return generated, LedgerStore(root).write_segment(tenant, records, sequence=sequence)


def generate_ledger(
    store: LedgerStore,
    tenant: str,
    count: int,
    *,
    seed: int,
    ingested_at: str,
    workers: int | None = None,
    advisories_only: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> GenerateReport:
    validate_tenant(tenant)
    if count < 1:
        from stella.errors import UsageError

        raise UsageError(f"--records must be at least 1, got {count}")
    base = store.next_sequence(tenant)
    slices = [(start, min(start + SLICE_SIZE, count)) for start in range(0, count, SLICE_SIZE)]
    pool_size = max(1, min(workers or os.cpu_count() or 1, len(slices)))
    written: list[SegmentInfo] = []
    added = done = 0
    context = multiprocessing.get_context("spawn")
    with (
        store.writer_lock(tenant),
        ProcessPoolExecutor(
            max_workers=pool_size, mp_context=context, initializer=_load_known, initargs=(store.root, tenant)
        ) as pool,
    ):
        store.clean_stale(tenant)  # temp files of killed runs (their writers are gone)
        futures = [
            pool.submit(
                _generate_slice, store.root, tenant, start, stop, seed, base + i, ingested_at, advisories_only
            )
            for i, (start, stop) in enumerate(slices)
        ]
        for future in as_completed(futures):
            n, info = future.result()
            done += n
            if info is not None:
                written.append(info)
                added += info.records
            if progress is not None:
                progress(done, count)
    return GenerateReport(tenant, count, added, tuple(sorted(written, key=lambda s: s.name)))
