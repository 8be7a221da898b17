"""Run slices packed into one value per group: what the shuffles of the external sort carry.

A run file holds one slice per (group, bucket range), so the descriptors a sort shuffles
grow as runs times ranges: at 10M synthetic documents, ~800 runs x 63 ranges = ~50,000
``RunSlice`` objects, one Beam element each. The in-process runner holds a shuffled
PCollection's encoded elements and then their decoded objects, several times over; that
shuffle alone raised the peak RSS of a json:raw export by ~55 MB at 10M (~80 MB in
isolation), which made memory grow with N where the merges themselves stay bounded.

A :class:`SliceTable` carries the slices of one group as a tuple of paths and one packed
byte table (26 bytes per slice, a path by its number): one element per run file and group
out of ``WriteRunsFn``, one per shard or partition out of the grouping steps, so each
shuffle carries a few hundred elements whatever the bucket count.
"""

from __future__ import annotations

import struct
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from stella.sorting import RunSlice

__all__ = ["SliceTable", "slices_of"]

# path number, bucket, width, offset, length, count
_ENTRY = struct.Struct("<IBBQQI")


@dataclass(frozen=True, slots=True)
class SliceTable:
    """The slices of one group (from one run file or many), packed."""

    group: str
    paths: tuple[str, ...]
    table: bytes

    def __reduce__(self) -> tuple[type[SliceTable], tuple[str, tuple[str, ...], bytes]]:
        # Pickled by every shuffle: a slots dataclass's default pickling calls fields() per object.
        return SliceTable, (self.group, self.paths, self.table)

    @classmethod
    def pack(cls, slices: Iterable[RunSlice]) -> list[SliceTable]:
        """One table per group of ``slices``, in group order."""
        by_group: defaultdict[str, list[RunSlice]] = defaultdict(list)
        for piece in slices:
            by_group[piece.group].append(piece)
        return [cls._of(group, pieces) for group, pieces in sorted(by_group.items())]

    @classmethod
    def _of(cls, group: str, slices: Iterable[RunSlice]) -> SliceTable:
        numbers: dict[str, int] = {}
        table = bytearray()
        for piece in slices:
            number = numbers.setdefault(piece.path, len(numbers))
            table += _ENTRY.pack(number, piece.bucket, piece.width, piece.offset, piece.length, piece.count)
        return cls(group, tuple(numbers), bytes(table))

    @classmethod
    def join(cls, group: str, tables: Iterable[SliceTable]) -> SliceTable:
        """All slices of ``tables`` (each of ``group``) in one table."""
        numbers: dict[str, int] = {}
        table = bytearray()
        for part in tables:
            if part.group != group:
                raise ValueError(f"cannot join slices of group {part.group!r} into group {group!r}")
            renumber = [numbers.setdefault(path, len(numbers)) for path in part.paths]
            for number, bucket, width, offset, length, count in _ENTRY.iter_unpack(part.table):
                table += _ENTRY.pack(renumber[number], bucket, width, offset, length, count)
        return cls(group, tuple(numbers), bytes(table))

    @property
    def count(self) -> int:
        """Items in all the slices."""
        return sum(entry[5] for entry in _ENTRY.iter_unpack(self.table))

    def __len__(self) -> int:
        return len(self.table) // _ENTRY.size

    def slices(self) -> list[RunSlice]:
        """The slices as merge_slices takes them."""
        group, paths = self.group, self.paths
        return [
            RunSlice(paths[number], group, bucket, offset, length, count, width)
            for number, bucket, width, offset, length, count in _ENTRY.iter_unpack(self.table)
        ]

    def split(self, part_of: Callable[[int, int], int]) -> dict[int, SliceTable]:
        """The slices grouped by ``part_of(bucket, width)`` (a shard or partition), one table each."""
        parts: defaultdict[int, list[RunSlice]] = defaultdict(list)
        for piece in self.slices():
            parts[part_of(piece.bucket, piece.width)].append(piece)
        return {part: self._of(self.group, pieces) for part, pieces in sorted(parts.items())}


def slices_of(tables: Iterable[SliceTable]) -> list[RunSlice]:
    """Every slice of ``tables``, for a merge over all of them."""
    return [piece for table in tables for piece in table.slices()]
