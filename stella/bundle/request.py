"""What one export run is asked to do, fixed before the pipeline is built.

The request is frozen and picklable: Beam ships it to every worker, and every byte the
bundle gets is a function of it plus the selected ledger records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stella.errors import InputError, UsageError
from stella.ledger.store import LedgerStore, SegmentInfo
from stella.profiles import Profile, get_profile, parse_profile_options
from stella.selectors import Selectors, parse_selectors

if TYPE_CHECKING:
    from stella.bundle.encrypt import EncryptionSpec

__all__ = ["DEFAULT_RECORDS_PER_SHARD", "ExportRequest", "plan_request"]

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

    def manifest_options(self) -> dict[str, Any]:
        """Options that change bundle bytes, recorded so a rerun can be checked."""
        options = {"recordsPerShard": self.records_per_shard, **self.options}
        if self.encryption is not None:
            options["encryption"] = self.encryption.to_manifest()
        return options


def plan_request(
    *,
    tenant: str,
    profile: str,
    selectors: list[str],
    options: list[str],
    ledger_root: str,
    out_dir: str,
    as_of: str | None = None,
    records_per_shard: int = DEFAULT_RECORDS_PER_SHARD,
    encryption: EncryptionSpec | None = None,
) -> ExportRequest:
    """Every surface's one way from user input to a frozen request (the CLI and the service).

    Checks run cheapest first -- profile, selectors, options, time, shard size -- and the
    ledger is listed last, so a typo never waits for storage.

    Raises:
        UsageError: unknown profile, bad selector, option, ``as_of`` or shard size.
        ProfileUnavailableError: the profile is planned, not built.
        NotFoundError: the tenant has no ledger segments.
    """
    from stella.documents.interface import normalize_time

    chosen = get_profile(profile)
    parsed = parse_selectors(selectors)
    parsed_options = parse_profile_options(options, chosen)
    normalized = None
    if as_of:
        try:
            normalized = normalize_time(as_of, field="asOf")
        except InputError as exc:
            raise UsageError(f"as-of {as_of!r} is not an RFC 3339 time", details={"asOf": as_of}) from exc
    if records_per_shard < 1:
        raise UsageError("records per shard must be at least 1")
    segments = tuple(LedgerStore(ledger_root).require_segments(tenant))
    return ExportRequest(
        tenant=tenant,
        profile=chosen,
        selectors=parsed,
        ledger_root=ledger_root,
        segments=segments,
        out_dir=out_dir,
        as_of=normalized,
        records_per_shard=records_per_shard,
        options=parsed_options,
        encryption=encryption,
    )
