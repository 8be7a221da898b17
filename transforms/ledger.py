"""Reading the ledger and choosing records: ``ReadLedger``, ``SelectRecords``, ``SummarizeRecords``.

Elements are *batches* (lists) of records, not single records: Beam costs ~1-50 µs per
element, and a batch of a few thousand records makes that cost vanish next to the work.

Each transform takes ``rows=True`` for the row read path: batches of the segment's Avro
rows as decoded (:class:`~transforms.coders.RowBatch`), no :class:`LedgerRecord` built,
for profiles that only write rows out (json:raw, mirror:full). Selectors and the
summary give the same answers on rows as on records.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, compress
from operator import attrgetter, itemgetter
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from stella.ledger.store import read_rows, record_from_row
from stella.model import LedgerRecord, LedgerRow, latest_high_water
from stella.runtime import tune_gc
from stella.selectors import Selectors
from stella.sorting import BATCH_BYTES
from stella.telemetry.tracing import TraceContext, stage_span
from stella.timefmt import later
from transforms.coders import RecordBatch, RowBatch
from transforms.progress import relay_progress

__all__ = ["KeepRecords", "ReadLedger", "ReadSegmentFn", "RecordSummary", "SelectRecords", "SummarizeRecords"]

Batch = RecordBatch | RowBatch
_LOG = logging.getLogger(__name__)
_ROW_DOCUMENT = itemgetter("document")
_RECORD_DOCUMENT = attrgetter("document")


class ReadSegmentFn(beam.DoFn):  # type: ignore[misc]
    """Streams one segment as batches bounded by record count and document bytes.

    Batches are the unit every later step works on (one sorted run per batch), so
    they are large enough to keep runs few and small enough to bound worker memory.
    A batch ends at the record that reaches either bound. ``rows``: batches of rows
    (:class:`RowBatch`) instead of records.
    """

    def __init__(
        self, batch_size: int, batch_bytes: int, trace: TraceContext = (), *, rows: bool = False
    ) -> None:
        self._batch_size = batch_size
        self._batch_bytes = batch_bytes
        self._trace = trace
        self._rows = rows
        self._read = Metrics.counter("ledger", "records_read")

    def setup(self) -> None:
        tune_gc()
        relay_progress()

    def process(self, path: str) -> Iterator[Batch]:
        make: type[Batch] = RowBatch if self._rows else RecordBatch
        document = _ROW_DOCUMENT if self._rows else _RECORD_DOCUMENT
        with stage_span("export.read", self._trace, **{"stella.segment": path.rsplit("/", 1)[-1]}) as span:
            batch: Batch = make()
            size = total = 0
            for rows in read_rows(path):
                chunk: list[Any] = rows if self._rows else list(map(record_from_row, rows))
                total += len(chunk)
                while chunk:
                    # Cumulative document bytes, in C: the batch ends at the first record
                    # reaching batch_bytes, or when it holds batch_size records.
                    sizes = list(
                        accumulate(
                            map(len, map(document, chunk[: self._batch_size - len(batch)])), initial=size
                        )
                    )
                    take = min(len(sizes) - 1, bisect_left(sizes, self._batch_bytes, 1))
                    batch.extend(chunk[:take])
                    size, chunk = sizes[take], chunk[take:]
                    if len(batch) >= self._batch_size or size >= self._batch_bytes:
                        self._read.inc(len(batch))
                        _read_progress(path, len(batch), size)
                        yield batch
                        batch, size = make(), 0
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
    """PBegin -> batches of ledger records (or, ``rows=True``, rows) from the given segment paths."""

    DEFAULT_BATCH_SIZE = 20_000
    DEFAULT_BATCH_BYTES = BATCH_BYTES

    def __init__(
        self,
        segment_paths: Sequence[str],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        trace: TraceContext = (),
        rows: bool = False,
    ) -> None:
        super().__init__()
        self._trace = trace
        self._rows = rows
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
            >> beam.ParDo(
                ReadSegmentFn(self._batch_size, self._batch_bytes, self._trace, rows=self._rows)
            ).with_output_types(RowBatch if self._rows else RecordBatch)
        )


class _FilterFn(beam.DoFn):  # type: ignore[misc]
    def __init__(self, predicate: Callable[[Any], bool] | None, counter: str) -> None:
        self._predicate = predicate  # None: keep everything (no per-record step at all)
        self._kept = Metrics.counter(counter, "kept")
        self._dropped = Metrics.counter(counter, "dropped")

    def process(self, batch: list[Any]) -> Iterator[list[Any]]:
        kept = batch if self._predicate is None else type(batch)(compress(batch, map(self._predicate, batch)))
        self._kept.inc(len(kept))
        self._dropped.inc(len(batch) - len(kept))
        if kept:
            yield kept


class SelectRecords(beam.PTransform):  # type: ignore[misc]
    """Batches -> batches holding only records the selectors match (empty batches dropped).

    ``rows=True``: batches of rows, matched by :meth:`Selectors.matches_row`.
    """

    def __init__(self, selectors: Selectors, *, rows: bool = False) -> None:
        super().__init__()
        self._selectors = selectors
        self._rows = rows

    def expand(self, batches: beam.PCollection) -> beam.PCollection:
        predicate: Callable[[Any], bool] | None = None
        if not self._selectors.is_empty:
            predicate = self._selectors.matches_row if self._rows else self._selectors.matches
        fn = _FilterFn(predicate, "select")
        return batches | "MatchSelectors" >> beam.ParDo(fn).with_output_types(
            RowBatch if self._rows else RecordBatch
        )


class KeepRecords(beam.PTransform):  # type: ignore[misc]
    """Batches -> batches of only the records a profile reads (e.g. OSV advisories); ``rows=True``: of rows.

    Unlike selectors this is the profile's own input filter, counted separately, so a
    user can tell "not selected" from "not something this profile exports".
    """

    def __init__(self, keep: Callable[[Any], bool], *, rows: bool = False) -> None:
        super().__init__()
        self._keep = keep  # of a LedgerRecord, or (rows=True) of a ledger row
        self._rows = rows

    def expand(self, batches: beam.PCollection) -> beam.PCollection:
        return batches | "KeepProfileRecords" >> beam.ParDo(
            _FilterFn(self._keep, "profile")
        ).with_output_types(RowBatch if self._rows else RecordBatch)


@dataclass(frozen=True)
class RecordSummary:
    """Counts per kind and the newest record time: what the manifest needs from the data."""

    counts: dict[str, int] = field(default_factory=dict)
    high_water: str | None = None


def _row_fields(batch: list[LedgerRow]) -> tuple[Iterable[str], Iterable[tuple[str | None, str]]]:
    return map(_KIND, batch), map(_TIMES, batch)


def _record_fields(batch: list[LedgerRecord]) -> tuple[Iterable[str], Iterable[tuple[str | None, str]]]:
    return (r.kind.value for r in batch), ((r.modified, r.ingested_at) for r in batch)


_KIND = itemgetter("kind")
_TIMES = itemgetter("modified", "ingested_at")


class _SummaryFn(beam.CombineFn):  # type: ignore[misc]
    def __init__(self, rows: bool) -> None:
        self._fields: Callable[[Any], tuple[Iterable[str], Iterable[tuple[str | None, str]]]] = (
            _row_fields if rows else _record_fields
        )

    def create_accumulator(self) -> tuple[Counter[str], str | None]:
        return Counter(), None

    def add_input(
        self, acc: tuple[Counter[str], str | None], batch: Batch
    ) -> tuple[Counter[str], str | None]:
        counts, high = acc
        kinds, times = self._fields(batch)
        counts.update(kinds)
        return counts, later(high, latest_high_water(times))

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
    """Batches (of rows, ``rows=True``) -> one RecordSummary (also for an empty selection)."""

    def __init__(self, *, rows: bool = False) -> None:
        super().__init__()
        self._rows = rows

    def expand(self, batches: beam.PCollection) -> beam.PCollection:
        return batches | "CountAndHighWater" >> beam.CombineGlobally(
            _SummaryFn(self._rows)
        ).with_output_types(RecordSummary)
