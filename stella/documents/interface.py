"""The document-format port: untrusted JSON in, a typed :class:`ParsedDocument` out.

Each upstream format gets one module that knows how to recognise itself from content
(never from a file name) and how to pull out the identity and linkset fields that
selectors need. Parsers read defensively: a missing or mistyped field becomes an
:class:`~stella.errors.InputError` naming the field, never a ``KeyError``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from stella.errors import InputError
from stella.model import DocFormat, Kind, Linkset
from stella.timefmt import format_time, is_placeholder

__all__ = [
    "DocumentFormat",
    "ParsedDocument",
    "dated",
    "ecosystem_of_purl",
    "format_time",
    "normalize_time",
    "opt_str",
    "req_str",
    "sorted_unique",
    "walk_dicts",
]


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    """What ingestion learns about a document besides the document itself."""

    kind: Kind
    format: DocFormat
    upstream_id: str
    modified: str | None
    revision: str | None
    linkset: Linkset
    # Set when a placeholder time (Go's zero time...) was skipped: what dates it instead.
    time_note: str | None = None


class DocumentFormat(Protocol):
    """One upstream format. ``matches`` must be cheap and must not raise."""

    format: DocFormat

    def matches(self, value: Any) -> bool: ...

    def parse(self, value: Mapping[str, Any], *, digest: str) -> ParsedDocument: ...


def req_str(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where}: required field {key!r} is missing or not a non-empty string")
    return value


def opt_str(obj: Any, key: str) -> str | None:
    if not isinstance(obj, Mapping):
        return None
    value = obj.get(key)
    return value if isinstance(value, str) and value else None


# RFC 3339 with any number of fractional digits; Python keeps microseconds only.
_FRACTION = re.compile(r"(\.\d{6})\d+")
# The spelling nearly every feed uses (UTC, 'Z', up to microseconds): read by one match
# instead of a substitution, a parse and a reformat, which cost a tenth of an ingest.
_UTC_Z = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?Z", re.ASCII)


def _utc_z(text: str) -> str | None:
    """``normalize_time`` of a ``…Z`` timestamp with at most six fraction digits, else None.

    The datetime constructor checks the fields (month 13, 30 February, second 60) and
    raises the same ValueError ``fromisoformat`` would.
    """
    match = _UTC_Z.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction = match.groups()
    micro = (fraction or "").ljust(6, "0")
    datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), int(micro))
    head = f"{year}-{month}-{day}T{hour}:{minute}:{second}"
    return f"{head}.{micro}Z" if micro != "000000" else f"{head}Z"


def normalize_time(text: str | None, *, field: str, required: bool = False) -> str | None:
    """UTC RFC 3339 with second or microsecond precision, so timestamps compare as text.

    Upstream timestamps come with offsets, 'Z', nanoseconds or just a date; selectors
    and ``generatedAt`` need one spelling.
    """
    if text is None:
        if required:
            raise InputError(f"required timestamp {field!r} is missing")
        return None
    try:
        fast = _utc_z(text)
        if fast is not None:
            return fast
        parsed = datetime.fromisoformat(_FRACTION.sub(r"\1", text.strip()))
    except ValueError as exc:
        raise InputError(f"field {field!r}: {text!r} is not an RFC 3339 timestamp") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return format_time(parsed)
    except OverflowError as exc:  # e.g. 9999-12-31T23:59:59-05:00 is past year 9999 in UTC
        raise InputError(f"field {field!r}: {text!r} is outside years 1-9999 in UTC") from exc


def dated(*candidates: tuple[str, str | None]) -> tuple[str | None, str | None]:
    """The first candidate time that is not a placeholder, and a note if one was skipped.

    ``candidates`` are ``(field, normalized time or None)`` in order of preference (for
    OSV: ``modified``, then ``published``). ``None`` means "date it at ingestion"
    (:attr:`LedgerRecord.high_water`). The note says which placeholder was skipped and
    what dates the document instead, for the ingest report.
    """
    skipped: list[str] = []
    for field, moment in candidates:
        if moment is None:
            continue
        if is_placeholder(moment):
            skipped.append(f"{field} {moment}")
            continue
        note = f"{', '.join(skipped)} is a placeholder; dated by {field}" if skipped else None
        return moment, note
    return None, (f"{', '.join(skipped)} is a placeholder; dated at ingestion" if skipped else None)


# purl type -> OSV ecosystem name, so one `ecosystem=` selector spans advisories, SBOM
# components and VEX products alike.
_PURL_ECOSYSTEMS = {
    "pypi": "PyPI",
    "npm": "npm",
    "maven": "Maven",
    "golang": "Go",
    "cargo": "crates.io",
    "gem": "RubyGems",
    "nuget": "NuGet",
    "composer": "Packagist",
    "pub": "Pub",
    "hex": "Hex",
    "swift": "SwiftURL",
    "deb": "Debian",
    "apk": "Alpine",
    "rpm": "RPM",
    "bitnami": "Bitnami",
    "conan": "ConanCenter",
    "cran": "CRAN",
    "hackage": "Hackage",
    "github": "GitHub Actions",
    "oci": "OCI",
}
_PURL_TYPE = re.compile(r"^pkg:/*([A-Za-z][A-Za-z0-9.+-]*)/")


def ecosystem_of_purl(purl: str) -> str | None:
    match = _PURL_TYPE.match(purl)
    if not match:
        return None
    kind = match.group(1).lower()
    return _PURL_ECOSYSTEMS.get(kind, kind)


def sorted_unique(values: Iterable[str | None]) -> tuple[str, ...]:
    return tuple(sorted({v for v in values if v}))


def walk_dicts(value: Any, key: str) -> Iterator[Mapping[str, Any]]:
    """Depth-first over nested lists under ``key`` (CycloneDX components, CSAF branches)."""
    stack = list(value) if isinstance(value, list) else []
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            yield item
            children = item.get(key)
            if isinstance(children, list):
                stack.extend(children)
