"""The adapter port: ledger records in, sortable payload items out.

An adapter is a pure function of one record, so it runs unchanged on any worker of any
runner; everything order-dependent (sorting, sharding, merging into one database) is
the sort/shard machinery's job, never the adapter's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from stella.model import LedgerRecord
from stella.sorting import SortItem

__all__ = ["RecordAdapter"]


class RecordAdapter(Protocol):
    """Turns one selected record into zero or more (group, key, value) items."""

    def __call__(self, record: LedgerRecord) -> Iterable[SortItem]: ...
