"""Typed records that cross module and pipeline boundaries.

Untrusted documents become these at the ingestion boundary; past it, no code handles
loose dicts except the raw document itself, which is carried as its canonical JSON
bytes and never rewritten (the Aggregation-Only Contract).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stella.timefmt import PLACEHOLDER_BEFORE, is_after

__all__ = [
    "TENANT_PATTERN",
    "DocFormat",
    "Kind",
    "LedgerRecord",
    "LedgerRow",
    "Linkset",
    "high_water_of",
    "latest_high_water",
    "linkset_of_row",
    "record_key",
    "validate_tenant",
]

LedgerRow = Mapping[str, Any]
"""A ledger record as its segment stores it: the Avro row (``schemas/ledger-record.avsc`` field
names, ``kind`` and ``format`` as their string values), straight from the segment reader.

The one exception to "typed records past the boundary": the json:raw and mirror
read paths (full and delta) build their lines from rows, because building a :class:`LedgerRecord` per
row cost more than writing its line. Segments are the ledger's own, already-validated
storage, so a row is trusted data, not untrusted input.
"""

TENANT_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")


def validate_tenant(tenant: str) -> str:
    """Tenants name folders, URLs and manifest fields, so only a lowercase slug is allowed."""
    from stella.errors import UsageError

    if not isinstance(tenant, str) or not TENANT_PATTERN.fullmatch(tenant):
        raise UsageError(
            f"invalid tenant {tenant!r}: use 2-63 characters of a-z, 0-9 and '-', starting with a letter or digit",
            details={"tenant": tenant, "pattern": TENANT_PATTERN.pattern},
        )
    return tenant


class Kind(enum.StrEnum):
    """What a ledger record is evidence of. Values are the manifest spellings."""

    ADVISORY = "advisory"
    SBOM = "sbom"
    VEX = "vex"
    FINDING = "finding"

    @property
    def plural(self) -> str:
        return {"advisory": "advisories", "sbom": "sboms", "vex": "vex", "finding": "findings"}[self.value]


class DocFormat(enum.StrEnum):
    """Upstream document formats recognised from content."""

    OSV = "osv"
    CYCLONEDX = "cyclonedx"
    SPDX = "spdx"
    OPENVEX = "openvex"
    CYCLONEDX_VEX = "cyclonedx-vex"
    CSAF = "csaf"


@dataclass(frozen=True, slots=True)
class Linkset:
    """Fields selectors match on, extracted (never inferred) from the document.

    Everything here is derived, so exports put it in its own ``linkset`` subtree and
    never inside the raw document.
    """

    ecosystems: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    purls: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    vex_products: tuple[str, ...] = ()
    sbom_subject: str | None = None
    withdrawn: str | None = None

    def to_json(self) -> dict[str, object]:
        return _linkset_json(
            list(self.aliases),
            list(self.ecosystems),
            list(self.packages),
            list(self.purls),
            list(self.vex_products),
            self.sbom_subject,
            self.withdrawn,
        )


def _linkset_json(
    aliases: list[str],
    ecosystems: list[str],
    packages: list[str],
    purls: list[str],
    vex_products: list[str],
    sbom_subject: str | None,
    withdrawn: str | None,
) -> dict[str, object]:
    """The exported ``linkset`` object, keys in RFC 8785 order (optional ones only when set)."""
    out: dict[str, object] = {
        "aliases": aliases,
        "ecosystems": ecosystems,
        "packages": packages,
        "purls": purls,
    }
    if sbom_subject is not None:
        out["sbomSubject"] = sbom_subject
    out["vexProducts"] = vex_products
    if withdrawn is not None:
        out["withdrawn"] = withdrawn
    return out


def linkset_of_row(row: LedgerRow) -> dict[str, object]:
    """:meth:`Linkset.to_json` of a row's linkset, without building the Linkset."""
    return _linkset_json(
        row["aliases"],
        row["ecosystems"],
        row["packages"],
        row["purls"],
        row["vex_products"],
        row["sbom_subject"],
        row["withdrawn"],
    )


def record_key(kind: str, upstream_id: str, modified: str | None, digest: str) -> bytes:
    """The stable record key every profile sorts by (see :attr:`LedgerRecord.sort_key`).

    One encode of the joined text: UTF-8 is concatenative, so this is the same bytes as
    encoding and joining each part.
    """
    return "\x00".join((kind, upstream_id, modified or "", digest)).encode("utf-8")


def latest_high_water(times: Iterable[tuple[str | None, str]]) -> str | None:
    """The latest :func:`high_water_of` of (modified, ingested_at) pairs; the first of equal ones.

    A batch's summary: one parse per record (a batch shares few ingestion times, each
    parsed once), not the four that computing each high-water mark and then comparing
    them took.
    """
    parse = datetime.fromisoformat
    ingested: dict[str, datetime] = {}
    best: str | None = None
    best_at: datetime | None = None
    for modified, ingested_at in times:
        at = ingested.get(ingested_at)
        if at is None:
            at = ingested[ingested_at] = parse(ingested_at)
        moment = ingested_at
        if modified is not None:
            modified_at = parse(modified)
            if PLACEHOLDER_BEFORE <= modified_at <= at:
                moment, at = modified, modified_at
        if best_at is None or at > best_at:
            best, best_at = moment, at
    return best


def high_water_of(modified: str | None, ingested_at: str) -> str:
    """The time a record contributes to a bundle's ``generatedAt`` (see :attr:`LedgerRecord.high_water`)."""
    return latest_high_water(((modified, ingested_at),)) or ingested_at


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    """One upstream document as stored in the ledger (one Avro row).

    ``document`` holds the RFC 8785 bytes of the document as received (parsed and
    re-serialised canonically, same JSON value); ``digest`` is over the bytes as
    received, so provenance names exactly what arrived.
    """

    tenant: str
    kind: Kind
    format: DocFormat
    upstream_id: str
    modified: str | None
    revision: str | None
    source: str
    ingested_at: str
    digest: str
    document: bytes
    linkset: Linkset = field(default_factory=Linkset)

    @property
    def sort_key(self) -> bytes:
        """The stable record key every profile sorts by; unique within a tenant."""
        return record_key(self.kind.value, self.upstream_id, self.modified, self.digest)

    @property
    def high_water(self) -> str:
        """The time this record contributes to a bundle's ``generatedAt``.

        Its ``modified`` time, but never later than when it was received: upstream feeds
        carry typos such as a 2027 ``modified`` in 2026, and one such record would
        otherwise date every bundle in the future and, through the trust root's rollback
        floor, make every honest later bundle look like a rollback. A placeholder
        ``modified`` (Go's zero time, stored by ledgers older than that check) is unknown.
        """
        return high_water_of(self.modified, self.ingested_at)

    @property
    def modified_after_ingestion(self) -> bool:
        """``modified`` claims a time after the document was received (an upstream error)."""
        return self.modified is not None and is_after(self.modified, self.ingested_at)
