"""Comparing the ledger's timestamps.

Timestamps are stored as UTC RFC 3339 text with second or microsecond precision, which
do not sort correctly as strings ('...00.5Z' < '...00Z'), so comparisons parse them.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

__all__ = ["format_utc", "is_after", "later", "parse_duration"]

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str) -> timedelta | None:
    """``7d``, ``48h``, ``1d12h30m``: a validity period as profile options spell it; else None."""
    match = _DURATION.match(text)
    if match is None or not any(match.groups()):
        return None
    days, hours, minutes, seconds = (int(group or 0) for group in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def format_utc(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` (whole seconds, UTC): how derived times enter manifests."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
