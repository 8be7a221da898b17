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
from stella.policy.snapshot import SnapshotStore, parse_snapshot_id
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
    # The pinned snapshot's canonical bytes, read from the tenant's store when the request
    # is made: the pipeline then never reads the store, on whatever worker it runs.
    policy_snapshot: bytes | None = None
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
        UsageError: a bad tenant, selector, option, ``as_of`` or ``records_per_shard``
            (``ERR_EXPORT_POLICY_SNAPSHOT_REQUIRED`` when a profile that pins a policy has none).
        NotFoundError: the tenant has no ledger segments, or no snapshot with the pinned id
            (``ERR_EXPORT_POLICY_SNAPSHOT_NOT_FOUND``).
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
    pins_policy = any(option.key == "policy-snapshot" for option in profile.options)
    snapshot_id = parse_snapshot_id(parsed_options.get("policySnapshot")) if pins_policy else None
    segments = tuple(LedgerStore(ledger_root).require_segments(tenant))
    snapshot = None if snapshot_id is None else SnapshotStore(ledger_root).load(tenant, snapshot_id)
    return ExportRequest(
        tenant=tenant,
        profile=profile,
        selectors=parsed,
        ledger_root=ledger_root,
        segments=segments,
        out_dir=out_dir,
        as_of=as_of or None,
        records_per_shard=records_per_shard,
        policy_snapshot_id=None if snapshot is None else snapshot.id,
        policy_snapshot=None if snapshot is None else snapshot.canonical,
        options=parsed_options,
        encryption=encryption,
    )
