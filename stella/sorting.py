"""External sort: sorted runs on storage, k-way merged into shards with bounded memory.

Every profile needs a global, runner-independent order (JSON shards sorted by record
key, Trivy buckets sorted for the bbolt bulk loader). Shuffling whole documents through
a Beam GroupByKey would hold the data set in memory on the in-process runner, so
instead each worker sorts what it has and writes it as a *run*; only small run
descriptors travel through the shuffle; one merge per shard streams the runs back in
key order. Memory is one batch plus one block per open slice, whatever the data size.

A run file holds, per (group, bucket), a *slice*: ``key``/``value`` pairs sorted by key
(per (group, bucket range) when the caller bounds the group's shard count, see
:func:`bucket_ranges`), in blocks of about 32 KiB (times the range's width), each an independent zstd frame of columnar data (lengths,
keys, values) behind a small header. Blocks make both ends cheap: writing joins lists
in C instead of packing every pair, and a merge decodes a block at a time with one
shared zstd context and merges whole blocks with ``list.sort`` (see ``_merge_blocks``)
instead of stepping a Python heap per pair. Buckets are a fixed hash partition of the key,
so which shard a record lands in depends on its key alone, never on the runner.
"""

from __future__ import annotations

import io
import struct
import uuid
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, partial
from hashlib import blake2b
from heapq import heappop, heappush, merge
from itertools import accumulate, chain, count, groupby, islice, repeat
from operator import add, itemgetter, lt, methodcaller, mod
from typing import IO

import zstandard

from stella import storage

__all__ = [
    "BATCH_BYTES",
    "BUCKETS",
    "DEFAULT_FAN_IN",
    "MERGE_BYTES",
    "RunSlice",
    "SortItem",
    "bucket_of",
    "bucket_ranges",
    "cogroup_sorted",
    "merge_slices",
    "sample_keys",
    "shard_count",
    "shard_of_bucket",
    "write_blocks",
    "write_run",
]

BUCKETS = 64
# Key and value bytes a step holds before its batch becomes a run (or a Beam element):
# the ledger reader's batches, the joins' output batches and the importer's rebuild all
# cut here as well as at their item counts, so a few large documents never make one
# batch of gigabytes.
BATCH_BYTES = 32 * 1024 * 1024
# At most this many run slices are open in a merge; more are first merged into
# intermediate runs. A slice open in a merge costs a file handle and one decoded block
# (``_BLOCK_BYTES``, at most twice), not a zstd decoder: blocks are independent frames
# decoded by one context per merge (a slice spanning a bucket range has blocks as many
# times larger as the shard has fewer slices, see _MAX_BLOCK_BYTES, so the product holds).
# 2048 x ~64 KiB bounds a merge near 130 MB and keeps
# the slice count of every shard from 1M to ~16M synthetic documents (about 1,300:
# runs grow with N while buckets per shard shrink) under it, so no record takes a
# second pass there (the old 512 made most of them take one or two).
DEFAULT_FAN_IN = 2048
# ... and at most this many bytes of blocks open in a merge (see ``_open_bytes``). A block
# holds at least one pair, so a slice of large records (SBOM lines of ~160 KB on average, up
# to MBs) costs its records, not ~64 KiB: 2048 such slices held ~650 MB, and a small group
# (one shard, all 64 buckets) of a large ledger has that many (runs x 64). With small
# records the fan-in binds first (2048 x 2 x ``_BLOCK_BYTES`` is exactly this), so only
# merges of large records take the extra pass.
MERGE_BYTES = 128 * 1024 * 1024
_BLOCK_HEAD = struct.Struct("<IIB")  # stored length, records, codec (_RAW or _ZSTD)
_RAW, _ZSTD = 0, 1
# Raw bytes per block: the unit of decompression and of merging. Small enough that
# DEFAULT_FAN_IN pending blocks stay within the bound above, large enough that the
# per-block costs (a read, a zstd call, a header) vanish next to the bytes.
_BLOCK_BYTES = 1 << 15
# Runs on object storage are compressed (zstd-1: bytes over the network cost more than
# CPU); runs on a local disk are not: compressing and decompressing them cost ~4 us per
# 2 KB record, a tenth of a json:raw export, to save temp disk nobody pays for.
_RUN_PARAMS = zstandard.ZstdCompressionParameters.from_level(1, window_log=15)
# Blocks of a slice that spans a bucket range grow with the range (see bucket_ranges), up
# to this: a shard then opens proportionally fewer slices, so the merge's bound above
# holds, and each block costs its per-block steps over proportionally more pairs.
_MAX_BLOCK_BYTES = 1 << 18
_MAX_BLOCK_RECORDS = 1 << 16

SortItem = tuple[str, bytes, bytes]
"""(group, key, value): group names an output (e.g. a record kind), key orders within it."""
Pair = tuple[bytes, bytes]


@dataclass(frozen=True, slots=True)
class RunSlice:
    """One (group, bucket) region of a run file: what the shuffle carries instead of data."""

    path: str
    group: str
    bucket: int
    offset: int
    length: int
    count: int
    width: int = 1  # buckets held: bucket .. bucket + width - 1 (see bucket_ranges)

    def __reduce__(self) -> tuple[type[RunSlice], tuple[str, str, int, int, int, int, int]]:
        # Pickled by the shuffle for every slice; a slots dataclass's default pickling calls
        # dataclasses.fields() per object, several times the cost of this tuple.
        return RunSlice, (
            self.path,
            self.group,
            self.bucket,
            self.offset,
            self.length,
            self.count,
            self.width,
        )


def bucket_of(key: bytes) -> int:
    """Stable across processes and machines (unlike ``hash()``, which is salted)."""
    return int.from_bytes(blake2b(key, digest_size=2).digest(), "big") % BUCKETS


def shard_count(records: int, *, records_per_shard: int) -> int:
    """How many shards a group gets: a pure function of its record count."""
    if records <= 0:
        return 1
    return max(1, min(BUCKETS, -(-records // records_per_shard)))


def shard_of_bucket(bucket: int, shards: int) -> int:
    """Contiguous bucket ranges per shard, so every bucket belongs to exactly one shard."""
    return bucket * shards // BUCKETS


@cache
def bucket_ranges(max_shards: int) -> tuple[int, ...]:
    """The first buckets of the widest bucket ranges that no layout of up to ``max_shards`` shards splits.

    A shard is a contiguous bucket range (:func:`shard_of_bucket`), so when a group can
    have at most ``max_shards`` shards, a run needs one slice per such range, not per
    bucket: every shard still takes whole slices, and a merge opens far fewer of them
    (at 1 shard one slice per run instead of 64; at up to 4, six). ``BUCKETS`` (or more)
    gives every bucket its own range.
    """
    layouts = range(2, min(max(max_shards, 1), BUCKETS) + 1)
    return (
        0,
        *(b for b in range(1, BUCKETS) if any(b * n // BUCKETS != (b - 1) * n // BUCKETS for n in layouts)),
    )


@cache
def _range_of_bucket(max_shards: int) -> tuple[int, ...]:
    """Bucket -> the first bucket of its range in :func:`bucket_ranges`."""
    starts = bucket_ranges(max_shards)
    return tuple(starts[bisect_right(starts, b) - 1] for b in range(BUCKETS))


def _encode_block(keys: Sequence[bytes], values: Sequence[bytes]) -> bytes:
    """Columnar: all lengths, then all keys, then all values, in one join (one copy, in C)."""
    lengths = struct.pack(f"<{2 * len(keys)}I", *map(len, keys), *map(len, values))
    return b"".join((lengths, *keys, *values))


def _decode_block(raw: bytes, count: int, where: str) -> list[Pair]:
    header = 8 * count
    if len(raw) < header:
        raise OSError(f"run file {where} is truncated")
    lengths = struct.unpack_from(f"<{2 * count}I", raw)
    offsets = list(accumulate(lengths, initial=header))
    if offsets[-1] != len(raw):
        raise OSError(f"run file {where} is truncated")
    keys = [raw[a:b] for a, b in zip(offsets[:count], offsets[1 : count + 1], strict=True)]
    values = [raw[a:b] for a, b in zip(offsets[count:-1], offsets[count + 1 :], strict=True)]
    return list(zip(keys, values, strict=True))


def _run_compressor(directory: str) -> zstandard.ZstdCompressor | None:
    return zstandard.ZstdCompressor(compression_params=_RUN_PARAMS) if storage.is_remote(directory) else None


def _block_ends(keys: Sequence[bytes], values: Sequence[bytes], block_bytes: int = _BLOCK_BYTES) -> list[int]:
    """Where each block of the pairs ends: at most ``block_bytes`` encoded, or one larger pair.

    Cut by the bytes actually there (cumulative encoded sizes in C, one bisection per
    block), so a slice whose first pairs are small and the rest large (a Trivy bucket of
    short names, then one of long advisories) still gets blocks within the bound, never
    several times it: a merge holds up to 1.5 decoded blocks of every open slice.
    """
    sizes = list(
        accumulate(map(add, map(add, map(len, keys), map(len, values)), repeat(8)))
    )  # 8: two lengths
    ends: list[int] = []
    start = 0
    while start < len(sizes):
        limit = (sizes[start - 1] if start else 0) + block_bytes
        end = bisect_right(sizes, limit, start, min(len(sizes), start + _MAX_BLOCK_RECORDS))
        ends.append(max(end, start + 1))  # a pair above the bound is a block of its own
        start = ends[-1]
    return ends


def _write_blocks(
    handle: IO[bytes],
    compressor: zstandard.ZstdCompressor | None,
    keys: Sequence[bytes],
    values: Sequence[bytes],
    block_bytes: int = _BLOCK_BYTES,
) -> int:
    """The pairs of two columns as blocks of at most ``block_bytes`` (compressed if ``compressor``).

    Returns the bytes written.
    """
    written = start = 0
    for end in _block_ends(keys, values, block_bytes):
        frame = _encode_block(keys[start:end], values[start:end])
        pairs = end - start
        start = end
        codec = _RAW
        if compressor is not None:
            frame, codec = compressor.compress(frame), _ZSTD
        handle.write(_BLOCK_HEAD.pack(len(frame), pairs, codec))
        handle.write(frame)
        written += _BLOCK_HEAD.size + len(frame)
    return written


def write_blocks(handle: IO[bytes], pairs: Iterable[Pair], chunk: int = 1 << 16) -> tuple[int, int]:
    """Pairs already in key order, written as the uncompressed blocks of one slice.

    For a local run a step writes from a stream (a range helper's output); ``chunk``
    pairs are held at a time. Returns (bytes written, pairs written).
    """
    length = count = 0
    source = iter(pairs)
    while batch := list(islice(source, chunk)):
        keys, values = zip(*batch, strict=True)
        length += _write_blocks(handle, None, keys, values)
        count += len(batch)
    return length, count


_BLAKE2B_16 = partial(blake2b, digest_size=2)
_DIGEST = methodcaller("digest")
_BIG_ENDIAN = partial(int.from_bytes, byteorder="big")


def _buckets(keys: Iterable[bytes]) -> list[int]:
    """:func:`bucket_of` of every key, through chained ``map`` calls: no Python frame per key."""
    digests = map(_DIGEST, map(_BLAKE2B_16, keys))
    return list(map(mod, map(_BIG_ENDIAN, digests), repeat(BUCKETS)))


def _slot_columns(
    keys: Sequence[bytes], values: Sequence[bytes], positions: Sequence[int]
) -> tuple[list[bytes], list[bytes]]:
    """The pairs at ``positions`` as (key, value) order columns.

    Positions come in arrival order, so a run cut from a sorted ledger segment is
    already in key order: a check in C (strictly increasing keys, which also settles
    the value order) replaces the sort; anything else is sorted by (key, value).
    """
    slot_keys = list(map(keys.__getitem__, positions))
    slot_values = list(map(values.__getitem__, positions))
    if all(map(lt, slot_keys, islice(slot_keys, 1, None))):
        return slot_keys, slot_values
    pairs = sorted(zip(slot_keys, slot_values, strict=True))
    return [key for key, _value in pairs], [value for _key, value in pairs]


def write_run(
    directory: str,
    items: Iterable[SortItem],
    *,
    bucketed: bool = True,
    max_shards: int | Mapping[str, int] = BUCKETS,
) -> list[RunSlice]:
    """Sort ``items`` and write them as one run file under ``directory``.

    Items are ordered by (group, bucket) with a stable sort of small ints, so each
    (group, bucket) keeps arrival order, and each is sorted on its own only if it is not
    already in key order: a batch of one ledger segment (which stores records sorted)
    costs a check, not a sort. Columns are transposed, hashed, checked and encoded by
    C calls chained with ``map``, not a Python step per item. ``bucketed=False`` puts a
    whole group in one slice (bucket 0), for outputs that merge every bucket anyway (a
    Trivy DB): fewer, longer slices to merge.

    ``max_shards``: no group gets more shards than this (or, a mapping, than its entry;
    groups not in it are unbounded), so a slice may hold a whole :func:`bucket_ranges`
    range (its ``width``) instead of one bucket, in blocks as many times larger: the
    merge then opens fewer, longer slices.

    The file name is random: a retried Beam bundle writes a new file, and only the
    slices of the attempt that committed are ever merged.
    """
    listed = list(items)
    if not listed:
        return []
    groups, keys, values = zip(*listed, strict=True)  # columns, transposed in C
    names = sorted(set(groups))
    limits = [_shard_limit(max_shards, name) if bucketed else 1 for name in names]
    # One int per item orders it by (group, bucket range): group index * BUCKETS + range start.
    base = {name: index * BUCKETS for index, name in enumerate(names)}
    if any(len(bucket_ranges(limit)) > 1 for limit in limits):
        # group index * BUCKETS + bucket -> group index * BUCKETS + its range's first bucket
        table = tuple(
            base[name] + start
            for name, limit in zip(names, limits, strict=True)
            for start in _range_of_bucket(limit)
        )
        spots = (
            _buckets(keys)
            if len(names) == 1
            else list(map(add, map(base.__getitem__, groups), _buckets(keys)))
        )
        slots = list(map(table.__getitem__, spots))
    else:
        slots = [0] * len(keys) if len(names) == 1 else list(map(base.__getitem__, groups))
    # A stable sort of positions by slot (C compares of ints): each slot's items stay in arrival order.
    order = sorted(range(len(slots)), key=slots.__getitem__)
    ordered = list(map(slots.__getitem__, order))
    path = storage.join(directory, f"run-{uuid.uuid4().hex}.bin")
    slices: list[RunSlice] = []
    compressor = _run_compressor(directory)
    offset = 0
    with storage.open_write(path) as handle:
        for slot in sorted(set(slots)):
            positions = order[bisect_left(ordered, slot) : bisect_right(ordered, slot)]
            slot_keys, slot_values = _slot_columns(keys, values, positions)
            group, bucket = names[slot // BUCKETS], slot % BUCKETS
            ranges = bucket_ranges(limits[slot // BUCKETS])
            width = next((start for start in ranges if start > bucket), BUCKETS) - bucket if bucketed else 1
            # blocks as many times larger as the slice spans buckets (what _open_cost expects)
            block_bytes = min(_MAX_BLOCK_BYTES, _BLOCK_BYTES * width)
            length = _write_blocks(handle, compressor, slot_keys, slot_values, block_bytes)
            slices.append(RunSlice(path, group, bucket, offset, length, len(positions), width))
            offset += length
    return slices


def _shard_limit(max_shards: int | Mapping[str, int], group: str) -> int:
    return max_shards if isinstance(max_shards, int) else max_shards.get(group, BUCKETS)


def _slice_blocks(
    piece: RunSlice,
    decompressor: zstandard.ZstdDecompressor,
    lo: bytes | None = None,
    hi: bytes | None = None,
) -> Iterator[list[Pair]]:
    """The blocks of one slice in order, one read and one decompression each.

    Local files are read a block at a time from an open handle; object storage in one
    ranged read (its readers buffer 16 MB each, too much per open slice). With ``lo``
    and ``hi`` only the pairs whose key lies in ``[lo, hi)`` come out: an uncompressed
    block wholly below ``lo`` is passed over after reading its last key (a seek, not a
    decode), and the read stops at the first key at or past ``hi``.
    """
    handle = storage.open_read(piece.path)
    try:
        handle.seek(piece.offset)
        source: IO[bytes] | io.BytesIO = handle
        if storage.is_remote(piece.path):
            source = io.BytesIO(handle.read(piece.length))
            handle.close()
        remaining, produced = piece.length, 0
        while remaining > 0:
            head = source.read(_BLOCK_HEAD.size)
            if len(head) < _BLOCK_HEAD.size:
                break
            length, count, codec = _BLOCK_HEAD.unpack(head)
            if lo is not None and codec == _RAW and _below(source, count, length, lo):
                source.seek(length, io.SEEK_CUR)
                remaining -= _BLOCK_HEAD.size + length
                produced += count
                continue
            raw = source.read(length)
            remaining -= _BLOCK_HEAD.size + length
            if len(raw) < length or remaining < 0 or produced + count > piece.count:
                break
            if codec not in (_RAW, _ZSTD):
                raise OSError(f"run file {piece.path} is corrupt: unknown block codec {codec}")
            if codec == _ZSTD:
                try:
                    raw = decompressor.decompress(raw)
                except zstandard.ZstdError as exc:
                    raise OSError(f"run file {piece.path} is corrupt: {exc}") from exc
            produced += count
            block = _decode_block(raw, count, piece.path)
            del raw  # not held across the yield: a suspended slice keeps its pairs, not their frame
            if lo is not None:
                if block[-1][0] < lo:
                    continue
                block, lo = block[bisect_left(block, (lo,)) :], None  # blocks are in key order: lo is passed
            if hi is not None and block and block[-1][0] >= hi:
                block = block[: bisect_left(block, (hi,))]
                if block:
                    yield block
                return  # the rest of the slice lies past the range: not read, so not checked
            if block:
                yield block
        if produced != piece.count or remaining != 0:
            raise OSError(f"run file {piece.path} is truncated")
    finally:
        handle.close()


def _raw_key(source: IO[bytes] | io.BytesIO, count: int, length: int, index: int) -> bytes | None:
    """Key ``index`` (0: first, -1: last) of the uncompressed block whose columns start at ``source``'s position.

    Reads the key lengths and that key only, then returns to the block's start. None
    for a block shorter than its lengths say (its reader reports it).
    """
    start = source.tell()
    try:
        lengths = source.read(4 * count)
        if count == 0 or len(lengths) < 4 * count:
            return None
        keys = struct.unpack(f"<{count}I", lengths)
        at = 8 * count + sum(keys[:index] if index >= 0 else keys[:-1])
        if at + keys[index] > length:
            return None
        source.seek(start + at)
        key = source.read(keys[index])
        return key if len(key) == keys[index] else None
    finally:
        source.seek(start)


def _below(source: IO[bytes] | io.BytesIO, count: int, length: int, lo: bytes) -> bool:
    """Whether every key of the uncompressed block at ``source`` is below ``lo`` (its last key is)."""
    last = _raw_key(source, count, length, -1)
    return last is not None and last < lo


def sample_keys(piece: RunSlice, every: int) -> list[bytes]:
    """The first key of every ``every``-th block of ``piece``: an even sample of its key space by bytes.

    What splits a group into key ranges of about equal work (blocks hold about the same
    bytes each). Uncompressed blocks cost two small reads each; compressed ones are
    decoded.

    Raises:
        OSError: the slice is truncated or corrupt where a sampled key should be.
    """
    keys: list[bytes] = []
    decompressor = zstandard.ZstdDecompressor()
    with storage.open_read(piece.path) as handle:
        handle.seek(piece.offset)
        remaining, index = piece.length, 0
        while remaining > 0:
            head = handle.read(_BLOCK_HEAD.size)
            if len(head) < _BLOCK_HEAD.size:
                raise OSError(f"run file {piece.path} is truncated")
            length, count, codec = _BLOCK_HEAD.unpack(head)
            remaining -= _BLOCK_HEAD.size + length
            start = handle.tell()
            if index % every == 0 and count:
                key: bytes | None = None
                if codec == _RAW:
                    key = _raw_key(handle, count, length, 0)
                elif codec == _ZSTD:
                    try:
                        key = _decode_block(decompressor.decompress(handle.read(length)), count, piece.path)[
                            0
                        ][0]
                    except zstandard.ZstdError as exc:
                        raise OSError(f"run file {piece.path} is corrupt: {exc}") from exc
                if key is None:
                    raise OSError(f"run file {piece.path} is truncated or corrupt")
                keys.append(key)
            handle.seek(start + length)
            index += 1
    return keys


class _Source:
    """One slice in a block merge: its pending pairs and where the unread part starts."""

    __slots__ = ("block", "blocks", "done", "pending", "position")

    def __init__(self, blocks: Iterator[list[Pair]]) -> None:
        self.blocks = blocks
        self.pending: list[Pair] = []
        self.position = 0
        self.block = 0
        self.done = False

    def refill(self) -> bool:
        """Keep more than half a block pending (so a round's bound is never just past the
        cursor); True if the last pending pair changed."""
        grown = False
        while not self.done and (len(self.pending) - self.position) * 2 <= self.block:
            block = next(self.blocks, None)
            if block is None:
                self.done = True
                break
            self.pending = self.pending[self.position :] + block
            self.position = 0
            self.block = len(block)
            grown = True
        return grown


def _merge_blocks(streams: Sequence[Iterator[list[Pair]]]) -> Iterator[list[Pair]]:
    """k sorted block streams -> sorted lists of pairs, merged a round at a time in C.

    Nothing still unread can precede the smallest *last pending* pair of any unfinished
    stream (the bound), so each round emits every pending pair up to it, sorted together:
    timsort merges the already-sorted pieces by galloping, in C. Per pair that is a few
    C comparisons instead of a Python generator step and a heap replacement. Two heaps
    (streams by first pending pair, unfinished streams by last pending pair) mean a
    round touches only the streams that have something to emit, so streams over
    disjoint key ranges (segments written at different times) cost no more than
    interleaved ones.
    """
    tick = count()
    firsts: list[tuple[Pair, int, _Source]] = []
    lasts: list[tuple[Pair, int, _Source]] = []
    for stream in streams:
        source = _Source(stream)
        source.refill()
        if source.position < len(source.pending):
            heappush(firsts, (source.pending[0], next(tick), source))
            if not source.done:
                heappush(lasts, (source.pending[-1], next(tick), source))
    while firsts:
        while lasts and (lasts[0][2].done or lasts[0][2].pending[-1] is not lasts[0][0]):
            heappop(lasts)  # stale: that stream was refilled (a newer entry exists) or finished
        bound = lasts[0][0] if lasts else None
        out: list[Pair] = []
        touched: list[_Source] = []
        while firsts and (bound is None or firsts[0][0] <= bound):
            source = heappop(firsts)[2]
            start = source.position
            cut = len(source.pending) if bound is None else bisect_right(source.pending, bound, start)
            out += source.pending[start:cut]
            source.position = cut
            touched.append(source)
        out.sort()
        yield out
        for source in touched:
            if source.refill() and not source.done:
                heappush(lasts, (source.pending[-1], next(tick), source))
            if source.position < len(source.pending):
                heappush(firsts, (source.pending[source.position], next(tick), source))


def _merged_blocks(
    slices: Sequence[RunSlice], lo: bytes | None = None, hi: bytes | None = None
) -> Iterator[list[Pair]]:
    decompressor = zstandard.ZstdDecompressor()
    return _merge_blocks([_slice_blocks(s, decompressor, lo, hi) for s in slices])


def _spill(slices: Sequence[RunSlice], temp_dir: str, lo: bytes | None, hi: bytes | None) -> RunSlice:
    """Merge ``slices`` into one new run; its slice (a merge-tree node)."""
    path = storage.join(temp_dir, f"merge-{uuid.uuid4().hex}.bin")
    count = length = 0
    compressor = _run_compressor(temp_dir)
    with storage.open_write(path) as handle:
        for block in _merged_blocks(slices, lo, hi):
            if not block:
                continue
            keys, values = zip(*block, strict=True)
            length += _write_blocks(handle, compressor, keys, values)
            count += len(block)
    return RunSlice(path, slices[0].group, 0, 0, length, count)


def merge_slices(
    slices: Sequence[RunSlice],
    *,
    temp_dir: str | None = None,
    fan_in: int = DEFAULT_FAN_IN,
    max_bytes: int = MERGE_BYTES,
    lo: bytes | None = None,
    hi: bytes | None = None,
) -> Iterator[Pair]:
    """All pairs of ``slices`` (whose key lies in ``[lo, hi)``, when given) in (key, value) order, never more than ``fan_in`` open at once
    nor more than about ``max_bytes`` of their blocks (estimated from each slice's
    descriptor: its block size, or its mean pair size if larger; at least two slices are
    always open, whatever their size).

    Ordering by value too makes equal keys come out the same way whatever the run files
    were called or which worker wrote them. With more slices than that, the smallest
    are first merged into intermediate runs under ``temp_dir``, just enough of them for the
    rest to fit (so only those records take one more sequential pass).

    Raises:
        ValueError: ``fan_in`` below 2, or more slices than the bounds and no ``temp_dir``.
    """
    if fan_in < 2:
        raise ValueError(f"fan_in must be at least 2, got {fan_in}")
    level = sorted(slices, key=lambda s: (s.count, s.path, s.offset))
    while len(level) > fan_in or (len(level) > 2 and sum(map(_open_bytes, level)) > max_bytes):
        if temp_dir is None:
            raise ValueError(
                f"merging {len(level)} slices with fan_in {fan_in} and {max_bytes} bytes needs a temp_dir"
            )
        take = _spill_take(level, fan_in, max_bytes, remote=storage.is_remote(temp_dir))
        level = sorted(
            [_spill(level[:take], temp_dir, lo, hi), *level[take:]], key=lambda s: (s.count, s.path, s.offset)
        )
    return chain.from_iterable(_merged_blocks(level, lo, hi))


def _open_cost(length: int, count: int, width: int, remote: bool) -> int:
    # Two blocks (the pending one, the next being decoded). A block is the slice's block size
    # (larger for a bucket range, see write_run) or one pair, whichever is larger, and never
    # more than the slice. A slice on object storage is read whole (see _slice_blocks).
    block = max(min(_MAX_BLOCK_BYTES, _BLOCK_BYTES * width), -(-length // max(count, 1)))
    return 2 * min(length, block) + (length if remote else 0)


def _open_bytes(piece: RunSlice) -> int:
    """About what ``piece`` holds while open in a merge, from its descriptor alone (mean pair size)."""
    return _open_cost(piece.length, piece.count, piece.width, storage.is_remote(piece.path))


def _spill_take(level: Sequence[RunSlice], fan_in: int, max_bytes: int, *, remote: bool) -> int:
    """How many of the first (smallest) slices of ``level`` to merge into one intermediate run.

    Just enough for the rest and the merged slice to fit (``fan_in`` slices,
    ``max_bytes``), so that past a bound only a few records take the extra pass; but no
    more than one merge may open itself (at least two).
    """
    costs = [_open_bytes(piece) for piece in level]
    total, taken, length, records = sum(costs), 0, 0, 0
    for take, piece in enumerate(level, 1):
        taken, length, records = taken + costs[take - 1], length + piece.length, records + piece.count
        if take < 2:
            continue
        merged = _open_cost(length, records, 1, remote)
        if len(level) - take + 1 <= fan_in and total - taken + merged <= max_bytes:
            return take
        if take == fan_in or take == len(level) or taken + costs[take] > max_bytes:
            return take
    return len(level)


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
    merged = merge(*(_tagged(name, sides[name]) for name in names))
    for key, run in groupby(merged, key=itemgetter(0)):
        groups: dict[str, list[bytes]] = {name: [] for name in names}
        for _key, side, value in run:
            groups[side].append(value)
        yield key, groups
