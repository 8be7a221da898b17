"""Reading the ledger and choosing records: ``ReadLedger``, ``SelectRecords``, ``SummarizeRecords``.

Elements are *batches* (lists) of records, not single records: Beam costs ~1-50 µs per
element, and a batch of a few thousand records makes that cost vanish next to the work.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import apache_beam as beam
from apache_beam.metrics import Metrics

from stella.ledger.store import read_segment
from stella.model import LedgerRecord
from stella.selectors import Selectors
from stella.telemetry.tracing import TraceContext, stage_span
from stella.timefmt import later
from transforms.coders import RecordBatch
from transforms.progress import relay_progress
from transforms.runtime import tune_gc

__all__ = ["KeepRecords", "ReadLedger", "ReadSegmentFn", "RecordSummary", "SelectRecords", "SummarizeRecords"]

Batch = RecordBatch
_LOG = logging.getLogger(__name__)


class ReadSegmentFn(beam.DoFn):  # type: ignore[misc]
    """Streams one segment as batches bounded by record count and document bytes.

    Batches are the unit every later step works on (one sorted run per batch), so
    they are large enough to keep runs few and small enough to bound worker memory.
    """

    def __init__(self, batch_size: int, batch_bytes: int, trace: TraceContext = ()) -> None:
        self._batch_size = batch_size
        self._batch_bytes = batch_bytes
        self._trace = trace
        self._read = Metrics.counter("ledger", "records_read")

    def setup(self) -> None:
        tune_gc()
        relay_progress()

    def process(self, path: str) -> Iterator[Batch]:
        with stage_span("export.read", self._trace, **{"stella.segment": path.rsplit("/", 1)[-1]}) as span:
            batch = RecordBatch()
            size = total = 0
            for record in read_segment(path):
                total += 1
                batch.append(record)
                size += len(record.document)
                if len(batch) >= self._batch_size or size >= self._batch_bytes:
                    self._read.inc(len(batch))
                    _read_progress(path, len(batch), size)
                    yield batch
                    batch, size = RecordBatch(), 0
            if batch:
                self._read.inc(len(batch))
                _read_progress(path, len(batch), size)
                yield batch
            span.set_attribute("stella.records", total)
        # The per-segment line the service's progress events count (already in the CLI's counters).
        _LOG.info(
            "read %s: %d records",
            path.rsplit("/", 1)[-1],
            total,
            extra={"progress": {"stage": "read", "records": 0}},
        )


def _read_progress(path: str, records: int, size: int) -> None:
    """One batch read: a live progress update for the CLI's display (stella.cli.progress)."""
    _LOG.info(
        "reading %s: %d records",
        path.rsplit("/", 1)[-1],
        records,
        extra={"progress": {"stage": "read", "records": records, "bytes": size}},
    )


class ReadLedger(beam.PTransform):  # type: ignore[misc]
    """PBegin -> batches of ledger records from the given segment paths."""

    DEFAULT_BATCH_SIZE = 20_000
    DEFAULT_BATCH_BYTES = 32 * 1024 * 1024

    def __init__(
        self,
        segment_paths: Sequence[str],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        trace: TraceContext = (),
    ) -> None:
        super().__init__()
        self._trace = trace
        if batch_size < 1 or batch_bytes < 1:
            raise ValueError(f"batch_size and batch_bytes must be positive, got {batch_size}, {batch_bytes}")
        self._paths = sorted(segment_paths)
        self._batch_size = batch_size
        self._batch_bytes = batch_bytes

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "ListSegments" >> beam.Create(self._paths)
            | "SpreadSegments" >> beam.Reshuffle()
            | "ReadSegments"
            >> beam.ParDo(ReadSegmentFn(self._batch_size, self._batch_bytes, self._trace)).with_output_types(
                Batch
            )
        )


class _FilterFn(beam.DoFn):  # type: ignore[misc]
    def __init__(self, predicate: Callable[[LedgerRecord], bool], counter: str) -> None:
        self._predicate = predicate
        self._kept = Metrics.counter(counter, "kept")
        self._dropped = Metrics.counter(counter, "dropped")

    def process(self, batch: Batch) -> Iterator[Batch]:
        kept = RecordBatch(r for r in batch if self._predicate(r))
        self._kept.inc(len(kept))
        self._dropped.inc(len(batch) - len(kept))
        if kept:
            yield kept


class SelectRecords(beam.PTransform):  # type: ignore[misc]
    """Batches -> batches holding only records the selectors match (empty batches dropped)."""

    def __init__(self, selectors: Selectors) -> None:
        super().__init__()
        self._selectors = selectors

    def expand(self, batches: beam.PCollection) -> beam.PCollection:
        fn = _FilterFn(self._selectors.matches, "select")
        return batches | "MatchSelectors" >> beam.ParDo(fn).with_output_types(Batch)


class KeepRecords(beam.PTransform):  # type: ignore[misc]
    """Batches -> batches of only the records a profile reads (e.g. OSV advisories).

    Unlike selectors this is the profile's own input filter, counted separately, so a
    user can tell "not selected" from "not something this profile exports".
    """

    def __init__(self, keep: Callable[[LedgerRecord], bool]) -> None:
        super().__init__()
        self._keep = keep

    def expand(self, batches: beam.PCollection) -> beam.PCollection:
        return batches | "KeepProfileRecords" >> beam.ParDo(
            _FilterFn(self._keep, "profile")
        ).with_output_types(Batch)


@dataclass(frozen=True)
class RecordSummary:
    """Counts per kind and the newest record time: what the manifest needs from the data."""

    counts: dict[str, int] = field(default_factory=dict)
    high_water: str | None = None


class _SummaryFn(beam.CombineFn):  # type: ignore[misc]
    def create_accumulator(self) -> tuple[Counter[str], str | None]:
        return Counter(), None

    def add_input(
        self, acc: tuple[Counter[str], str | None], batch: Batch
    ) -> tuple[Counter[str], str | None]:
        counts, high = acc
        counts.update(r.kind.value for r in batch)
        return counts, later(high, *(r.high_water for r in batch))

    def merge_accumulators(
        self, accumulators: Iterable[tuple[Counter[str], str | None]]
    ) -> tuple[Counter[str], str | None]:
        total: Counter[str] = Counter()
        high: str | None = None
        for counts, other in accumulators:
            total.update(counts)
            high = later(high, other)
        return total, high

    def extract_output(self, acc: tuple[Counter[str], str | None]) -> RecordSummary:
        counts, high = acc
        return RecordSummary(dict(sorted(counts.items())), high)


class SummarizeRecords(beam.PTransform):  # type: ignore[misc]
    """Batches -> one RecordSummary (also for an empty selection)."""

    def expand(self, batches: beam.PCollection) -> beam.PCollection:
        return batches | "CountAndHighWater" >> beam.CombineGlobally(_SummaryFn()).with_output_types(
            RecordSummary
        )
