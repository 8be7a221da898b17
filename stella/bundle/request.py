"""What one export run is asked to do, fixed before the pipeline is built.

The request is frozen and picklable: Beam ships it to every worker, and every byte the
bundle gets is a function of it plus the selected ledger records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stella.documents.interface import normalize_time
from stella.errors import InputError, UsageError
from stella.ledger.store import LedgerStore, SegmentInfo
from stella.model import validate_tenant
from stella.profiles import Profile, parse_profile_options
from stella.selectors import Selectors, parse_selectors

if TYPE_CHECKING:
    from stella.bundle.encrypt import EncryptionSpec

__all__ = ["DEFAULT_RECORDS_PER_SHARD", "ExportRequest", "new_request"]

DEFAULT_RECORDS_PER_SHARD = 250_000


@dataclass(frozen=True)
class ExportRequest:
    tenant: str
    profile: Profile
    selectors: Selectors
    ledger_root: str
    segments: tuple[SegmentInfo, ...]
    out_dir: str
    as_of: str | None = None
    records_per_shard: int = DEFAULT_RECORDS_PER_SHARD
    policy_snapshot_id: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    # Recorded in the manifest (so an encrypted export has its own id); applied by the driver.
    encryption: EncryptionSpec | None = None
    # W3C trace-context headers of the run's span, so worker spans join its trace; never in the bundle.
    trace_context: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def manifest_options(self) -> dict[str, Any]:
        """Options that change bundle bytes, recorded so a rerun can be checked."""
        options = {"recordsPerShard": self.records_per_shard, **self.options}
        if self.encryption is not None:
            options["encryption"] = self.encryption.to_manifest()
        return options


def new_request(
    *,
    tenant: str,
    profile: Profile,
    ledger_root: str,
    out_dir: str,
    selectors: Sequence[str] = (),
    options: Sequence[str] = (),
    as_of: str | None = None,
    records_per_shard: int = DEFAULT_RECORDS_PER_SHARD,
    encryption: EncryptionSpec | None = None,
) -> ExportRequest:
    """A request from what a surface received (selector and ``key=value`` option strings).

    Every surface builds its request here, so each checks the same things in the same
    order: the caller's own mistakes first, then whether the tenant has a ledger.

    Raises:
        UsageError: a bad tenant, selector, option, ``as_of`` or ``records_per_shard``.
        NotFoundError: the tenant has no ledger segments.
    """
    tenant = validate_tenant(tenant)
    parsed = parse_selectors(selectors)
    parsed_options = parse_profile_options(options, profile)
    if as_of:
        try:
            as_of = normalize_time(as_of, field="--as-of")
        except InputError as exc:
            raise UsageError(f"--as-of {as_of!r} is not an RFC 3339 time") from exc
    if records_per_shard < 1:
        raise UsageError("--records-per-shard must be at least 1")
    return ExportRequest(
        tenant=tenant,
        profile=profile,
        selectors=parsed,
        ledger_root=ledger_root,
        segments=tuple(LedgerStore(ledger_root).require_segments(tenant)),
        out_dir=out_dir,
        as_of=as_of or None,
        records_per_shard=records_per_shard,
        options=parsed_options,
        encryption=encryption,
    )
