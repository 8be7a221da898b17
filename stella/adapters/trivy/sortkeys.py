"""Order-preserving byte keys for tuples of byte strings.

The external sort (:mod:`stella.sorting`) orders flat ``bytes`` keys, while the bbolt
writer needs entries in the order of ``bucket_path + (key,)`` *tuples*, and the revision
and report streams sort by tuples too. Joining parts with a plain separator breaks that
order as soon as a part contains the separator, or one part is a prefix of another
(``(b"a", b"z")`` must sort before ``(b"a\\x00", b"")``). This is the escaping scheme of
ordered key-value stores: every part ends in ``00 01``, a zero byte inside a part is
written ``00 FF``, so comparing the encodings byte-wise compares the tuples part by part.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["decode_parts", "encode_parts", "encode_text_parts"]

_TERMINATOR = b"\x00\x01"
_ESCAPED_ZERO = b"\x00\xff"


def encode_parts(parts: Iterable[bytes]) -> bytes:
    """One key whose byte order is the tuple order of ``parts``."""
    return b"".join(part.replace(b"\x00", _ESCAPED_ZERO) + _TERMINATOR for part in parts)


def encode_text_parts(parts: Sequence[str]) -> bytes:
    """:func:`encode_parts` of the UTF-8 bytes of ``parts``, joined once when no part holds a zero."""
    joined = "\x00\x01".join(parts)
    if joined.count("\x00") == len(parts) - 1:  # only the separators: no part to escape
        return (joined + "\x00\x01").encode()
    return encode_parts(part.encode() for part in parts)


def decode_parts(key: bytes) -> tuple[bytes, ...]:
    """The parts :func:`encode_parts` joined.

    Raises:
        ValueError: ``key`` is not an encoding (it does not end in a terminator).
    """
    if not key:
        return ()
    if not key.endswith(_TERMINATOR):
        raise ValueError(f"not an encoded key: {key[:60]!r}")
    if _ESCAPED_ZERO not in key:  # the common case: no zero byte in any part
        return tuple(key[:-2].split(_TERMINATOR))
    parts: list[bytes] = []
    current = bytearray()
    index = 0
    while index < len(key):
        byte = key[index]
        if byte != 0:
            current.append(byte)
            index += 1
            continue
        marker = key[index + 1 : index + 2]
        if marker == b"\xff":
            current.append(0)
        elif marker == b"\x01":
            parts.append(bytes(current))
            current = bytearray()
        else:
            raise ValueError(f"not an encoded key: {key[:60]!r}")
        index += 2
    return tuple(parts)
