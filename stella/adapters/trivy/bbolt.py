"""A streaming writer of bbolt (BoltDB) files, the container format of ``trivy.db``.

Trivy reads its vulnerability DB with the Go bbolt library, and no Python writer of
that format is both correct and able to stream. A Trivy DB holds millions of
entries, so this writer never holds the database: it takes entries already sorted
in bbolt's depth-first order and writes each B+tree page as soon as it fills. Memory
stays bounded by the tree height: one leaf and one branch node per tree level for
each bucket that is open at that moment (a bucket path is open while its entries
stream past).

The layout follows what bbolt's own ``init`` plus a single bulk transaction produce:
two meta pages (txid 0 and 1), an empty freelist page at id 2, then the bucket trees,
every page id used exactly once, so bbolt's ``Tx.Check`` finds nothing unreachable.
Buckets without sub-buckets whose single leaf fits in a quarter page are stored
inline in their parent, exactly as bbolt decides on commit. Nothing in the output
depends on time, randomness or the host: identical entries give identical bytes.

Page format and limits: ``shared/research/trivy-formats.md`` §A.
"""

from __future__ import annotations

import logging
import operator
import os
import struct
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

from stella.errors import UsageError
from stella.storage import atomic_local

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_KEY_SIZE",
    "MAX_VALUE_SIZE",
    "BoltStats",
    "BoltWriter",
    "Entry",
    "describe_key",
    "fnv1a64",
    "meta_page",
    "write_bolt",
]

log = logging.getLogger(__name__)

Entry = tuple[tuple[bytes, ...], bytes, bytes]
"""(bucket_path, key, value): bucket_path is non-empty, top-level bucket first."""

DEFAULT_PAGE_SIZE = 4096
MAX_KEY_SIZE = 32768  # bbolt's MaxKeySize; bucket names are keys too
MAX_VALUE_SIZE = (1 << 31) - 2  # bbolt's MaxValueSize

# Page header flags (one per page) and the leaf element flag marking a sub-bucket.
BRANCH_PAGE = 0x01
LEAF_PAGE = 0x02
META_PAGE = 0x04
FREELIST_PAGE = 0x10
BUCKET_LEAF_FLAG = 0x01

MAGIC = 0xED0CDAED
VERSION = 2
PAGE_HEADER_SIZE = 16
ELEMENT_SIZE = 16  # leaf and branch elements alike
BUCKET_HEADER_SIZE = 16
FREELIST_PGID = 2
FIRST_TREE_PGID = 3
# The u16 element count never overflows: every element takes at least 17 bytes
# (16-byte element plus a non-empty key) and a node is flushed once it passes one
# page, so a node of at most 64 KiB holds fewer than 3 900 elements.

# A branch node takes at least two children even when they overflow a page, so
# every branch level is at most half as wide as the one below and building
# terminates however long the keys are. Leaves may hold a single element, which
# lets a large value sit alone in an overflowing leaf as bbolt does.
_MIN_BRANCH_ELEMENTS = 2

_PAGE_HEADER = struct.Struct("<QHHI")
_LEAF_ELEMENT = struct.Struct("<IIII")
_BRANCH_ELEMENT = struct.Struct("<IIQ")
_SMALL_NODE = 24  # below this many elements, per-element packing beats the vectorised path
_BUCKET_HEADER = struct.Struct("<QQ")
_META_BODY = struct.Struct("<IIIIQQQQQ")  # magic … txid; the checksum follows

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_U64 = (1 << 64) - 1


def fnv1a64(data: bytes) -> int:
    """FNV-1a 64, the checksum bbolt stores at the end of each meta page."""
    h = _FNV_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV_PRIME) & _U64
    return h


def describe_key(path: tuple[bytes, ...]) -> str:
    """A readable, bounded rendering of a bucket path plus key, for error messages."""
    parts = []
    for name in path:
        text = name[:60].decode("utf-8", "backslashreplace")
        parts.append(text + ("…" if len(name) > 60 else ""))
    return " / ".join(repr(p) for p in parts)


@dataclass(frozen=True)
class BoltStats:
    """What a finished file holds; ``buckets`` counts every bucket except the root."""

    entries: int
    buckets: int
    pages: int
    file_bytes: int


def meta_page(*, page_size: int, pgid: int, root: int, freelist: int, txid: int) -> bytes:
    """One meta page, checksummed; page ``txid % 2`` is where bbolt expects it."""
    body = _META_BODY.pack(MAGIC, VERSION, page_size, 0, root, 0, freelist, pgid, txid)
    header = _PAGE_HEADER.pack(txid % 2, META_PAGE, 0, 0)
    page = header + body + struct.pack("<Q", fnv1a64(body))
    return page + bytes(page_size - len(page))


class _Bucket:
    """The in-progress tail of one bucket's B+tree: its open leaf and one node per branch level."""

    __slots__ = (
        "branch_ids",
        "branch_keys",
        "branch_sizes",
        "flags",
        "inline",
        "keys",
        "name",
        "size",
        "values",
    )

    def __init__(self, name: bytes, *, inline: bool) -> None:
        self.name = name
        self.inline = inline  # still a candidate for inline storage in its parent
        self.keys: list[bytes] = []
        self.values: list[bytes] = []
        self.flags: list[int] = []
        self.size = PAGE_HEADER_SIZE
        self.branch_keys: list[list[bytes]] = []
        self.branch_ids: list[list[int]] = []
        self.branch_sizes: list[int] = []


class BoltWriter:
    """Writes a bbolt file from entries sorted by ``bucket_path + (key,)``.

    ``add`` rejects a bad entry before changing any state, so a caller that catches
    the :class:`UsageError` may go on with the next entry. ``close`` finishes every
    open bucket and writes the freelist and both meta pages over the placeholders
    reserved at the start; the file object is left open and positioned at its end.
    """

    def __init__(self, fileobj: typing.BinaryIO, *, page_size: int = DEFAULT_PAGE_SIZE) -> None:
        if page_size < 1024 or page_size > 65536 or page_size & (page_size - 1):
            raise UsageError(
                f"bbolt page size must be a power of two between 1024 and 65536, not {page_size}",
                details={"page_size": page_size},
            )
        self._file = fileobj
        self._page_size = page_size
        self._inline_max = page_size // 4
        self._base = fileobj.tell()
        self._next_pgid = FIRST_TREE_PGID
        self._stack: list[_Bucket] = [_Bucket(b"", inline=False)]
        self._top = self._stack[0]
        self._prev_path: tuple[bytes, ...] | None = None  # None: nothing added yet
        self._prev_key = b""
        self._entries = 0
        self._buckets = 0
        self._stats: BoltStats | None = None
        fileobj.write(bytes(FIRST_TREE_PGID * page_size))  # meta 0, meta 1, freelist: written by close()

    # -- input -------------------------------------------------------------------------

    def add(self, bucket_path: tuple[bytes, ...], key: bytes, value: bytes) -> None:
        """Append one key/value to the bucket at ``bucket_path`` (opened on first use)."""
        if self._stats is not None:
            raise UsageError("bbolt writer is closed; no entries can be added")
        if bucket_path == self._prev_path:
            # The hot path: another key in the same bucket as the previous entry.
            if key.__class__ is not bytes or value.__class__ is not bytes:
                self._check_types(bucket_path, key, value)
            if not key or len(key) > MAX_KEY_SIZE or len(value) > MAX_VALUE_SIZE:
                self._check_sizes(bucket_path, key, value)
            if key <= self._prev_key:
                self._order_error(bucket_path, key)
        else:
            self._check_types(bucket_path, key, value)
            self._check_sizes(bucket_path, key, value)
            self._check_transition(bucket_path, key)
            self._move_to(bucket_path)
            self._prev_path = bucket_path
        self._prev_key = key
        self._entries += 1
        # _append, inlined: this block runs once per entry.
        bucket = self._top
        grown = len(key) + len(value) + ELEMENT_SIZE
        if bucket.size + grown > self._page_size and bucket.keys:
            self._flush_leaf(bucket)
        bucket.keys.append(key)
        bucket.values.append(value)
        bucket.flags.append(0)
        bucket.size += grown
        if bucket.size > self._inline_max:
            bucket.inline = False

    def close(self) -> BoltStats:
        """Finish the trees, then write the freelist and both meta pages; idempotent."""
        if self._stats is not None:
            return self._stats
        while len(self._stack) > 1:
            self._close_top()
        root = self._finish_tree(self._stack[0])
        pgid = self._next_pgid
        page_size = self._page_size
        head = b"".join(
            [
                meta_page(page_size=page_size, pgid=pgid, root=root, freelist=FREELIST_PGID, txid=0),
                meta_page(page_size=page_size, pgid=pgid, root=root, freelist=FREELIST_PGID, txid=1),
                _PAGE_HEADER.pack(FREELIST_PGID, FREELIST_PAGE, 0, 0) + bytes(page_size - PAGE_HEADER_SIZE),
            ]
        )
        end = self._file.tell()
        self._file.seek(self._base)
        self._file.write(head)
        self._file.seek(end)
        self._stats = BoltStats(self._entries, self._buckets, pgid, pgid * page_size)
        log.debug("bbolt file finished: %s", self._stats)
        return self._stats

    # -- validation ----------------------------------------------------------------------

    @staticmethod
    def _check_types(bucket_path: tuple[bytes, ...], key: bytes, value: bytes) -> None:
        if not isinstance(bucket_path, tuple) or not bucket_path:
            raise UsageError(
                f"bbolt entry for key {key!r} needs a non-empty tuple bucket path, got {bucket_path!r}"
            )
        for part in (*bucket_path, key, value):
            if not isinstance(part, bytes):
                raise UsageError(
                    f"bbolt bucket names, keys and values must be bytes; got {type(part).__name__} "
                    f"in entry {bucket_path!r} / {key!r}"
                )

    @staticmethod
    def _check_sizes(bucket_path: tuple[bytes, ...], key: bytes, value: bytes) -> None:
        for name in (*bucket_path, key):
            if not name or len(name) > MAX_KEY_SIZE:
                what = "an empty" if not name else f"a {len(name)}-byte"
                raise UsageError(
                    f"bbolt keys and bucket names must be 1..{MAX_KEY_SIZE} bytes; "
                    f"{what} name in {describe_key((*bucket_path, key))}",
                    details={"key": describe_key((*bucket_path, key)), "size": len(name)},
                )
        if len(value) > MAX_VALUE_SIZE:
            raise UsageError(
                f"bbolt values must be at most {MAX_VALUE_SIZE} bytes; "
                f"{describe_key((*bucket_path, key))} has {len(value)}",
                details={"key": describe_key((*bucket_path, key)), "size": len(value)},
            )

    def _order_error(self, bucket_path: tuple[bytes, ...], key: bytes) -> typing.NoReturn:
        assert self._prev_path is not None
        full = (*bucket_path, key)
        prev = (*self._prev_path, self._prev_key)
        details = {"key": describe_key(full), "previous": describe_key(prev)}
        if full == prev:
            raise UsageError(f"duplicate bbolt key {describe_key(full)}", details=details)
        raise UsageError(
            f"bbolt entries out of order: {describe_key(full)} after {describe_key(prev)}; "
            "entries must be sorted by bucket path then key, byte-wise",
            details=details,
        )

    def _check_transition(self, bucket_path: tuple[bytes, ...], key: bytes) -> None:
        """Moving to another bucket: still ascending, and no name both a bucket and a key."""
        if self._prev_path is None:
            return
        full = (*bucket_path, key)
        prev = (*self._prev_path, self._prev_key)
        if full[: len(prev)] == prev or prev[: len(full)] == full:
            shorter = full if len(full) < len(prev) else prev
            raise UsageError(
                f"bbolt name {describe_key(shorter)} is used both as a bucket and as a plain key",
                details={"key": describe_key(shorter)},
            )
        if full < prev:
            self._order_error(bucket_path, key)

    # -- bucket stack --------------------------------------------------------------------

    def _move_to(self, bucket_path: tuple[bytes, ...]) -> None:
        """Close the open buckets that ``bucket_path`` leaves and open the ones it enters."""
        stack = self._stack
        common = 0
        limit = min(len(stack) - 1, len(bucket_path))
        while common < limit and stack[common + 1].name == bucket_path[common]:
            common += 1
        while len(stack) > common + 1:
            self._close_top()
        for name in bucket_path[common:]:
            stack[-1].inline = False  # bbolt never inlines a bucket holding a sub-bucket
            stack.append(_Bucket(name, inline=True))
            self._buckets += 1
        self._top = stack[-1]

    def _close_top(self) -> None:
        bucket = self._stack.pop()
        parent = self._top = self._stack[-1]
        if bucket.inline:
            value = self._inline_value(bucket)
        else:
            value = _BUCKET_HEADER.pack(self._finish_tree(bucket), 0)
        self._append(parent, bucket.name, value, BUCKET_LEAF_FLAG)

    # -- pages ---------------------------------------------------------------------------

    def _append(self, bucket: _Bucket, key: bytes, value: bytes, flags: int) -> None:
        grown = len(key) + len(value) + ELEMENT_SIZE
        if bucket.size + grown > self._page_size and bucket.keys:
            self._flush_leaf(bucket)
        bucket.keys.append(key)
        bucket.values.append(value)
        bucket.flags.append(flags)
        bucket.size += grown
        if bucket.size > self._inline_max:
            bucket.inline = False

    def _allocate(self, size: int) -> tuple[int, int]:
        pages = -(-size // self._page_size)
        pgid = self._next_pgid
        self._next_pgid += pages
        return pgid, pages

    def _flush_leaf(self, bucket: _Bucket) -> None:
        keys, values, flags = bucket.keys, bucket.values, bucket.flags
        pgid, pages = self._allocate(bucket.size)
        header = _PAGE_HEADER.pack(pgid, LEAF_PAGE, len(keys), pages - 1)
        self._file.write(
            b"".join([header, *_leaf_body(keys, values, flags), bytes(pages * self._page_size - bucket.size)])
        )
        bucket.keys, bucket.values, bucket.flags = [], [], []
        bucket.size = PAGE_HEADER_SIZE
        self._push_branch(bucket, 0, keys[0] if keys else b"", pgid)

    def _push_branch(self, bucket: _Bucket, level: int, key: bytes, pgid: int) -> None:
        """Record a finished child page in the branch node one level above it."""
        if level == len(bucket.branch_keys):
            bucket.branch_keys.append([])
            bucket.branch_ids.append([])
            bucket.branch_sizes.append(PAGE_HEADER_SIZE)
        keys = bucket.branch_keys[level]
        grown = ELEMENT_SIZE + len(key)
        if bucket.branch_sizes[level] + grown > self._page_size and len(keys) >= _MIN_BRANCH_ELEMENTS:
            self._flush_branch(bucket, level)
            keys = bucket.branch_keys[level]
        keys.append(key)
        bucket.branch_ids[level].append(pgid)
        bucket.branch_sizes[level] += grown

    def _flush_branch(self, bucket: _Bucket, level: int) -> None:
        keys, ids, size = bucket.branch_keys[level], bucket.branch_ids[level], bucket.branch_sizes[level]
        pgid, pages = self._allocate(size)
        count = len(keys)
        elements = bytearray(ELEMENT_SIZE * count)
        pack = _BRANCH_ELEMENT.pack_into
        at = ELEMENT_SIZE * count
        for i in range(count):
            offset = ELEMENT_SIZE * i
            pack(elements, offset, at - offset, len(keys[i]), ids[i])
            at += len(keys[i])
        header = _PAGE_HEADER.pack(pgid, BRANCH_PAGE, count, pages - 1)
        self._file.write(b"".join([header, elements, *keys, bytes(pages * self._page_size - size)]))
        bucket.branch_keys[level], bucket.branch_ids[level] = [], []
        bucket.branch_sizes[level] = PAGE_HEADER_SIZE
        self._push_branch(bucket, level + 1, keys[0], pgid)

    def _finish_tree(self, bucket: _Bucket) -> int:
        """Write the bucket's remaining nodes bottom-up and return its root page id."""
        self._flush_leaf(bucket)  # also writes the empty root leaf of an empty database
        level = 0
        while level + 1 < len(bucket.branch_keys) or len(bucket.branch_keys[level]) > 1:
            self._flush_branch(bucket, level)
            level += 1
        return bucket.branch_ids[level][0]

    @staticmethod
    def _inline_value(bucket: _Bucket) -> bytes:
        """Bucket header (root 0) followed by the bucket's only leaf, unpadded, page id 0."""
        header = _BUCKET_HEADER.pack(0, 0) + _PAGE_HEADER.pack(0, LEAF_PAGE, len(bucket.keys), 0)
        return b"".join([header, *_leaf_body(bucket.keys, bucket.values, bucket.flags)])


def _leaf_body(keys: list[bytes], values: list[bytes], flags: list[int]) -> list[bytes]:
    """Leaf elements then key/value data, packed in element order as bbolt lays them out.

    Each element's ``pos`` is the distance from that element to its key. Small nodes
    (inline buckets, leaves of ~300-byte values) are cheapest with one ``pack`` per
    element; large ones with list slicing and a single ``pack``, keeping the work in C.
    """
    count = len(keys)
    if count <= _SMALL_NODE:
        pack = _LEAF_ELEMENT.pack
        elements: list[bytes] = []
        data: list[bytes] = []
        at = ELEMENT_SIZE * count
        for i in range(count):
            key = keys[i]
            value = values[i]
            elements.append(pack(flags[i], at - ELEMENT_SIZE * i, len(key), len(value)))
            data.append(key)
            data.append(value)
            at += len(key) + len(value)
        return elements + data
    key_sizes = list(map(len, keys))
    value_sizes = list(map(len, values))
    starts = accumulate(map(operator.add, key_sizes, value_sizes), initial=ELEMENT_SIZE * count)
    fields: list[int] = [0] * (4 * count)
    fields[0::4] = flags
    fields[1::4] = map(operator.sub, starts, range(0, ELEMENT_SIZE * count, ELEMENT_SIZE))
    fields[2::4] = key_sizes
    fields[3::4] = value_sizes
    data = [b""] * (2 * count)
    data[0::2] = keys
    data[1::2] = values
    return [struct.pack(f"<{4 * count}I", *fields), *data]


def write_bolt(
    path: str | os.PathLike[str], entries: Iterable[Entry], *, page_size: int = DEFAULT_PAGE_SIZE
) -> BoltStats:
    """Write ``entries`` (sorted, see :class:`BoltWriter`) to ``path``, published by one rename.

    The file is built under a temporary name in the destination folder, so a reader
    never sees a half-written database and a failure leaves nothing behind.
    """
    target = Path(path)
    with atomic_local(target) as handle:
        writer = BoltWriter(handle, page_size=page_size)
        add = writer.add
        for bucket_path, key, value in entries:
            add(bucket_path, key, value)
        stats = writer.close()
    target.chmod(0o644)  # published like the bundle's other files (the temp file was private)
    return stats
