"""Typed records that cross module and pipeline boundaries.

Untrusted documents become these at the ingestion boundary; past it, no code handles
loose dicts except the raw document itself, which is carried as its canonical JSON
bytes and never rewritten (the Aggregation-Only Contract).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from stella.timefmt import is_after, is_placeholder

__all__ = [
    "TENANT_PATTERN",
    "DocFormat",
    "Kind",
    "LedgerRecord",
    "Linkset",
    "validate_tenant",
]

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
        out: dict[str, object] = {
            "aliases": list(self.aliases),
            "ecosystems": list(self.ecosystems),
            "packages": list(self.packages),
            "purls": list(self.purls),
            "vexProducts": list(self.vex_products),
        }
        if self.sbom_subject is not None:
            out["sbomSubject"] = self.sbom_subject
        if self.withdrawn is not None:
            out["withdrawn"] = self.withdrawn
        return out


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
        return b"\x00".join(
            (
                self.kind.value.encode(),
                self.upstream_id.encode("utf-8"),
                (self.modified or "").encode(),
                self.digest.encode(),
            )
        )

    @property
    def high_water(self) -> str:
        """The time this record contributes to a bundle's ``generatedAt``.

        Its ``modified`` time, but never later than when it was received: upstream feeds
        carry typos such as a 2027 ``modified`` in 2026, and one such record would
        otherwise date every bundle in the future and, through the trust root's rollback
        floor, make every honest later bundle look like a rollback. A placeholder
        ``modified`` (Go's zero time, stored by ledgers older than that check) is unknown.
        """
        if self.modified is None or self.modified_after_ingestion or is_placeholder(self.modified):
            return self.ingested_at
        return self.modified

    @property
    def modified_after_ingestion(self) -> bool:
        """``modified`` claims a time after the document was received (an upstream error)."""
        return self.modified is not None and is_after(self.modified, self.ingested_at)
