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
import itertools
import struct
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter

import zstandard

from stella import storage

__all__ = [
    "BUCKETS",
    "DEFAULT_FAN_IN",
    "RunSlice",
    "SortItem",
    "bucket_of",
    "cogroup_sorted",
    "merge_slices",
    "shard_count",
    "shard_of_bucket",
    "write_run",
]

BUCKETS = 64
# At most this many run slices are open (one file handle and one zstd decoder each) in a
# merge; more are first merged into intermediate runs. Bounds memory and open files
# whatever the data size (an unbounded fan-in once cost 1 GB at a million records).
DEFAULT_FAN_IN = 512
_LENGTHS = struct.Struct(">II")
# Runs are temporary: favour speed over size, and a small window, because a merge holds
# one decoder (window + chunk) per open slice: 32 KiB windows keep DEFAULT_FAN_IN
# slices within a few tens of MB.
_RUN_PARAMS = zstandard.ZstdCompressionParameters.from_level(1, window_log=15)
_READ_CHUNK = 1 << 13
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

    def __reduce__(self) -> tuple[type[RunSlice], tuple[str, str, int, int, int, int]]:
        # Pickled by the shuffle for every slice; a slots dataclass's default pickling calls
        # dataclasses.fields() per object, several times the cost of this tuple.
        return RunSlice, (self.path, self.group, self.bucket, self.offset, self.length, self.count)


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


def write_run(directory: str, items: Iterable[SortItem], *, bucketed: bool = True) -> list[RunSlice]:
    """Sort ``items`` and write them as one run file under ``directory``.

    Items are spread over their (group, bucket) lists in arrival order and each list is
    sorted on its own: input that is already in key order (a batch of one ledger
    segment, which stores records sorted) costs one linear pass instead of a full
    sort. ``bucketed=False`` puts a whole group in one slice (bucket 0), for outputs
    that merge every bucket anyway (a Trivy DB): fewer, longer slices to merge.

    The file name is random: a retried Beam bundle writes a new file, and only the
    slices of the attempt that committed are ever merged.
    """
    lists: dict[tuple[str, int], list[tuple[bytes, bytes]]] = defaultdict(list)
    for group, key, value in items:
        lists[group, bucket_of(key) if bucketed else 0].append((key, value))
    if not lists:
        return []
    path = storage.join(directory, f"run-{uuid.uuid4().hex}.bin")
    slices: list[RunSlice] = []
    compressor = zstandard.ZstdCompressor(compression_params=_RUN_PARAMS)
    offset = 0
    pack = _LENGTHS.pack
    with storage.open_write(path) as handle:
        for (group, bucket), pairs in sorted(lists.items()):
            pairs.sort()
            parts: list[bytes] = []
            for key, value in pairs:
                parts += (pack(len(key), len(value)), key, value)
            frame = compressor.compress(b"".join(parts))
            handle.write(frame)
            slices.append(RunSlice(path, group, bucket, offset, len(frame), len(pairs)))
            offset += len(frame)
    return slices


def _compressed_chunks(piece: RunSlice) -> Iterator[bytes]:
    """The slice's compressed bytes in chunks: streamed from a local file; fetched in one
    ranged read from object storage (whose readers buffer 16 MB each, too much per open slice)."""
    with storage.open_read(piece.path) as handle:
        handle.seek(piece.offset)
        if storage.is_remote(piece.path):
            data = handle.read(piece.length)
            handle.close()
            for start in range(0, len(data), _READ_CHUNK):
                yield data[start : start + _READ_CHUNK]
            return
        remaining = piece.length
        while remaining > 0:
            chunk = handle.read(min(_READ_CHUNK, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk


def _read_slice(piece: RunSlice) -> Iterator[tuple[bytes, bytes]]:
    """The pairs of one slice, decompressed a chunk at a time (memory: a chunk, not the slice)."""
    unpack = _LENGTHS.unpack_from
    header = _LENGTHS.size
    decompressor = zstandard.ZstdDecompressor().decompressobj()
    produced = 0
    buffer = b""
    for chunk in _compressed_chunks(piece):
        data = decompressor.decompress(chunk)
        buffer = buffer + data if buffer else data
        position, end = 0, len(buffer)
        while end - position >= header:
            key_len, value_len = unpack(buffer, position)
            stop = position + header + key_len + value_len
            if stop > end:
                break
            start = position + header
            yield buffer[start : start + key_len], buffer[start + key_len : stop]
            produced += 1
            position = stop
        buffer = buffer[position:]
    if produced != piece.count or buffer:
        raise OSError(f"run file {piece.path} is truncated")


def _spill(slices: Sequence[RunSlice], temp_dir: str) -> RunSlice:
    """Merge ``slices`` into one new single-frame run; its slice (a merge-tree node)."""
    path = storage.join(temp_dir, f"merge-{uuid.uuid4().hex}.bin")
    count = 0
    with storage.open_write(path) as handle:
        sink = storage.HashingWriter(handle, hashing=False)
        compressor = zstandard.ZstdCompressor(compression_params=_RUN_PARAMS)
        with compressor.stream_writer(sink, closefd=False) as writer:  # type: ignore[arg-type]
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
    were called or which worker wrote them. With more than ``fan_in`` slices, the smallest
    are first merged into intermediate runs under ``temp_dir``, just enough of them for the
    rest to fit (so only those records take one more sequential pass).

    Raises:
        ValueError: ``fan_in`` below 2, or more than ``fan_in`` slices and no ``temp_dir``.
    """
    if fan_in < 2:
        raise ValueError(f"fan_in must be at least 2, got {fan_in}")
    level = sorted(slices, key=lambda s: (s.count, s.path, s.offset))
    while len(level) > fan_in:
        if temp_dir is None:
            raise ValueError(f"merging {len(level)} slices with fan_in {fan_in} needs a temp_dir")
        # Merge only as many of the smallest slices as it takes for the rest to fit: just
        # past the fan-in, a few records take the extra pass instead of all of them.
        take = min(fan_in, len(level) - fan_in + 1)
        level = sorted(
            [_spill(level[:take], temp_dir), *level[take:]], key=lambda s: (s.count, s.path, s.offset)
        )
    return heapq.merge(*(_read_slice(s) for s in level))


def _tagged(side: str, pairs: Iterable[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, str, bytes]]:
    for key, value in pairs:
        yield key, side, value


def cogroup_sorted(
    sides: Mapping[str, Iterable[tuple[bytes, bytes]]],
) -> Iterator[tuple[bytes, dict[str, list[bytes]]]]:
    """A sort-merge co-group of key-sorted streams: each key once, with every side's values.

    The streams are what :func:`merge_slices` yields, so a join holds one key's values at
    a time, never a side: memory is bounded by the largest key group, not by the input.
    Keys come out in order; each side's values in (key, value) order.
    """
    names = sorted(sides)
    merged = heapq.merge(*(_tagged(name, sides[name]) for name in names))
    for key, run in itertools.groupby(merged, key=itemgetter(0)):
        groups: dict[str, list[bytes]] = {name: [] for name in names}
        for _key, side, value in run:
            groups[side].append(value)
        yield key, groups
