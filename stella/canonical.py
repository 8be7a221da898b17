"""Canonical JSON (RFC 8785, JCS) and the digests computed over it.

Wherever bytes are hashed or signed they are JCS bytes. The reference implementation
(``rfc8785``, the one sigstore-python uses) is exact but runs at ~6 MB/s; the standard
library encoder produces the very same bytes for the common case -- no floats, integers
inside the I-JSON range, and no characters outside the Basic Multilingual Plane in
object keys (where UTF-16 and code-point order could differ) -- at ~35 MB/s, and
``orjson`` with sorted keys does too, three times faster again (its key order is UTF-8
byte order, which is code-point order, and it escapes exactly the characters JCS
escapes, the same way). So we prove the common case cheaply and fall back to the
reference otherwise; the property tests hold every path to the same output.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import orjson
import rfc8785

from stella.errors import InputError
from stella.guards import strictjson

__all__ = [
    "JSONValue",
    "canonical_document",
    "dumps",
    "dumps_plain",
    "sha256_digest",
    "sha256_hex",
    "trimmed",
]

JSONValue = Any  # a value json.loads can return; kept loose because documents are untrusted

# I-JSON (RFC 7493) interoperable integer range; JCS serialises numbers as doubles.
_MAX_SAFE_INT = 2**53 - 1
# A four-byte UTF-8 lead byte, or an escaped high surrogate, means a non-BMP character.
# Two searches, each behind a cheap test (ASCII text has no lead bytes; no ``\u`` means no
# escape): one alternation over every byte cost a tenth of ingesting a document.
_FOUR_BYTE_LEAD = re.compile(rb"[\xf0-\xf4]")
_ESCAPED_HIGH_SURROGATE = re.compile(rb"\\u[dD][89abAB]")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_digest(data: bytes) -> str:
    """The digest notation used in every manifest: ``sha256:<lowercase hex>``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


# One encoder for every call: json.dumps with options builds a new one each time, which
# costs as much as encoding a record envelope.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# orjson serialises dataclasses, datetimes and str/int/dict/list subclasses its own way;
# passing them through makes it refuse them, so they reach the standard encoder as before.
_ORJSON_OPTIONS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def trimmed(data: bytes) -> bytes:
    """``data`` copied into a bytes object of its own size; for every ``orjson.dumps`` result that is kept.

    orjson returns its whole output buffer as the bytes object (4 KiB for the smallest
    value, up to twice the text for larger ones) and ``sys.getsizeof`` does not show it:
    100,000 index rows held for a sort took 400 MB. The copy costs ~0.2 us; callers keep
    these values in batches, runs and heaps.
    """
    return bytes(memoryview(data))


def _fast(value: JSONValue) -> bytes:
    """Compact, sorted-key JSON: orjson when it takes the value, else the standard encoder.

    orjson refuses what it cannot write exactly as JCS does (lone surrogates, non-string
    keys, nesting past 255 levels, the passed-through types above); the standard encoder
    then writes it or raises the error callers already handle.

    The result is :func:`trimmed` (orjson's buffer is mostly empty for small values).
    """
    try:
        return trimmed(orjson.dumps(value, option=_ORJSON_OPTIONS))
    except orjson.JSONEncodeError:
        return _ENCODER.encode(value).encode("utf-8")


def _has_non_bmp(data: bytes) -> bool:
    return bool(
        (not data.isascii() and _FOUR_BYTE_LEAD.search(data))
        or (b"\\u" in data and _ESCAPED_HIGH_SURROGATE.search(data))
    )


def _reference(value: JSONValue) -> bytes:
    try:
        return bytes(rfc8785.dumps(value))
    except (rfc8785.CanonicalizationError, ValueError, TypeError) as exc:
        raise InputError(f"value cannot be canonicalised as RFC 8785 JSON: {exc}") from exc


def _needs_reference(value: JSONValue) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str) or any(ord(ch) > 0xFFFF for ch in key):
                    return True
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, bool) or item is None or isinstance(item, str):
            continue
        elif isinstance(item, int):
            if not -_MAX_SAFE_INT <= item <= _MAX_SAFE_INT:
                return True
        else:  # float or anything exotic: let the reference decide
            return True
    return False


def dumps(value: JSONValue) -> bytes:
    """RFC 8785 bytes of ``value``.

    Raises:
        InputError: the value has no canonical form (NaN, huge integers, lone surrogates).
    """
    if _needs_reference(value):
        return _reference(value)
    try:
        return _fast(value)
    except (UnicodeEncodeError, ValueError) as exc:
        raise InputError(f"value cannot be canonicalised as RFC 8785 JSON: {exc}") from exc


def dumps_plain(value: JSONValue) -> bytes:
    """RFC 8785 bytes of a value built by this project from strings, lists and ASCII keys.

    For such values (no numbers beyond small ints, no floats, keys that sort the same
    in UTF-16 and code-point order) JCS *is* ``json.dumps(sort_keys=True)``, so the
    safety walk of :func:`dumps` is skipped: it costs more than the encoding on the hot
    path (every exported record's envelope). Never use it for untrusted documents.
    """
    return _fast(value)


class _Probe:
    """Remembers, during one parse, whether the text holds anything the fast path can't take."""

    __slots__ = ("unsafe",)

    def __init__(self) -> None:
        self.unsafe = False

    def parse_float(self, text: str) -> float:
        self.unsafe = True
        return float(text)

    def parse_int(self, text: str) -> int | float:
        number = int(text)
        if -_MAX_SAFE_INT <= number <= _MAX_SAFE_INT:
            return number
        self.unsafe = True
        # JCS numbers are IEEE doubles: a large integer that a double holds exactly is
        # fine (and is what canonical output itself contains); anything else is lossy
        # and left as an int for the reference implementation to reject.
        as_float = float(number)
        try:
            lossless = bytes(rfc8785.dumps(as_float)) == text.lstrip("+").encode()
        except (rfc8785.CanonicalizationError, OverflowError):
            lossless = False
        return as_float if lossless else number


def canonical_document(raw: bytes | str) -> tuple[JSONValue, bytes]:
    """Parse untrusted JSON text; return the value and its canonical bytes.

    One parse serves both, and the parser's own hooks tell whether the fast encoder is
    exact for this document, so ingestion pays for JCS only when it must.

    Raises:
        InputError: not UTF-8, not strict JSON (duplicate keys, NaN: see
            :func:`stella.guards.strictjson.loads`), or a value JCS cannot express.
    """
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    probe = _Probe()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text at byte {exc.start}") from exc
    if text.startswith("\ufeff"):
        text = text[1:]
    value = strictjson.loads(text, what="document", parse_float=probe.parse_float, parse_int=probe.parse_int)
    if probe.unsafe or _has_non_bmp(data):
        return value, _reference(value)
    try:
        return value, _fast(value)
    except (UnicodeEncodeError, ValueError) as exc:
        raise InputError(f"value cannot be canonicalised as RFC 8785 JSON: {exc}") from exc
