"""The schedule store port: schedules, their cursors, claimed slots and recorded events.

One interface, several databases (SQLite for the CLI and a single service, PostgreSQL
for several service instances). The one guarantee every implementation must give is
that :meth:`ScheduleStore.claim` is atomic: of several instances claiming the same
``(tenant, name, key)`` exactly one gets ``True`` -- a unique key enforced by the
database, not by a check-then-insert in Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from stella.schedules.model import Schedule, format_time
from stella.schedules.planning import Event

__all__ = ["Cursor", "Fire", "ScheduleStore"]


@dataclass(frozen=True, slots=True)
class Cursor:
    """How far a schedule has been considered: instants up to ``at``, events up to id ``event``."""

    at: datetime
    event: int


@dataclass(frozen=True, slots=True)
class Fire:
    """One claimed slot and what became of its run."""

    tenant: str
    name: str
    key: str
    slot: datetime
    fired_at: datetime
    instance: str
    late: bool = False
    missed: int = 0
    status: str = "launched"  # launched | succeeded | failed | cancelled (a service run's)
    result: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "schedule": self.name,
            "tenant": self.tenant,
            "key": self.key,
            "slot": format_time(self.slot),
            "firedAt": format_time(self.fired_at),
            "instance": self.instance,
            "late": self.late,
            "missed": self.missed,
            "status": self.status,
            "result": self.result,
        }


class ScheduleStore(Protocol):
    """Persistence for schedules; every method is one short transaction."""

    def create(self, schedule: Schedule) -> None:
        """Add ``schedule`` with its cursor at its creation. Raises ConflictError if the name is taken."""
        ...

    def get(self, tenant: str, name: str) -> Schedule:
        """Raises NotFoundError (a schedule of another tenant is not found either)."""
        ...

    def schedules(self, tenant: str | None = None) -> list[Schedule]:
        """Schedules of ``tenant`` (all tenants for the scheduler), by tenant and name."""
        ...

    def set_paused(self, tenant: str, name: str, paused: bool, now: datetime) -> Schedule:
        """Pause or resume; resuming moves the cursor to ``now`` so a pause is never caught up."""
        ...

    def delete(self, tenant: str, name: str) -> None: ...

    def cursor(self, tenant: str, name: str) -> Cursor: ...

    def advance(self, tenant: str, name: str, at: datetime) -> None:
        """Move the time cursor forward to ``at`` (never backwards: instances' clocks differ)."""
        ...

    def claim(self, fire: Fire, *, event_cursor: tuple[int, int] | None = None) -> bool:
        """Record ``fire`` unless its key was claimed; True if this call claimed it.

        ``event_cursor=(seen, new)`` also moves the event cursor from ``seen`` to ``new``
        in the same transaction, and the claim fails if another instance moved it first.
        """
        ...

    def finish(self, tenant: str, name: str, key: str, status: str, result: dict[str, Any]) -> None: ...

    def fires(self, tenant: str | None, name: str | None = None, limit: int | None = 50) -> list[Fire]:
        """Newest first; ``tenant=None`` for all tenants (metrics), ``limit=None`` for all."""
        ...

    def fire(self, tenant: str, name: str, key: str) -> Fire:
        """One claimed slot. Raises NotFoundError."""
        ...

    def record_event(self, tenant: str, name: str, at: datetime) -> int:
        """Append an event (``ingest:advisory``, ``webhook:<schedule>``); returns its id."""
        ...

    def events(self, tenant: str, names: Sequence[str], after: int) -> list[Event]:
        """Events of ``tenant`` named in ``names`` (a trailing ``*`` matches a prefix) after id ``after``."""
        ...
