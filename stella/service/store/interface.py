"""The run store port: runs, their events, stored profiles, leases.

One interface, two adapters (SQLite for one machine, PostgreSQL for several). Every
read and write names the tenant, so a query can never return another tenant's row;
callers turn "not found for this tenant" into 404 whatever the reason.

Times are seconds since the epoch (floats) from an injected clock: the store never
reads the wall clock itself, so lease expiry and retention are testable.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from stella.telemetry.metrics import RunStats
from stella.timefmt import rfc3339

__all__ = [
    "TERMINAL",
    "Clock",
    "Event",
    "Lease",
    "Run",
    "RunPage",
    "RunStatus",
    "RunStore",
    "StoredProfile",
    "iso",
]

Clock = Callable[[], float]


class RunStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


TERMINAL = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.EXPIRED})


def iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return rfc3339(datetime.fromtimestamp(seconds, UTC), fraction="milli")


@dataclass(frozen=True)
class Run:
    """One run as stored. ``params`` are frozen at submission (what the worker will run)."""

    id: str
    tenant: str
    status: RunStatus
    profile: str
    params: dict[str, Any]
    created_at: float
    attempts: int = 0
    idempotency_key: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    worker: str | None = None
    lease_until: float | None = None
    cancel_requested: bool = False
    export_id: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    progress: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The API shape: no server paths, no worker internals beyond what operators need."""
        return {
            "runId": self.id,
            "tenant": self.tenant,
            "status": self.status.value,
            "profile": self.profile,
            "storedProfile": self.params.get("storedProfile"),
            "selectors": self.params.get("selectors", []),
            "options": self.params.get("options", {}),
            "createdAt": iso(self.created_at),
            "startedAt": iso(self.started_at),
            "finishedAt": iso(self.finished_at),
            "attempts": self.attempts,
            "cancelRequested": self.cancel_requested,
            "exportId": self.export_id,
            "progress": self.progress,
            "result": self.result or None,
            "error": self.error,
        }


@dataclass(frozen=True)
class RunPage:
    runs: list[Run]
    next_cursor: str | None


@dataclass(frozen=True)
class Event:
    """One SSE event: ``seq`` is its id, increasing per run with no gaps."""

    run_id: str
    seq: int
    type: str
    data: dict[str, Any]
    at: float


@dataclass(frozen=True)
class Lease:
    """A claimed run: the worker owns it until ``until`` unless it heartbeats."""

    run: Run
    worker: str
    until: float


@dataclass(frozen=True)
class StoredProfile:
    """A tenant's named profile at one revision: built-in profile + settings."""

    tenant: str
    name: str
    revision: int
    body: dict[str, Any]
    created_at: float

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "revision": self.revision, **self.body, "createdAt": iso(self.created_at)}


class RunStore(Protocol):
    """What the API and the workers need from storage; both adapters pass one test suite."""

    def migrate(self) -> None:
        """Create or upgrade the schema (idempotent; safe from several processes)."""

    def ping(self) -> None:
        """Raise if the store cannot answer (readiness)."""

    def close(self) -> None:
        """Release connections, bounded in time: a stopping worker must not wait on a dead server."""

    # -- runs (API side) ------------------------------------------------------------------
    def create_run(
        self,
        *,
        tenant: str,
        profile: str,
        params: Mapping[str, Any],
        idempotency_key: str | None,
        max_active: int,
        retry_after: int,
    ) -> tuple[Run, bool]:
        """Queue a run (and its ``queued`` event); return it and whether it is new.

        An ``idempotency_key`` already used by the tenant returns the first run
        (``ConflictError`` if the parameters differ). Raises ``QuotaError`` when the
        tenant already has ``max_active`` queued or running runs.
        """

    def get_run(self, tenant: str, run_id: str) -> Run | None: ...

    def active_runs(self, tenant: str) -> int:
        """Queued plus running runs of the tenant (what the quota counts)."""

    def list_runs(
        self,
        tenant: str,
        *,
        status: RunStatus | None = None,
        profile: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage: ...

    def cancel_run(self, tenant: str, run_id: str) -> Run | None:
        """Queued: cancelled at once. Running: flagged; its worker stops it. Terminal: unchanged."""

    def events_after(self, tenant: str, run_id: str, after: int, limit: int = 500) -> list[Event]: ...

    # -- workers --------------------------------------------------------------------------
    def claim_run(self, worker: str, lease_seconds: float) -> Lease | None:
        """Take the oldest queued run atomically (no two workers get the same run)."""

    def heartbeat(self, run_id: str, worker: str, lease_seconds: float) -> bool | None:
        """Extend the lease. None: the lease is lost; else whether cancellation was requested."""

    def append_event(self, run_id: str, type_: str, data: Mapping[str, Any]) -> int: ...

    def record_progress(self, run_id: str, worker: str, progress: Mapping[str, Any]) -> None: ...

    def finish_run(
        self,
        run_id: str,
        worker: str,
        status: RunStatus,
        *,
        export_id: str | None = None,
        result: Mapping[str, Any] | None = None,
        error: Mapping[str, Any] | None = None,
    ) -> bool:
        """Record the outcome (and its terminal event) if ``worker`` still holds the lease."""

    def reap_expired(self, max_attempts: int) -> list[Run]:
        """Runs whose lease ran out: queued again, or failed after ``max_attempts``."""

    def expire_before(self, finished_before: float) -> list[Run]:
        """Mark succeeded runs finished before the time ``expired``; return them (retention)."""

    def live_export_ids(self, tenant: str) -> set[str]:
        """Export ids still referenced by a run that may publish or serve them."""

    def stats(self) -> RunStats: ...

    # -- stored profiles ------------------------------------------------------------------
    def put_profile(self, tenant: str, name: str, body: Mapping[str, Any], *, create: bool) -> StoredProfile:
        """Create (``ConflictError`` if it exists) or update (``NotFoundError`` if not) a profile."""

    def get_profile(self, tenant: str, name: str, revision: int | None = None) -> StoredProfile | None: ...

    def list_profiles(self, tenant: str) -> Sequence[StoredProfile]: ...
