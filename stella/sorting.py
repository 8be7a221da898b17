"""External sort: sorted runs on storage, k-way merged into shards with bounded memory.

Every profile needs a global, runner-independent order (JSON shards sorted by record
key, Trivy buckets sorted for the bbolt bulk loader). Shuffling whole documents through
a Beam GroupByKey would hold the data set in memory on the in-process runner, so
instead each worker sorts what it has and writes it as a *run*; only small run
descriptors travel through the shuffle; one merge per shard streams the runs back in
key order. Memory is one batch plus one read buffer per run, whatever the data size.

A run file holds, per (group, bucket), one independent zstd frame of length-prefixed
``key``/``value`` pairs sorted by key. Buckets are a fixed hash partition of the key,
so which shard a record lands in depends on its key alone, never on the runner.
"""

from __future__ import annotations

import hashlib
import heapq
import io
import struct
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO

import zstandard

from stella import storage

__all__ = [
    "BUCKETS",
    "RunSlice",
    "SortItem",
    "bucket_of",
    "merge_slices",
    "shard_count",
    "shard_of_bucket",
    "write_run",
]

BUCKETS = 64
_LENGTHS = struct.Struct(">II")
_RUN_LEVEL = 1  # runs are temporary: favour speed over size
_READ_CHUNK = 1 << 16

SortItem = tuple[str, bytes, bytes]
"""(group, key, value): group names an output (e.g. a record kind), key orders within it."""


@dataclass(frozen=True, slots=True)
class RunSlice:
    """One (group, bucket) region of a run file: what the shuffle carries instead of data."""

    path: str
    group: str
    bucket: int
    offset: int
    length: int
    count: int


def bucket_of(key: bytes) -> int:
    """Stable across processes and machines (unlike ``hash()``, which is salted)."""
    return int.from_bytes(hashlib.blake2b(key, digest_size=2).digest(), "big") % BUCKETS


def shard_count(records: int, *, records_per_shard: int) -> int:
    """How many shards a group gets: a pure function of its record count."""
    if records <= 0:
        return 1
    return max(1, min(BUCKETS, -(-records // records_per_shard)))


def shard_of_bucket(bucket: int, shards: int) -> int:
    """Contiguous bucket ranges per shard, so every bucket belongs to exactly one shard."""
    return bucket * shards // BUCKETS


def write_run(directory: str, items: Iterable[SortItem]) -> list[RunSlice]:
    """Sort ``items`` and write them as one run file under ``directory``.

    The file name is random: a retried Beam bundle writes a new file, and only the
    slices of the attempt that committed are ever merged.
    """
    keyed = sorted((group, bucket_of(key), key, value) for group, key, value in items)
    if not keyed:
        return []
    path = storage.join(directory, f"run-{uuid.uuid4().hex}.bin")
    slices: list[RunSlice] = []
    compressor = zstandard.ZstdCompressor(level=_RUN_LEVEL)
    offset = 0
    with storage.open_write(path) as handle:
        start = 0
        while start < len(keyed):
            group, bucket = keyed[start][0], keyed[start][1]
            end = start
            buffer = io.BytesIO()
            while end < len(keyed) and keyed[end][0] == group and keyed[end][1] == bucket:
                _, _, key, value = keyed[end]
                buffer.write(_LENGTHS.pack(len(key), len(value)))
                buffer.write(key)
                buffer.write(value)
                end += 1
            frame = compressor.compress(buffer.getvalue())
            handle.write(frame)
            slices.append(RunSlice(path, group, bucket, offset, len(frame), end - start))
            offset += len(frame)
            start = end
    return slices


class _RangeReader(io.RawIOBase):
    """Exposes bytes [offset, offset+length) of a file as a stream."""

    def __init__(self, handle: IO[bytes], offset: int, length: int) -> None:
        self._handle = handle
        self._remaining = length
        handle.seek(offset)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._remaining <= 0:
            return 0
        data = self._handle.read(min(len(buffer), self._remaining, _READ_CHUNK))
        buffer[: len(data)] = data
        self._remaining -= len(data)
        return len(data)


def _read_slice(piece: RunSlice) -> Iterator[tuple[bytes, bytes]]:
    with storage.open_read(piece.path) as handle:
        raw = _RangeReader(handle, piece.offset, piece.length)
        stream = io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw))  # type: ignore[arg-type]
        for _ in range(piece.count):
            header = stream.read(_LENGTHS.size)
            if len(header) != _LENGTHS.size:
                raise OSError(f"run file {piece.path} is truncated")
            key_len, value_len = _LENGTHS.unpack(header)
            key = stream.read(key_len)
            value = stream.read(value_len)
            yield key, value


def merge_slices(slices: Sequence[RunSlice]) -> Iterator[tuple[bytes, bytes]]:
    """All pairs of ``slices`` in (key, value) order.

    Ordering by value too makes equal keys come out the same way whatever the run
    files were called or which worker wrote them.
    """
    return heapq.merge(*(_read_slice(s) for s in slices))
