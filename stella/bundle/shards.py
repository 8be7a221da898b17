"""Writing one sorted shard: JSON lines through zstd, hashed as written.

Compression parameters are fixed (level 3, single-threaded, checksummed frames) because
zstd output is only reproducible for identical parameters: multi-threaded mode even
changes bytes with the thread setting. The digest is taken over the compressed bytes,
which is what ``sha256sum`` on the shard file shows.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

import zstandard

from stella import storage
from stella.bundle.manifest import ContentEntry
from stella.storage import HashingWriter

__all__ = ["JSONL_CONTENT_TYPE", "ZSTD_LEVEL", "write_jsonl_shard", "zstd_compressor"]

ZSTD_LEVEL = 3
JSONL_CONTENT_TYPE = "application/x-ndjson+zstd"
_CHUNK_LINES = 1024


def zstd_compressor() -> zstandard.ZstdCompressor:
    """The one compressor configuration every bundle file uses."""
    return zstandard.ZstdCompressor(
        level=ZSTD_LEVEL, threads=0, write_checksum=True, write_content_size=False
    )


def write_jsonl_shard(root: str, relative_path: str, lines: Iterable[bytes]) -> ContentEntry:
    """Write ``lines`` (already canonical JSON, no newline) to ``root/relative_path``."""
    count = 0
    source = iter(lines)
    with storage.open_write(storage.join(root, relative_path)) as handle:
        sink = HashingWriter(handle)
        with zstd_compressor().stream_writer(sink, closefd=False) as writer:  # type: ignore[arg-type]
            # Lines are taken in chunks by islice (in C): no Python step per line.
            while chunk := list(islice(source, _CHUNK_LINES)):
                chunk.append(b"")
                writer.write(b"\n".join(chunk))
                count += len(chunk) - 1
    return ContentEntry(
        path=relative_path,
        digest=sink.digest,
        bytes=sink.size,
        records=count,
        content_type=JSONL_CONTENT_TYPE,
    )
