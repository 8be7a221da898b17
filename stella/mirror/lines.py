"""Merging a few line changes into a large JSON Lines text without splitting it into lines.

A touched raw shard of a mirror state is mostly kept lines. Knowing from the record
index which line numbers a delta drops and before which ones it inserts, the old text is
copied through in the decompressor's blocks: per kept line the only work is one
``bytes.find`` (in C), and only the dropped lines become Python objects.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from typing import Final

from stella.errors import BundleIntegrityError
from stella.guards.streams import MAX_LINE_BYTES, READ_CHUNK

__all__ = ["merge_text"]

_INSERT, _DROP = 0, 1
_NEWLINE: Final = b"\n"


class _Text:
    """A cursor over the lines of a decompressed stream, read one block at a time."""

    def __init__(self, reader: io.RawIOBase | None, where: str) -> None:
        self._reader = reader
        self._where = where
        self._block = b""
        self._at = 0

    def _fail(self, why: str) -> BundleIntegrityError:
        return BundleIntegrityError(
            f"{self._where}: {why} than its record index lists", details={"file": self._where}
        )

    def _more(self) -> bool:
        data = self._reader.read(READ_CHUNK) if self._reader is not None else b""
        self._block, self._at = data or b"", 0
        return bool(data)

    def copy(self, lines: int) -> Iterator[bytes]:
        """The next ``lines`` lines, newlines included, as blocks of text."""
        start = self._at
        while lines:
            end = self._block.find(_NEWLINE, self._at)
            if end < 0:
                if start < len(self._block):
                    yield self._block[start:]
                if not self._more():
                    raise self._fail("fewer lines")
                start = 0
                continue
            self._at = end + 1
            lines -= 1
        if start < self._at:
            yield self._block[start : self._at]

    def take(self) -> bytes:
        """The next line, without its newline."""
        parts: list[bytes] = []
        size = 0
        while (end := self._block.find(_NEWLINE, self._at)) < 0:
            parts.append(self._block[self._at :])
            size += len(parts[-1])
            if size > MAX_LINE_BYTES or not self._more():
                raise self._fail("a line over the limit, or fewer lines")
        parts.append(self._block[self._at : end])
        self._at = end + 1
        return b"".join(parts)

    def finish(self) -> None:
        if self._at < len(self._block) or self._more():
            raise self._fail("more lines")


def merge_text(
    reader: io.RawIOBase | None,
    count: int,
    drops: Sequence[int],
    inserts: Sequence[tuple[int, bytes]],
    dropped: list[bytes],
    *,
    where: str,
) -> Iterator[bytes]:
    """The text of ``reader`` (``count`` lines; None: none) less the lines numbered ``drops``
    (appended to ``dropped``, in order), with each insert's line (no newline) placed before
    the old line of its number. ``inserts`` at one number keep their order.

    Raises:
        BundleIntegrityError: the text does not have exactly ``count`` lines.
    """
    text = _Text(reader, where)
    events = sorted(
        [*((at, _INSERT, line) for at, line in inserts), *((at, _DROP, b"") for at in drops)],
        key=lambda event: (event[0], event[1]),
    )
    try:
        done = 0
        for at, what, line in events:
            yield from text.copy(at - done)
            done = at
            if what == _INSERT:
                yield line + _NEWLINE
            else:
                dropped.append(text.take())
                done += 1
        yield from text.copy(count - done)
        text.finish()
    finally:
        if reader is not None:
            reader.close()
