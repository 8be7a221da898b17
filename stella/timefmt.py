"""Comparing the ledger's timestamps.

Timestamps are stored as UTC RFC 3339 text with second or microsecond precision, which
do not sort correctly as strings ('...00.5Z' < '...00Z'), so comparisons parse them.
"""

from __future__ import annotations

from datetime import datetime

__all__ = ["is_after", "later"]


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
