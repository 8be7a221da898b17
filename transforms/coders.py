"""Element types for batches, with coders that size them cheaply.

Beam samples the encoded size of elements to report throughput; with the default
coder that means *pickling* the element. Our elements are batches of thousands of
records, and Beam samples every one of the first elements of a bundle, so the default
cost one full pickle of every record (~30% of a json:raw export). These coders estimate
size from lengths already known, and are only asked to really encode when a batch
crosses a process boundary (multi-processing, Dask, Flink, Dataflow).
"""

from __future__ import annotations

import pickle
from typing import Any

import apache_beam as beam

from stella.model import LedgerRecord
from stella.sorting import SortItem

__all__ = ["ItemBatch", "ItemBatchCoder", "RecordBatch", "RecordBatchCoder"]

_RECORD_OVERHEAD = 256  # envelope fields and linkset, roughly, per record


class RecordBatch(list[LedgerRecord]):
    """A batch of ledger records: the element ReadLedger and SelectRecords produce."""


class ItemBatch(list[SortItem]):
    """A batch of (group, key, value) items: the element AdaptRecords produces."""


class RecordBatchCoder(beam.coders.Coder):  # type: ignore[misc]
    def encode(self, value: RecordBatch) -> bytes:
        return pickle.dumps(list(value), protocol=pickle.HIGHEST_PROTOCOL)

    def decode(self, encoded: bytes) -> RecordBatch:
        return RecordBatch(pickle.loads(encoded))

    def is_deterministic(self) -> bool:
        return False

    def estimate_size(self, value: RecordBatch) -> int:
        return sum(len(r.document) for r in value) + _RECORD_OVERHEAD * len(value)

    def to_type_hint(self) -> Any:
        return RecordBatch


class ItemBatchCoder(beam.coders.Coder):  # type: ignore[misc]
    def encode(self, value: ItemBatch) -> bytes:
        return pickle.dumps(list(value), protocol=pickle.HIGHEST_PROTOCOL)

    def decode(self, encoded: bytes) -> ItemBatch:
        return ItemBatch(pickle.loads(encoded))

    def is_deterministic(self) -> bool:
        return False

    def estimate_size(self, value: ItemBatch) -> int:
        return sum(len(k) + len(v) + len(g) for g, k, v in value)

    def to_type_hint(self) -> Any:
        return ItemBatch


beam.coders.registry.register_coder(RecordBatch, RecordBatchCoder)
beam.coders.registry.register_coder(ItemBatch, ItemBatchCoder)
