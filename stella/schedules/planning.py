"""Which slot of a schedule is due at an instant: pure functions of (trigger, cursor, now).

No clock, no store, no I/O here, so a whole day of slots, a downtime and an event
burst are tested by passing instants. The scheduler (``scheduler.py``) reads the clock
and the store and asks these functions what to fire.

Slot keys are the contract that stops several scheduler instances from firing a slot
twice: every instance derives the *same* key for the same slot (the slot's instant, or
the id of the last event of a burst) and the store accepts the first claim of a key
only.

Catch-up policy (docs/schedules.md): a slot fired within ``grace`` of its instant is on
time. Slots that passed while no scheduler ran are *missed*: with ``CatchUp.ONCE`` the
newest missed slot runs once (late), the older ones are only counted; with
``CatchUp.SKIP`` nothing runs late and the schedule waits for its next slot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from croniter import croniter

from stella.schedules.model import CatchUp, CronTrigger, EventTrigger, OnceTrigger, Trigger

__all__ = ["DEFAULT_GRACE", "Due", "Event", "is_slot", "next_slot", "plan_events", "plan_time", "slot_key"]

DEFAULT_GRACE = timedelta(seconds=60)
# Counting missed slots is only for the record: an every-minute cron down for a year
# must not make a tick iterate half a million slots.
_MAX_COUNTED = 1000


@dataclass(frozen=True, slots=True)
class Due:
    """A slot to fire: the instant it stands for and the key that makes the claim unique."""

    slot: datetime
    key: str
    missed: int = 0
    late: bool = False
    event_cursor: int | None = None  # for event triggers: the last event the run covers


@dataclass(frozen=True, slots=True)
class Event:
    """One occurrence (an ingest of a kind for a tenant, a webhook call), in store order."""

    id: int
    tenant: str
    name: str
    at: datetime


def slot_key(kind: str, moment: datetime) -> str:
    """``cron:2026-12-07T02:00:00Z``: the same text on every instance for the same slot."""
    return f"{kind}:{moment.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"


def is_slot(trigger: CronTrigger | OnceTrigger, moment: datetime) -> bool:
    """Whether ``moment`` is one of the trigger's slots (a cron match in its zone, to the second)."""
    if isinstance(trigger, OnceTrigger):
        return moment == trigger.at
    return moment.second == 0 and _previous_slot(trigger, moment) == moment.astimezone(UTC)


def _previous_slot(trigger: CronTrigger, now: datetime) -> datetime:
    """The newest slot at or before ``now`` (croniter's get_prev is strictly before its start)."""
    start = now.astimezone(trigger.zone) + timedelta(seconds=1)
    found: datetime = croniter(trigger.expression, start).get_prev(datetime)
    return found.astimezone(UTC)


def _older_slots(trigger: CronTrigger, newest: datetime, cursor: datetime) -> int:
    iterator = croniter(trigger.expression, newest.astimezone(trigger.zone))
    count = 0
    while count < _MAX_COUNTED:
        earlier: datetime = iterator.get_prev(datetime)
        if earlier.astimezone(UTC) <= cursor:
            break
        count += 1
    return count


def plan_time(
    trigger: CronTrigger | OnceTrigger,
    cursor: datetime,
    now: datetime,
    catch_up: CatchUp,
    grace: timedelta = DEFAULT_GRACE,
) -> Due | None:
    """The slot in ``(cursor, now]`` to fire now, if any, under the catch-up policy.

    The caller advances the cursor to ``now`` afterwards whatever this returns, so a
    slot is considered exactly once per schedule.
    """
    if now <= cursor:
        return None
    if isinstance(trigger, OnceTrigger):
        newest, missed, kind = trigger.at, 0, "at"
        if not cursor < newest <= now:
            return None
    else:
        newest, kind = _previous_slot(trigger, now), "cron"
        if newest <= cursor:
            return None
        missed = _older_slots(trigger, newest, cursor)
    late = now - newest > grace
    if late and catch_up is CatchUp.SKIP:
        return None
    return Due(slot=newest, key=slot_key(kind, newest), missed=missed, late=late)


def next_slot(trigger: Trigger, now: datetime) -> datetime | None:
    """The next instant after ``now`` the trigger fires at; None for events and past one-offs.

    Shown beside each schedule (API, CLI, Console) so an operator sees when it runs next.
    """
    if isinstance(trigger, OnceTrigger):
        return trigger.at if trigger.at > now else None
    if isinstance(trigger, CronTrigger):
        found: datetime = croniter(trigger.expression, now.astimezone(trigger.zone)).get_next(datetime)
        return found.astimezone(UTC)
    return None


def plan_events(trigger: EventTrigger, events: Sequence[Event], now: datetime) -> Due | None:
    """One run for the burst of ``events`` (those after the schedule's event cursor), once it settled.

    A burst is ready when no event came for ``quiet_seconds`` or the first one is
    ``max_delay_seconds`` old (a steady trickle must not postpone the export forever).
    The run's slot is the instant it became ready, so lag is measured from there.
    """
    if not events:
        return None
    first, last = events[0], events[-1]
    ready_at = min(
        last.at + timedelta(seconds=trigger.quiet_seconds),
        first.at + timedelta(seconds=trigger.max_delay_seconds),
    )
    if now < ready_at:
        return None
    return Due(slot=ready_at, key=f"event:{last.id}", missed=len(events) - 1, event_cursor=last.id)
