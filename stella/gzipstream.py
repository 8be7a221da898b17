"""A gzip writer that uses the threads it is given and writes the same bytes whatever their number.

The Trivy layers (``db.tar.gz``, ``javadb.tar.gz``) are the last serial step of their
profiles: one large database compressed by one core while the other workers idle.
This writer compresses pigz-style: the stream is cut into fixed blocks, each deflated
by a fresh compressor with the previous 32 KiB as preset dictionary and ended by a
sync flush, so blocks compress in parallel (zlib-ng releases the GIL while it
deflates) and join into one ordinary gzip member whose CRC is combined from the
blocks'. Any gzip reader (Go's ``compress/gzip`` in Trivy, ``gzip -t``, Python's
``gzip``) reads it.

What makes it deterministic: a block's bytes are a function of the block and its
dictionary alone. Blocks are cut at fixed offsets of the uncompressed stream
(:data:`BLOCK_SIZE`, never derived from the thread count or from how the caller
split its writes), and every block gets a new compressor. (zlib-ng's own threaded
writer reuses one compressor per thread, and a reused compressor's output depends on
the blocks it deflated before, so its bytes change with the thread count: measured
on a ``trivy.db`` with 3 threads against 1.) The thread count decides only which
thread deflates a block. The header carries no name, time 0 and OS 255. The bytes
do depend on the zlib-ng version, as any deflate output depends on its
implementation.

Every tar.gz the product writes goes through :func:`open_gzip_writer`.
"""

from __future__ import annotations

import collections
import contextlib
import io
import struct
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from zlib_ng import zlib_ng

__all__ = ["BLOCK_SIZE", "LEVEL", "ByteSink", "GzipBlockWriter", "open_gzip_writer"]

BLOCK_SIZE = 1 << 20
"""Uncompressed bytes per independently deflated block: part of the output format."""
LEVEL = 6
"""zlib's default level; zlib-ng's level 6 is both smaller and ~1.8x faster than zlib's on a trivy.db."""

_WINDOW = 32 * 1024  # deflate's window: the most of the previous block a dictionary can use
# No name, mtime 0, extra flags 0 (level 6), OS 255 "unknown" (RFC 1952 §2.3).
_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
_IN_FLIGHT_PER_THREAD = 2  # blocks queued per thread: enough to keep each busy, memory bounded


class ByteSink(Protocol):
    """Where the compressed bytes go: a file, or a wrapper that hashes on the way."""

    def write(self, data: bytes, /) -> object: ...


def _deflate_block(block: bytes, dictionary: bytes) -> tuple[bytes, int]:
    """(raw deflate of ``block`` ending in a sync flush, its CRC-32), from a fresh compressor."""
    if dictionary:
        compressor = zlib_ng.compressobj(LEVEL, zlib_ng.DEFLATED, -15, zdict=dictionary)
    else:
        compressor = zlib_ng.compressobj(LEVEL, zlib_ng.DEFLATED, -15)
    return compressor.compress(block) + compressor.flush(zlib_ng.Z_SYNC_FLUSH), zlib_ng.crc32(block)


class GzipBlockWriter(io.RawIOBase):
    """Writes one gzip member into ``sink`` in :data:`BLOCK_SIZE` blocks; see the module docstring.

    With one thread every block is deflated in the calling thread; with more, a pool
    deflates them while the caller keeps reading and the finished blocks are written
    in order. Use it through :func:`open_gzip_writer`, which ends the stream.
    """

    def __init__(self, sink: ByteSink, *, threads: int) -> None:
        super().__init__()
        if threads < 1:
            raise ValueError(f"threads must be at least 1, not {threads}")
        self._sink = sink
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="gzip") if threads > 1 else None
        self._limit = threads * _IN_FLIGHT_PER_THREAD
        self._pending: collections.deque[Future[tuple[bytes, int]]] = collections.deque()
        self._lengths: collections.deque[int] = collections.deque()
        self._partial = bytearray()
        self._dictionary = b""
        self._crc = 0
        self._size = 0
        sink.write(_HEADER)

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        """Uncompressed bytes written so far (``tarfile`` asks for it)."""
        return self._size + sum(self._lengths) + len(self._partial)

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        size = len(view)
        if self._partial:
            take = min(BLOCK_SIZE - len(self._partial), size)
            self._partial += view[:take]
            view = view[take:]
            if len(self._partial) < BLOCK_SIZE:
                return size
            self._submit(bytes(self._partial))
            self._partial.clear()
        whole = len(view) - len(view) % BLOCK_SIZE
        for start in range(0, whole, BLOCK_SIZE):
            self._submit(view[start : start + BLOCK_SIZE].tobytes())
        self._partial += view[whole:]
        return size

    def finish(self) -> None:
        """Deflate what is left, then write the final empty block and the CRC/size trailer."""
        if self._partial:
            self._submit(bytes(self._partial))
            self._partial.clear()
        while self._pending:
            self._drain_one()
        self._sink.write(zlib_ng.compressobj(LEVEL, zlib_ng.DEFLATED, -15).flush())
        self._sink.write(struct.pack("<II", self._crc, self._size & 0xFFFFFFFF))

    def close(self) -> None:
        """Stop the threads; a stream closed without :meth:`finish` is left without its trailer."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        super().close()

    def _submit(self, block: bytes) -> None:
        dictionary, self._dictionary = self._dictionary, block[-_WINDOW:]
        if self._pool is None:
            self._pending.append(_done(_deflate_block(block, dictionary)))
        else:
            self._pending.append(self._pool.submit(_deflate_block, block, dictionary))
        self._lengths.append(len(block))
        if len(self._pending) > self._limit or self._pool is None:
            self._drain_one()

    def _drain_one(self) -> None:
        compressed, crc = self._pending.popleft().result()
        length = self._lengths.popleft()
        self._sink.write(compressed)
        self._crc = zlib_ng.crc32_combine(self._crc, crc, length)
        self._size += length


def _done(value: tuple[bytes, int]) -> Future[tuple[bytes, int]]:
    future: Future[tuple[bytes, int]] = Future()
    future.set_result(value)
    return future


@contextlib.contextmanager
def open_gzip_writer(sink: ByteSink, *, threads: int) -> Iterator[GzipBlockWriter]:
    """A binary stream that gzips into ``sink`` (left open) with ``threads`` compressing threads.

    The output is byte-identical for every ``threads`` >= 1; the caller passes the
    run's worker count, so one worker compresses on one thread. If the block raises,
    the threads are stopped and no trailer is written (the caller discards the file).

    Raises:
        ValueError: ``threads`` below 1.
    """
    writer = GzipBlockWriter(sink, threads=threads)
    try:
        yield writer
        writer.finish()
    finally:
        writer.close()
