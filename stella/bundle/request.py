"""What one export run is asked to do, fixed before the pipeline is built.

The request is frozen and picklable: Beam ships it to every worker, and every byte the
bundle gets is a function of it plus the selected ledger records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stella.ledger.store import SegmentInfo
from stella.profiles import Profile
from stella.selectors import Selectors

if TYPE_CHECKING:
    from stella.bundle.encrypt import EncryptionSpec

__all__ = ["DEFAULT_RECORDS_PER_SHARD", "ExportRequest"]

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
