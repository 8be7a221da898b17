"""Writing one sorted shard: JSON lines through zstd, hashed as written.

Compression parameters are fixed (level 3, single-threaded, checksummed frames) because
zstd output is only reproducible for identical parameters: multi-threaded mode even
changes bytes with the thread setting. The digest is taken over the compressed bytes,
which is what ``sha256sum`` on the shard file shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice

import zstandard

from stella import storage
from stella.bundle.manifest import ContentEntry
from stella.storage import HashingWriter

__all__ = [
    "JSONL_CONTENT_TYPE",
    "ZSTD_LEVEL",
    "line_chunks",
    "write_jsonl_blocks",
    "write_jsonl_shard",
    "zstd_compressor",
]

ZSTD_LEVEL = 3
JSONL_CONTENT_TYPE = "application/x-ndjson+zstd"
_CHUNK_LINES = 1024
# Bytes of lines joined per write: 1,024 SBOM lines of ~160 KB were a 160 MB chunk (and as
# much again joined); a chunk takes as many lines as fit here at the last chunk's mean size
# (the first chunk is one line), so lines of up to 4 KB still go 1,024 at a time.
_CHUNK_BYTES = 4 << 20


def zstd_compressor() -> zstandard.ZstdCompressor:
    """The one compressor configuration every bundle file uses."""
    return zstandard.ZstdCompressor(
        level=ZSTD_LEVEL, threads=0, write_checksum=True, write_content_size=False
    )


def line_chunks(lines: Iterable[bytes]) -> Iterator[list[bytes]]:
    """``lines`` in chunks of at most ``_CHUNK_LINES`` lines and about ``_CHUNK_BYTES``.

    Lines are taken by islice (in C): no Python step per line. A chunk's line count comes
    from the previous chunk's mean line size, so a writer holds about ``_CHUNK_BYTES`` of
    lines (or one line, if larger) whatever the documents weigh; the first chunk is one line.
    """
    source = iter(lines)
    take = 1
    while chunk := list(islice(source, take)):
        size = sum(map(len, chunk)) + len(chunk)
        take = max(1, min(_CHUNK_LINES, _CHUNK_BYTES * len(chunk) // size))
        yield chunk


def write_jsonl_shard(root: str, relative_path: str, lines: Iterable[bytes]) -> ContentEntry:
    """Write ``lines`` (already canonical JSON, no newline) to ``root/relative_path``."""
    count = 0

    def blocks() -> Iterator[bytes]:
        nonlocal count
        for chunk in line_chunks(lines):
            count += len(chunk)
            chunk.append(b"")
            yield b"\n".join(chunk)

    sink = _write_zstd(root, relative_path, blocks())
    return _entry(relative_path, sink, count)


def write_jsonl_blocks(
    root: str, relative_path: str, blocks: Iterable[bytes | memoryview], *, records: int
) -> ContentEntry:
    """Write JSON Lines text given as blocks cut anywhere (``records`` lines, each ending in a newline).

    The bytes are those :func:`write_jsonl_shard` writes for the same lines: zstd's output
    depends on the input and the parameters, not on how the input is cut into writes. A
    rewrite can thus copy kept text through in large blocks without splitting it into lines.
    """
    return _entry(relative_path, _write_zstd(root, relative_path, blocks), records)


def _write_zstd(root: str, relative_path: str, blocks: Iterable[bytes | memoryview]) -> HashingWriter:
    with storage.open_write(storage.join(root, relative_path)) as handle:
        sink = HashingWriter(handle)
        with zstd_compressor().stream_writer(sink, closefd=False) as writer:  # type: ignore[arg-type]
            for block in blocks:
                writer.write(block)
    return sink


def _entry(relative_path: str, sink: HashingWriter, records: int) -> ContentEntry:
    return ContentEntry(
        path=relative_path,
        digest=sink.digest,
        bytes=sink.size,
        records=records,
        content_type=JSONL_CONTENT_TYPE,
    )
