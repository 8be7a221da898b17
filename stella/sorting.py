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
    "DEFAULT_FAN_IN",
    "RunSlice",
    "SortItem",
    "bucket_of",
    "merge_slices",
    "shard_count",
    "shard_of_bucket",
    "write_run",
]

BUCKETS = 64
# At most this many run slices are open (one file handle and one zstd decoder each) in a
# merge; more are first merged into intermediate runs. Bounds memory and open files
# whatever the data size (an unbounded fan-in once cost 1 GB at a million records).
DEFAULT_FAN_IN = 64
_LENGTHS = struct.Struct(">II")
_RUN_LEVEL = 1  # runs are temporary: favour speed over size
_READ_CHUNK = 1 << 16
_WRITE_CHUNK = 1 << 20

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


def _spill(slices: Sequence[RunSlice], temp_dir: str) -> RunSlice:
    """Merge ``slices`` into one new single-frame run; its slice (a merge-tree node)."""
    path = storage.join(temp_dir, f"merge-{uuid.uuid4().hex}.bin")
    count = 0
    with storage.open_write(path) as handle:
        sink = storage.HashingWriter(handle, hashing=False)
        with zstandard.ZstdCompressor(level=_RUN_LEVEL).stream_writer(sink, closefd=False) as writer:  # type: ignore[arg-type]
            buffer: list[bytes] = []
            size = 0
            for key, value in heapq.merge(*(_read_slice(s) for s in slices)):
                buffer += (_LENGTHS.pack(len(key), len(value)), key, value)
                size += len(key) + len(value) + _LENGTHS.size
                count += 1
                if size >= _WRITE_CHUNK:
                    writer.write(b"".join(buffer))
                    buffer, size = [], 0
            writer.write(b"".join(buffer))
    return RunSlice(path, slices[0].group, 0, 0, sink.size, count)


def merge_slices(
    slices: Sequence[RunSlice], *, temp_dir: str | None = None, fan_in: int = DEFAULT_FAN_IN
) -> Iterator[tuple[bytes, bytes]]:
    """All pairs of ``slices`` in (key, value) order, never more than ``fan_in`` open at once.

    Ordering by value too makes equal keys come out the same way whatever the run files
    were called or which worker wrote them. With more than ``fan_in`` slices, groups of
    ``fan_in`` are first merged into intermediate runs under ``temp_dir`` (a merge tree:
    one more sequential pass per level).

    Raises:
        ValueError: ``fan_in`` below 2, or more than ``fan_in`` slices and no ``temp_dir``.
    """
    if fan_in < 2:
        raise ValueError(f"fan_in must be at least 2, got {fan_in}")
    level = sorted(slices, key=lambda s: (s.path, s.offset))
    while len(level) > fan_in:
        if temp_dir is None:
            raise ValueError(f"merging {len(level)} slices with fan_in {fan_in} needs a temp_dir")
        level = [_spill(level[start : start + fan_in], temp_dir) for start in range(0, len(level), fan_in)]
    return heapq.merge(*(_read_slice(s) for s in level))
