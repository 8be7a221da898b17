"""Writing and comparing the project's timestamps: one RFC 3339 writer for everything.

Timestamps are stored as UTC RFC 3339 text with second or microsecond precision, which
do not sort correctly as strings ('...00.5Z' < '...00Z'), so comparisons parse them.

Every timestamp the project writes (ledger, manifests, Trivy ``metadata.json``, error
payloads) goes through :func:`rfc3339`, which zero-pads every field itself: glibc's
``strftime('%Y')`` writes year 1 as ``1``, and Trivy (Go) refuses ``1-01-01T00:00:00Z``.

Upstream feeds also use *placeholder* times: Go's zero ``time.Time`` marshals as
``0001-01-01T00:00:00Z`` (the Go vulnerability database's OSV records carry it as
``modified``), and a zero Unix time as ``1970-01-01T00:00:00Z``. No evidence document
was written then, so :func:`is_placeholder` lets readers treat them as unknown.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Final

__all__ = [
    "PLACEHOLDER_BEFORE",
    "format_go_time",
    "format_time",
    "is_after",
    "is_placeholder",
    "later",
    "parse_duration",
    "rfc3339",
]

# Anything before this is a placeholder (Go zero time, Unix epoch 0), never a real date.
PLACEHOLDER_BEFORE: Final = datetime(1970, 1, 2, tzinfo=UTC)
_DURATION: Final = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str) -> timedelta | None:
    """``7d``, ``48h``, ``1d12h30m``: a validity period as profile options spell it; else None."""
    match = _DURATION.fullmatch(text)
    if match is None or not any(match.groups()):
        return None
    days, hours, minutes, seconds = (int(group or 0) for group in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def rfc3339(moment: datetime, *, fraction: str = "micro") -> str:
    """``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` in UTC, every field zero-padded.

    ``fraction``: ``micro`` writes six digits when there are microseconds (the ledger's
    spelling); ``go`` trims trailing zeros as Go's ``time.Time`` marshals them; ``milli``
    always writes three (API and log times).
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"timestamp {moment!r} has no time zone")
    utc = moment.astimezone(UTC)
    text = f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}"
    if fraction == "milli":
        return text + f".{utc.microsecond // 1000:03d}Z"
    if utc.microsecond:
        digits = f"{utc.microsecond:06d}"
        text += "." + (digits.rstrip("0") if fraction == "go" else digits)
    return text + "Z"


def format_time(moment: datetime) -> str:
    """The ledger's and manifests' spelling (microseconds when present)."""
    return rfc3339(moment)


def format_go_time(moment: datetime) -> str:
    """Go's ``time.Time`` JSON spelling (fraction only when non-zero, trailing zeros trimmed)."""
    return rfc3339(moment, fraction="go")


def is_placeholder(moment: str | datetime) -> bool:
    """Whether a timestamp is a placeholder for "unknown" (see the module docstring)."""
    at = datetime.fromisoformat(moment.replace("Z", "+00:00")) if isinstance(moment, str) else moment
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at < PLACEHOLDER_BEFORE


def later(*moments: str | None) -> str | None:
    """The latest of the given timestamps, ignoring ``None``."""
    best: str | None = None
    best_at: datetime | None = None
    for moment in moments:
        if moment is None:
            continue
        at = datetime.fromisoformat(moment)
        if best_at is None or at > best_at:
            best, best_at = moment, at
    return best


def is_after(moment: str, reference: str) -> bool:
    """Whether ``moment`` is strictly later than ``reference``."""
    return datetime.fromisoformat(moment) > datetime.fromisoformat(reference)
