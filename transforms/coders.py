"""Element types for batches, and the one coder that sizes them cheaply.

Beam samples the encoded size of elements to report throughput; with the default
coder that means *pickling* the element. Our elements are batches of thousands of
records, and Beam samples every one of the first elements of a bundle, so the default
cost one full pickle of every record (~30% of a json:raw export). :class:`BatchCoder`
asks the batch for an estimate from lengths already known, and really encodes only
when a batch crosses a process boundary (multi-processing, Dask, Flink, Dataflow).
"""

from __future__ import annotations

import pickle
from typing import Any

import apache_beam as beam

from stella.model import LedgerRecord, LedgerRow
from stella.sorting import SortItem

__all__ = ["BatchCoder", "ItemBatch", "RecordBatch", "RowBatch"]

_RECORD_OVERHEAD = 256  # envelope fields and linkset, roughly, per record


_SAMPLE = 32  # elements a size estimate looks at: Beam asks several times per batch


class RecordBatch(list[LedgerRecord]):
    """A batch of ledger records: the element ReadLedger and SelectRecords produce."""

    def size_estimate(self) -> int:
        sample = self[:_SAMPLE]
        each = sum(len(r.document) for r in sample) / max(len(sample), 1) + _RECORD_OVERHEAD
        return int(each * len(self))


class RowBatch(list[LedgerRow]):
    """A batch of ledger rows as the segment stores them: the element of the row read path."""

    def size_estimate(self) -> int:
        sample = self[:_SAMPLE]
        each = sum(len(r["document"]) for r in sample) / max(len(sample), 1) + _RECORD_OVERHEAD
        return int(each * len(self))


class ItemBatch(list[SortItem]):
    """A batch of (group, key, value) items: the element AdaptRecords produces."""

    def size_estimate(self) -> int:
        sample = self[:_SAMPLE]
        each = sum(len(k) + len(v) + len(g) for g, k, v in sample) / max(len(sample), 1)
        return int(each * len(self))


Batch = RecordBatch | RowBatch | ItemBatch


class BatchCoder(beam.coders.Coder):  # type: ignore[misc]
    """Pickles a batch as a plain list and restores its type; sizes it without encoding."""

    def __init__(self, batch_type: type[Batch]) -> None:
        self._batch_type = batch_type

    @classmethod
    def from_type_hint(cls, typehint: type[Batch], unused_registry: Any) -> BatchCoder:
        return cls(typehint)

    def encode(self, value: Batch) -> bytes:
        return pickle.dumps(list(value), protocol=pickle.HIGHEST_PROTOCOL)

    def decode(self, encoded: bytes) -> Batch:
        return self._batch_type(pickle.loads(encoded))

    def is_deterministic(self) -> bool:
        return False

    def estimate_size(self, value: Batch) -> int:
        """From a sample of the batch: the figure only feeds Beam's throughput metrics."""
        return value.size_estimate()

    def to_type_hint(self) -> Any:
        return self._batch_type


beam.coders.registry.register_coder(RecordBatch, BatchCoder)
beam.coders.registry.register_coder(RowBatch, BatchCoder)
beam.coders.registry.register_coder(ItemBatch, BatchCoder)
