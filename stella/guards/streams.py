"""Decompressing readers that refuse truncated, padded and bomb-sized streams.

``zstandard``'s ``stream_reader`` ends quietly on an unfinished frame, and a naive
``read()`` of a 33 KB ``.zst`` can return a gigabyte. Every compressed input the project
reads (ingested ``.zst``/``.gz`` files, archives) goes through :func:`open_decompressed`,
which:

* decompresses at most :data:`READ_CHUNK` bytes per call, so memory stays bounded;
* fails with reason ``truncated`` when the input ends inside a frame, ``trailing-data``
  when bytes that are not another frame follow a complete one, ``corrupt`` otherwise;
* fails with ``too-large`` past ``max_output`` bytes and with ``bomb`` when, beyond
  :data:`RATIO_GRACE_BYTES`, the output exceeds :data:`MAX_RATIO` times the input;
* refuses zstd windows above 2^27 bytes (the decoders' default limit).

:func:`iter_lines` then splits a stream into lines without ever holding more than
``max_line`` bytes of one, and :func:`read_document` reads one document up to a limit.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Final, NoReturn

from backports import zstd

from stella.errors import InputError, StellaError

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "MAX_LINE_BYTES",
    "MAX_RATIO",
    "MAX_WINDOW_LOG",
    "QUARANTINE_PREFIX_BYTES",
    "RATIO_GRACE_BYTES",
    "READ_CHUNK",
    "Line",
    "compression_of",
    "iter_lines",
    "open_decompressed",
    "read_document",
]

READ_CHUNK: Final = 1 << 20
# One JSON document (a file, or a member of an archive read whole): the largest real
# SBOMs are a few tens of MB.
MAX_DOCUMENT_BYTES: Final = 128 << 20
# One line of a JSONL stream is one record.
MAX_LINE_BYTES: Final = 16 << 20
# What the quarantine keeps of an oversized line or document: enough to identify it.
QUARANTINE_PREFIX_BYTES: Final = 64 << 10
# Real JSON compresses 5-30x with zstd and gzip; 250x is only reached by padding.
MAX_RATIO: Final = 250
RATIO_GRACE_BYTES: Final = 16 << 20
MAX_WINDOW_LOG: Final = 27

_ZSTD_SUFFIX: Final = ".zst"
_GZIP_SUFFIX: Final = ".gz"


def compression_of(name: str) -> str:
    """``zstd``, ``gzip`` or ``none``, from a file name's suffix."""
    if name.endswith(_ZSTD_SUFFIX):
        return "zstd"
    if name.endswith(_GZIP_SUFFIX):
        return "gzip"
    return "none"


class _CountingReader(io.RawIOBase):
    """Counts the compressed bytes the decompressor pulls, for the ratio check."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        self.count += len(data)
        return len(data)

    def close(self) -> None:
        self._raw.close()
        super().close()


class _StreamFault(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
_SKIPPABLE_MAGIC_HIGH: Final = 0x184D2A5  # skippable frames: 0x184D2A50-0x184D2A5F
_INPUT_CHUNK: Final = 128 << 10


class _ZstdFrames(io.RawIOBase):
    """Concatenated zstd frames, decoded frame by frame so every boundary is checked.

    ``ZstdFile`` reports trailing garbage only after discarding the output of the frame
    it follows; decoding frame by frame keeps that output and names the fault exactly.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._decoder: zstd.ZstdDecompressor | None = None
        self._pending = b""
        self._frames = 0

    def readable(self) -> bool:
        return True

    def _more(self) -> bytes:
        data = self._raw.read(_INPUT_CHUNK)
        return data if isinstance(data, bytes) else bytes(data or b"")

    def _start_frame(self) -> bool:
        while len(self._pending) < 4:
            more = self._more()
            if not more:
                if not self._pending and self._frames:
                    return False
                if not self._pending:
                    raise _StreamFault("truncated", "compressed stream is empty")
                raise _StreamFault("trailing-data", f"{len(self._pending)} stray bytes after the last frame")
            self._pending += more
        magic = self._pending[:4]
        if magic != _ZSTD_MAGIC and int.from_bytes(magic, "little") >> 4 != _SKIPPABLE_MAGIC_HIGH:
            if self._frames:
                raise _StreamFault("trailing-data", "bytes that are not a zstd frame follow the last frame")
            raise _StreamFault("corrupt", "not a zstd stream")
        self._decoder = zstd.ZstdDecompressor(
            options={zstd.DecompressionParameter.window_log_max: MAX_WINDOW_LOG}
        )
        return True

    def read(self, size: int = -1) -> bytes:
        limit = READ_CHUNK if size is None or size < 0 else min(size, READ_CHUNK)
        while True:
            if self._decoder is None and not self._start_frame():
                return b""
            decoder = self._decoder
            assert decoder is not None
            data = b""
            if decoder.needs_input:
                data, self._pending = (self._pending, b"") if self._pending else (self._more(), b"")
                if not data:
                    raise _StreamFault("truncated", "compressed stream is truncated (ends inside a frame)")
            try:
                out = decoder.decompress(data, max_length=limit)
            except zstd.ZstdError as exc:
                raise _StreamFault("corrupt", f"compressed stream is corrupt: {exc}") from exc
            if decoder.eof:
                self._pending = decoder.unused_data + self._pending
                self._decoder = None
                self._frames += 1
            if out:
                return out

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._raw.close()
        super().close()


class _GuardedReader(io.RawIOBase):
    def __init__(
        self,
        read: Callable[[int], bytes],
        close: Callable[[], None],
        counter: _CountingReader | None,
        *,
        what: str,
        error: type[StellaError],
        max_output: int | None,
    ) -> None:
        self._read = read
        self._close = close
        self._counter = counter
        self._what = what
        self._error = error
        self._max_output = max_output
        self.produced = 0

    def readable(self) -> bool:
        return True

    def _fail(self, reason: str, message: str) -> NoReturn:
        raise self._error(
            f"{self._what}: {message} (after {self.produced} bytes of output)",
            details={"file": self._what, "reason": reason, "bytesRead": self.produced},
        )

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        try:
            data = self._read(min(len(buffer), READ_CHUNK))
        except _StreamFault as exc:
            self._fail(exc.reason, str(exc))
        except EOFError:
            self._fail("truncated", "compressed stream is truncated (ends inside a member)")
        except (gzip.BadGzipFile, zlib.error) as exc:
            if self.produced and isinstance(exc, gzip.BadGzipFile) and "Not a gzipped file" in str(exc):
                self._fail("trailing-data", "bytes that are not a gzip member follow the last member")
            self._fail("corrupt", f"compressed stream is corrupt: {exc}")
        self.produced += len(data)
        if self._max_output is not None and self.produced > self._max_output:
            self._fail("too-large", f"decompresses to more than {self._max_output} bytes")
        counter = self._counter
        if counter is not None and self.produced > max(RATIO_GRACE_BYTES, MAX_RATIO * counter.count):
            self._fail("bomb", f"decompresses more than {MAX_RATIO} times its size (a decompression bomb)")
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._close()
        super().close()


def open_decompressed(
    raw: IO[bytes],
    compression: str,
    *,
    what: str,
    error: type[StellaError] = InputError,
    max_output: int | None = None,
) -> io.RawIOBase:
    """A reader of ``raw``'s decompressed bytes (``compression``: zstd, gzip or none).

    Closing the reader closes ``raw``. Errors are raised as ``error`` with
    ``details.reason`` and ``details.bytesRead``.
    """
    if compression == "none":
        return _GuardedReader(raw.read, raw.close, None, what=what, error=error, max_output=max_output)
    counter = _CountingReader(raw)
    if compression == "zstd":
        frames = _ZstdFrames(counter)  # type: ignore[arg-type]
        return _GuardedReader(
            frames.read, frames.close, counter, what=what, error=error, max_output=max_output
        )
    if compression == "gzip":
        # GzipFile.read fills its whole buffer across members, so a fault after the
        # first member would discard that member's output; read1 stops at each one.
        members = gzip.GzipFile(fileobj=counter, mode="rb")
        return _GuardedReader(
            members.read1, members.close, counter, what=what, error=error, max_output=max_output
        )
    raise ValueError(f"unknown compression {compression!r}")


def read_document(
    reader: IO[bytes] | io.RawIOBase,
    *,
    what: str,
    limit: int = MAX_DOCUMENT_BYTES,
    error: type[StellaError] = InputError,
) -> bytes:
    """All of ``reader``, or ``error`` (reason ``too-large``) past ``limit`` bytes."""
    parts: list[bytes] = []
    total = 0
    while True:
        chunk = reader.read(min(READ_CHUNK, limit + 1 - total))
        if not chunk:
            return b"".join(parts)
        total += len(chunk)
        if total > limit:
            raise error(
                f"{what}: larger than the {limit}-byte document limit",
                details={"file": what, "reason": "too-large", "limit": limit},
            )
        parts.append(chunk)


@dataclass(frozen=True, slots=True)
class Line:
    """One line (without its end of line). ``data`` is capped for oversized lines."""

    number: int
    data: bytes
    size: int

    @property
    def oversized(self) -> bool:
        return self.size > len(self.data)


def iter_lines(
    reader: IO[bytes] | io.RawIOBase,
    *,
    max_line: int = MAX_LINE_BYTES,
    keep: int = QUARANTINE_PREFIX_BYTES,
) -> Iterator[Line]:
    """Non-blank lines of ``reader``; a line over ``max_line`` bytes comes back oversized.

    An oversized line keeps only its first ``keep`` bytes (for the quarantine) and the
    rest is skipped as it streams past, so memory stays near ``max_line``.
    """
    number = 0
    pending = bytearray()
    overflow: bytes | None = None  # the kept prefix while skipping an oversized line
    skipped = 0
    while True:
        chunk = reader.read(READ_CHUNK)
        if not chunk:
            break
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            if overflow is not None:
                skipped += len(piece)
            elif len(pending) + len(piece) > max_line:
                overflow = bytes((pending + piece)[:keep])
                skipped = len(pending) + len(piece)
                pending.clear()
            else:
                pending += piece
            if end < 0:
                break
            number += 1
            line = _finish(number, pending, overflow, skipped)
            if line is not None:
                yield line
            pending.clear()
            overflow, skipped = None, 0
            start = end + 1
    if pending or overflow is not None:
        line = _finish(number + 1, pending, overflow, skipped)
        if line is not None:
            yield line


def _finish(number: int, pending: bytearray, overflow: bytes | None, skipped: int) -> Line | None:
    if overflow is not None:
        return Line(number, overflow, skipped)
    data = bytes(pending).rstrip(b"\r")
    if not data.strip():
        return None
    return Line(number, data, len(data))
