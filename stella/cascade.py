"""Merging any number of sorted run slices with a bounded number open at once.

:func:`stella.sorting.merge_slices` opens every slice it is given at the same time: one
file handle and one zstd decoder (~0.1 MB) each. That is right for a shard, which gets
a few buckets of each run, but a profile that merges a whole group into *one* file (a
Trivy DB) gets every bucket of every run -- with one run per ledger batch, a million
records make tens of thousands of slices, beyond both memory and the open-file limit.

So the merge is a tree: while more than ``fan_in`` slices remain, groups of ``fan_in``
are merged into one intermediate run each (one zstd frame, the same record format as
``write_run``, so it is just another :class:`~stella.sorting.RunSlice`). Each level
costs one more sequential pass over the data; memory is ``fan_in`` readers.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterator, Sequence
from typing import IO

import zstandard

from stella import storage
from stella.sorting import RunSlice, merge_slices

__all__ = ["DEFAULT_FAN_IN", "merge_bounded"]

DEFAULT_FAN_IN = 256
_LENGTHS = struct.Struct(">II")  # the run record header of stella.sorting
_LEVEL = 1  # intermediate runs are temporary: favour speed over size
_WRITE_CHUNK = 1 << 20


class _CountingSink:
    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self.size = 0

    def write(self, data: bytes) -> int:
        self._handle.write(data)
        self.size += len(data)
        return len(data)


def _spill(slices: Sequence[RunSlice], temp_dir: str) -> RunSlice:
    """Merge ``slices`` into one new single-frame run file; its slice."""
    path = storage.join(temp_dir, f"merge-{uuid.uuid4().hex}.bin")
    count = 0
    with storage.open_write(path) as handle:
        sink = _CountingSink(handle)
        with zstandard.ZstdCompressor(level=_LEVEL).stream_writer(sink, closefd=False) as writer:  # type: ignore[arg-type]
            buffer: list[bytes] = []
            size = 0
            for key, value in merge_slices(slices):
                buffer += (_LENGTHS.pack(len(key), len(value)), key, value)
                size += len(key) + len(value) + _LENGTHS.size
                count += 1
                if size >= _WRITE_CHUNK:
                    writer.write(b"".join(buffer))
                    buffer, size = [], 0
            writer.write(b"".join(buffer))
    return RunSlice(path, slices[0].group, 0, 0, sink.size, count)


def merge_bounded(
    slices: Sequence[RunSlice], temp_dir: str, *, fan_in: int = DEFAULT_FAN_IN
) -> Iterator[tuple[bytes, bytes]]:
    """All pairs of ``slices`` in (key, value) order, with at most ``fan_in`` slices open at once.

    Intermediate runs go to ``temp_dir`` (removed with it). Slices are taken in a fixed
    order (sorted by file, offset), though the result is the same in any order.

    Raises:
        ValueError: ``fan_in`` is below 2.
    """
    if fan_in < 2:
        raise ValueError(f"fan_in must be at least 2, got {fan_in}")
    level = sorted(slices, key=lambda s: (s.path, s.offset))
    while len(level) > fan_in:
        level = [_spill(level[start : start + fan_in], temp_dir) for start in range(0, len(level), fan_in)]
    return merge_slices(level)
