"""JSON parsing that refuses what the standard library quietly accepts.

``json.loads`` merges duplicate keys (last one wins), so the value stored and the bytes
a digest covers can say different things; it also accepts ``NaN`` and ``Infinity``,
which are not JSON and which no other consumer reads the same way. Every JSON boundary
(ingested documents, manifests, trust roots, signatures, policy files, API bodies)
parses through :func:`loads`, so each of these is rejected with a reason that names it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NoReturn

from stella.errors import InputError, StellaError

__all__ = ["loads"]

# CPython's parser recurses once per nesting level and stops at the interpreter's
# recursion limit (1000 by default); that is reported as ``too-deep``, not a crash.


class _Rejected(ValueError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)  # in C; the per-key loop only runs to name a duplicate
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _value in pairs:
            if key in seen:
                raise _Rejected("duplicate-key", f"duplicate key {key!r} in one object")
            seen.add(key)
    return out


def _constant(name: str) -> NoReturn:
    raise _Rejected("non-finite-number", f"{name} is not a JSON number")


def loads(
    data: bytes | str,
    *,
    what: str = "JSON",
    error: type[StellaError] = InputError,
    max_bytes: int | None = None,
    parse_float: Callable[[str], Any] | None = None,
    parse_int: Callable[[str], Any] | None = None,
) -> Any:
    """Parse one JSON text strictly; raise ``error`` with ``details.reason`` if it is refused.

    ``parse_float``/``parse_int`` are passed to :func:`json.loads`. Reasons: ``too-large``, ``not-utf8``, ``too-deep``, ``duplicate-key``,
    ``non-finite-number``, ``syntax``.
    """

    def refuse(reason: str, message: str) -> NoReturn:
        raise error(f"{what} is not acceptable JSON: {message}", details={"what": what, "reason": reason})

    if max_bytes is not None and len(data) > max_bytes:
        refuse("too-large", f"{len(data)} bytes exceeds the limit of {max_bytes}")
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            refuse("not-utf8", f"not UTF-8 ({exc.reason} at byte {exc.start})")
    else:
        text = data
    try:
        return json.loads(
            text,
            object_pairs_hook=_pairs,
            parse_constant=_constant,
            parse_float=parse_float,
            parse_int=parse_int,
        )
    except _Rejected as exc:
        refuse(exc.reason, str(exc))
    except RecursionError:
        refuse("too-deep", "nested deeper than the parser allows")
    except json.JSONDecodeError as exc:
        refuse("syntax", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        refuse("syntax", str(exc))
