"""An independent, defensive reader and checker of bbolt files, for tests and benchmarks.

The writer is checked against the real bbolt in tests, but a check that needs a Go
toolchain cannot run everywhere the tests and benchmarks do. This module reads a bbolt file
from the format description alone (it shares no code with the writer, so a
misreading of the format would have to be made twice to go unnoticed) and
re-implements the structural rules of bbolt's ``Tx.Check``: every page reachable
exactly once or free, valid page types, keys strictly ascending, branch key ranges
respected. The file is treated as untrusted: every offset is bounds-checked and
malformed input raises :class:`BoltFormatError`, never an ``IndexError`` or an
endless loop.

Format: ``shared/research/trivy-formats.md`` §A.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from stella.errors import BundleIntegrityError

__all__ = [
    "BoltCheckReport",
    "BoltFormatError",
    "BoltMeta",
    "BoltReader",
    "read_entries",
]

log = logging.getLogger(__name__)

_BRANCH: Final = 0x01
_LEAF: Final = 0x02
_META: Final = 0x04
_FREELIST: Final = 0x10
_BUCKET_FLAG: Final = 0x01
_MAGIC: Final = 0xED0CDAED
_NO_FREELIST: Final = 0xFFFFFFFFFFFFFFFF

# Bounds that only a hostile or corrupt file reaches; they keep recursion and work finite.
_MAX_BUCKET_DEPTH: Final = 512
_MAX_TREE_DEPTH: Final = 64

_HEADER = struct.Struct("<QHHI")
_LEAF_ELEM = struct.Struct("<IIII")
_BRANCH_ELEM = struct.Struct("<IIQ")
_BUCKET = struct.Struct("<QQ")
_META_BODY = struct.Struct("<IIIIQQQQQQ")


class BoltFormatError(BundleIntegrityError):
    """The bytes are not a well-formed bbolt database."""


@dataclass(frozen=True)
class BoltMeta:
    """The meta page a bbolt reader would use (the valid one with the higher txid)."""

    page_size: int
    root: int
    freelist: int
    pgid: int
    txid: int


@dataclass
class BoltCheckReport:
    """Problems found by :meth:`BoltReader.check` plus the tree shapes seen on the way."""

    problems: list[str] = field(default_factory=list)
    leaf_pages: int = 0
    branch_pages: int = 0
    overflow_pages: int = 0
    inline_buckets: int = 0
    buckets: int = 0
    max_tree_depth: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def _fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def _parse_meta(data: bytes, index: int) -> BoltMeta | str:
    """Meta page ``index``, or why it is unusable. Page size is not known yet for page 1."""
    body = data[16:80]
    if len(body) < 64:
        return f"meta page {index}: truncated"
    magic, version, page_size, _flags, root, _seq, freelist, pgid, txid, checksum = _META_BODY.unpack(body)
    if magic != _MAGIC:
        return f"meta page {index}: bad magic {magic:#x}"
    if version != 2:
        return f"meta page {index}: unsupported version {version}"
    if checksum != _fnv1a64(body[:56]):
        return f"meta page {index}: checksum mismatch"
    return BoltMeta(page_size=page_size, root=root, freelist=freelist, pgid=pgid, txid=txid)


class BoltReader:
    """Reads buckets and keys of a bbolt file held in memory or memory-mapped.

    Sub-buckets appear as their own path in :meth:`entries`; values of sub-bucket
    elements are never yielded as plain values, exactly as bbolt's cursor hides them.
    """

    def __init__(self, data: bytes | mmap.mmap) -> None:
        self._data = data
        self.meta = self._choose_meta()
        self._page_size = self.meta.page_size

    @classmethod
    @contextlib.contextmanager
    def open(cls, path: str | os.PathLike[str]) -> Iterator[BoltReader]:
        """Memory-map ``path`` read-only for the duration of the ``with`` block."""
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size == 0:
                raise BoltFormatError(f"{os.fspath(path)}: empty file is not a bbolt database")
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            yield cls(mapped)
        finally:
            mapped.close()

    # -- meta and pages --------------------------------------------------------------------

    def _choose_meta(self) -> BoltMeta:
        first = _parse_meta(self._data[:80], 0)
        metas: list[BoltMeta] = []
        reasons: list[str] = []
        if isinstance(first, BoltMeta):
            metas.append(first)
            page_size = first.page_size
        else:
            reasons.append(first)
            page_size = 4096  # bbolt's fallback when meta 0 is unreadable
        if page_size < 512 or page_size > 1 << 20 or page_size & (page_size - 1):
            raise BoltFormatError(f"bbolt meta page 0: implausible page size {page_size}")
        second = _parse_meta(self._data[page_size : page_size + 80], 1)
        if isinstance(second, BoltMeta):
            if second.page_size != page_size:
                reasons.append("meta page 1: page size differs from meta page 0")
            else:
                metas.append(second)
        else:
            reasons.append(second)
        if not metas:
            raise BoltFormatError(
                "no valid bbolt meta page: " + "; ".join(reasons), details={"reasons": reasons}
            )
        meta = max(metas, key=lambda m: m.txid)
        if len(self._data) < 2 * page_size:
            raise BoltFormatError(f"bbolt file of {len(self._data)} bytes is shorter than two pages")
        if meta.pgid * page_size > len(self._data):
            raise BoltFormatError(
                f"bbolt high-water mark {meta.pgid} pages exceeds the file ({len(self._data)} bytes)"
            )
        if meta.root >= meta.pgid or (meta.freelist != _NO_FREELIST and meta.freelist >= meta.pgid):
            raise BoltFormatError("bbolt meta page points past the high-water mark")
        return meta

    def _node(self, pgid: int, *, flags: int | None = None) -> tuple[int, int, int, bytes]:
        """(flags, count, overflow, node bytes) of page ``pgid``, with bbolt's page-access checks."""
        if pgid < 2 or pgid >= self.meta.pgid:
            raise BoltFormatError(f"bbolt page {pgid} is out of bounds (high-water mark {self.meta.pgid})")
        start = pgid * self._page_size
        own_id, page_flags, count, overflow = _HEADER.unpack_from(self._data, start)
        if own_id != pgid:
            raise BoltFormatError(f"bbolt page {pgid} carries id {own_id}")
        if page_flags not in (_BRANCH, _LEAF, _META, _FREELIST) or (
            flags is not None and page_flags != flags
        ):
            raise BoltFormatError(f"bbolt page {pgid} has unexpected flags {page_flags:#x}")
        if pgid + overflow >= self.meta.pgid:
            raise BoltFormatError(f"bbolt page {pgid} overflows past the high-water mark")
        end = start + (overflow + 1) * self._page_size
        return page_flags, count, overflow, self._data[start:end]

    @staticmethod
    def _leaf_elements(node: bytes, count: int, where: str) -> Iterator[tuple[int, bytes, bytes]]:
        if 16 + 16 * count > len(node):
            raise BoltFormatError(f"{where}: {count} elements do not fit the page")
        for i in range(count):
            offset = 16 + 16 * i
            flags, pos, ksize, vsize = _LEAF_ELEM.unpack_from(node, offset)
            start = offset + pos
            if start + ksize + vsize > len(node):
                raise BoltFormatError(f"{where}: element {i} points outside the page")
            yield flags, node[start : start + ksize], node[start + ksize : start + ksize + vsize]

    @staticmethod
    def _branch_elements(node: bytes, count: int, where: str) -> Iterator[tuple[bytes, int]]:
        if count == 0 or 16 + 16 * count > len(node):
            raise BoltFormatError(f"{where}: a branch page needs 1..{(len(node) - 16) // 16} elements")
        for i in range(count):
            offset = 16 + 16 * i
            pos, ksize, child = _BRANCH_ELEM.unpack_from(node, offset)
            start = offset + pos
            if start + ksize > len(node):
                raise BoltFormatError(f"{where}: element {i} points outside the page")
            yield node[start : start + ksize], child

    # -- traversal ---------------------------------------------------------------------------

    def _bucket_items(
        self, header: bytes, where: str, seen: set[int] | None = None
    ) -> Iterator[tuple[int, bytes, bytes]]:
        """(flags, key, value) of one bucket in key order, given its bucket-header value.

        ``seen`` collects visited page ids across a whole walk: a page met twice means
        a corrupt (possibly cyclic) file, reported instead of looping.
        """
        if len(header) < 16:
            raise BoltFormatError(f"{where}: bucket value shorter than its 16-byte header")
        root, _sequence = _BUCKET.unpack_from(header)
        if root == 0:
            inline = header[16:]
            if len(inline) < 16:
                raise BoltFormatError(f"{where}: inline bucket without a page header")
            _id, flags, count, _overflow = _HEADER.unpack_from(inline)
            if flags != _LEAF:
                raise BoltFormatError(f"{where}: inline bucket page is not a leaf")
            yield from self._leaf_elements(inline, count, where)
            return
        yield from self._tree_items(root, where, 0, set() if seen is None else seen)

    def _tree_items(
        self, pgid: int, where: str, depth: int, seen: set[int]
    ) -> Iterator[tuple[int, bytes, bytes]]:
        if depth > _MAX_TREE_DEPTH:
            raise BoltFormatError(f"{where}: B+tree deeper than {_MAX_TREE_DEPTH} levels")
        if pgid in seen:
            raise BoltFormatError(f"{where}: page {pgid} is referenced more than once")
        seen.add(pgid)
        flags, count, _overflow, node = self._node(pgid)
        if flags == _LEAF:
            yield from self._leaf_elements(node, count, f"{where} page {pgid}")
        elif flags == _BRANCH:
            for _key, child in list(self._branch_elements(node, count, f"{where} page {pgid}")):
                yield from self._tree_items(child, where, depth + 1, seen)
        else:
            raise BoltFormatError(f"{where}: page {pgid} is neither a leaf nor a branch")

    def _root_header(self) -> bytes:
        return _BUCKET.pack(self.meta.root, 0)

    def entries(self) -> Iterator[tuple[tuple[bytes, ...], bytes, bytes]]:
        """Every plain key/value as (bucket_path, key, value), depth-first in key order."""
        yield from self._walk((), self._root_header(), set(), entries=True)

    def buckets(self) -> Iterator[tuple[bytes, ...]]:
        """Every bucket path (including empty buckets), depth-first in key order."""
        for path, _key, _value in self._walk((), self._root_header(), set(), entries=False):
            yield path

    def _walk(
        self, path: tuple[bytes, ...], header: bytes, seen: set[int], *, entries: bool
    ) -> Iterator[tuple[tuple[bytes, ...], bytes, bytes]]:
        if len(path) > _MAX_BUCKET_DEPTH:
            raise BoltFormatError(f"buckets nested deeper than {_MAX_BUCKET_DEPTH}")
        where = _describe(path)
        for flags, key, value in self._bucket_items(header, where, seen):
            if flags & _BUCKET_FLAG:
                if not entries:
                    yield (*path, key), b"", b""
                yield from self._walk((*path, key), value, seen, entries=entries)
            elif not path:
                raise BoltFormatError(f"plain key {key!r} in the root bucket (only buckets belong there)")
            elif entries:
                yield path, key, value

    def get(self, bucket_path: tuple[bytes, ...], key: bytes) -> bytes | None:
        """The value at ``bucket_path``/``key``, or None; a linear scan, meant for tests and spot checks."""
        header = self._root_header()
        for name in bucket_path:
            found = next(
                (v for f, k, v in self._bucket_items(header, name.hex()) if k == name and f & 1), None
            )
            if found is None:
                return None
            header = found
        return next((v for f, k, v in self._bucket_items(header, key.hex()) if k == key and not f & 1), None)

    # -- consistency check -------------------------------------------------------------------

    def check(self, *, strict: bool = True) -> BoltCheckReport:
        """The rules of bbolt's ``Tx.Check`` plus key order; never raises on bad structure.

        ``strict`` also requires what this project's writer always does and bbolt
        only usually does: each branch key equals its child's first key (after
        deletions, bbolt may leave a smaller stale key, which its check accepts).
        Memory grows with the number of pages, not with the data.
        """
        state = _CheckState(BoltCheckReport(), {0, 1}, set(), strict)
        try:
            self._check_freelist(state)
            self._check_bucket(state, (), self._root_header())
        except BoltFormatError as exc:
            state.report.problems.append(exc.message)
            return state.report
        for pgid in range(self.meta.pgid):
            if pgid not in state.reachable and pgid not in state.freed:
                state.report.problems.append(f"page {pgid}: unreachable unfreed")
        return state.report

    def verify(self, *, strict: bool = True) -> BoltCheckReport:
        """:meth:`check`, raising :class:`BoltFormatError` listing the first problems."""
        report = self.check(strict=strict)
        if report.problems:
            raise BoltFormatError(
                f"bbolt consistency check failed: {'; '.join(report.problems[:5])}",
                details={"problems": report.problems[:50]},
            )
        return report

    def _check_freelist(self, state: _CheckState) -> None:
        if self.meta.freelist == _NO_FREELIST:
            return
        _flags, count, overflow, node = self._node(self.meta.freelist, flags=_FREELIST)
        state.reachable.update(range(self.meta.freelist, self.meta.freelist + overflow + 1))
        start = 16
        if count == 0xFFFF:
            (count,) = struct.unpack_from("<Q", node, 16)
            start = 24
        if start + 8 * count > len(node):
            raise BoltFormatError(f"freelist page {self.meta.freelist}: {count} ids do not fit")
        ids = struct.unpack_from(f"<{count}Q", node, start)
        for pgid in ids:
            if pgid in state.freed:
                state.report.problems.append(f"page {pgid}: already freed")
            if pgid < 2 or pgid >= self.meta.pgid:
                state.report.problems.append(f"page {pgid}: free id out of bounds")
            state.freed.add(pgid)
        if list(ids) != sorted(ids):
            state.report.problems.append("freelist ids are not sorted")

    def _check_bucket(self, state: _CheckState, path: tuple[bytes, ...], header: bytes) -> None:
        if len(path) > _MAX_BUCKET_DEPTH:
            raise BoltFormatError(f"buckets nested deeper than {_MAX_BUCKET_DEPTH}")
        report = state.report
        where = _describe(path)
        if path:
            report.buckets += 1
        if len(header) < 16:
            raise BoltFormatError(f"{where}: bucket value shorter than its 16-byte header")
        (root,) = struct.unpack_from("<Q", header)
        if root == 0:
            report.inline_buckets += 1
            items = list(self._bucket_items(header, where))
            if any(flags & _BUCKET_FLAG for flags, _k, _v in items):
                report.problems.append(f"{where}: inline bucket holds a sub-bucket (bbolt never writes that)")
            self._check_order(state, [k for _f, k, _v in items], None, None, where)
            return
        # Sub-buckets are checked as they stream past: nothing of the data is kept.
        for flags, key, value in self._check_tree(state, root, None, None, where, depth=1):
            if flags & _BUCKET_FLAG:
                self._check_bucket(state, (*path, key), value)
            elif not path:
                report.problems.append(f"plain key {key[:60]!r} in the root bucket")

    def _check_tree(
        self, state: _CheckState, pgid: int, low: bytes | None, high: bytes | None, where: str, depth: int
    ) -> Iterator[tuple[int, bytes, bytes]]:
        """One tree page: references, type, key order within [low, high); yields its leaf items."""
        if depth > _MAX_TREE_DEPTH:
            raise BoltFormatError(f"{where}: B+tree deeper than {_MAX_TREE_DEPTH} levels")
        report = state.report
        flags, count, overflow, node = self._node(pgid)
        for page in range(pgid, pgid + overflow + 1):
            if page in state.reachable:
                report.problems.append(f"page {page}: multiple references")
                return  # do not walk a shared subtree twice (cycles would never end)
            state.reachable.add(page)
        report.overflow_pages += overflow
        if pgid in state.freed:
            report.problems.append(f"page {pgid}: reachable freed")
        here = f"{where} page {pgid}"
        if flags == _LEAF:
            report.leaf_pages += 1
            report.max_tree_depth = max(report.max_tree_depth, depth)
            items = list(self._leaf_elements(node, count, here))
            self._check_order(state, [k for _f, k, _v in items], low, high, here)
            yield from items
        elif flags == _BRANCH:
            report.branch_pages += 1
            children = list(self._branch_elements(node, count, here))
            keys = [k for k, _c in children]
            self._check_order(state, keys, low, high, here)
            for i, (key, child) in enumerate(children):
                upper = keys[i + 1] if i + 1 < len(keys) else high
                yield from self._check_tree(state, child, key, upper, where, depth + 1)
        else:
            report.problems.append(f"page {pgid}: invalid type {flags:#x}")

    @staticmethod
    def _check_order(
        state: _CheckState, keys: list[bytes], low: bytes | None, high: bytes | None, where: str
    ) -> None:
        problems = state.report.problems
        for i, key in enumerate(keys):
            if not key:
                problems.append(f"{where}: empty key at element {i}")
            if i and keys[i - 1] >= key:
                problems.append(f"{where}: keys not strictly ascending at element {i}")
            if low is not None and key < low:
                problems.append(f"{where}: key {key[:40]!r} below its branch key {low[:40]!r}")
            if high is not None and key >= high:
                problems.append(f"{where}: key {key[:40]!r} not below the next branch key")
        if state.strict and low is not None and keys and keys[0] != low:
            problems.append(f"{where}: first key differs from its branch key")


@dataclass
class _CheckState:
    """What one :meth:`BoltReader.check` run accumulates."""

    report: BoltCheckReport
    reachable: set[int]
    freed: set[int]
    strict: bool


def _describe(path: tuple[bytes, ...]) -> str:
    return "bucket " + (" / ".join(repr(p[:60]) for p in path) if path else "<root>")


def read_entries(path: str | os.PathLike[str]) -> list[tuple[tuple[bytes, ...], bytes, bytes]]:
    """All plain entries of the file at ``path``, in the writer's input order."""
    with BoltReader.open(path) as reader:
        return list(reader.entries())
