"""The scheduler: on each tick, claim the due slot of every schedule and launch its run.

Everything with a side effect is injected -- the clock, the store, the launcher, the
instance name -- so the tests drive a day of slots with two instances in milliseconds.
Several instances (service replicas, a CLI ``tick`` beside the service) may tick at the
same time: each computes the same slot key and the store lets one claim win
(:meth:`ScheduleStore.claim`), so a slot fires exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from stella.errors import StellaError, UsageError
from stella.schedules.model import EventTrigger, OnceTrigger, Schedule, format_time
from stella.schedules.planning import DEFAULT_GRACE, Due, is_slot, plan_events, plan_time, slot_key
from stella.schedules.store import Fire, ScheduleStore

__all__ = ["Launch", "Launcher", "Scheduler", "event_names", "record_ingest", "record_webhook"]

_MANUAL_ATTEMPTS = 64

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Launch:
    """A claimed slot handed to the launcher: the schedule as stored and the claim."""

    schedule: Schedule
    fire: Fire

    @property
    def lag_seconds(self) -> float:
        """Seconds between the slot and the launch (the schedule-lag metric)."""
        return max(0.0, (self.fire.fired_at - self.fire.slot).total_seconds())


# Runs the export of a launch and returns what to record on the fire (bundle, targets);
# raises StellaError when the run or a publish failed.
Launcher = Callable[[Launch], dict[str, Any]]


def event_names(schedule: Schedule) -> list[str]:
    """The stored event names a schedule listens to (``*`` matches a prefix)."""
    trigger = schedule.trigger
    if not isinstance(trigger, EventTrigger):
        return []
    if trigger.source == "webhook":
        return [f"webhook:{schedule.name}"]
    return ["ingest:*"] if trigger.kind in (None, "any") else [f"ingest:{trigger.kind}"]


def record_ingest(store: ScheduleStore, tenant: str, kinds: Iterable[str], at: datetime) -> list[int]:
    """One event per record kind an ingest added to the ledger (``ingest:advisory``, ...)."""
    return [store.record_event(tenant, f"ingest:{kind}", at) for kind in sorted(set(kinds))]


def record_webhook(store: ScheduleStore, tenant: str, name: str, at: datetime) -> int:
    """A webhook call for schedule ``name``; refused unless that schedule listens to webhooks.

    Raises:
        NotFoundError: no such schedule for the tenant.
        UsageError: the schedule is not webhook-triggered.
    """
    schedule = store.get(tenant, name)
    trigger = schedule.trigger
    if not isinstance(trigger, EventTrigger) or trigger.source != "webhook":
        raise UsageError(
            f"schedule {name!r} is not triggered by webhooks (create it with --on webhook)",
            details={"tenant": tenant, "schedule": name},
        )
    return store.record_event(tenant, f"webhook:{name}", at)


class Scheduler:
    """Claims due slots in a store and launches them."""

    def __init__(
        self,
        store: ScheduleStore,
        *,
        clock: Callable[[], datetime],
        instance: str,
        launcher: Launcher | None = None,
        grace: timedelta = DEFAULT_GRACE,
        observe_lag: Callable[[Launch], None] | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._instance = instance
        self._launcher = launcher
        self._grace = grace
        self._observe_lag = observe_lag

    def claim_due(self) -> list[Launch]:
        """Claim every due slot now (without launching); the cursors move past ``now``."""
        now = self._clock()
        claimed: list[Launch] = []
        for schedule in self._store.schedules():
            if schedule.paused:
                continue
            launch = self._claim_one(schedule, now)
            if launch is not None:
                claimed.append(launch)
        return claimed

    def tick(self) -> list[Launch]:
        """Claim due slots, then launch each claimed one (sequentially, in name order)."""
        launches = self.claim_due()
        for launch in launches:
            self.launch(launch)
        return launches

    def run_now(self, tenant: str, name: str) -> Launch:
        """Fire ``name`` immediately (a manual slot of its own; paused schedules too)."""
        schedule = self._store.get(tenant, name)
        now = self._clock()
        # Every press is a slot of its own: two presses within one second (or one clock reading) are two
        # runs, never "already run". The key keeps the microseconds, and a numbered suffix on a collision.
        base = f"manual:{now.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"
        for attempt in range(1, _MANUAL_ATTEMPTS + 1):
            fire = Fire(tenant, name, base if attempt == 1 else f"{base}#{attempt}", now, now, self._instance)
            if self._store.claim(fire):
                break
        else:
            raise UsageError(f"schedule {name!r} was run {_MANUAL_ATTEMPTS} times at {format_time(now)}")
        launch = Launch(schedule, fire)
        self.launch(launch)
        return launch

    def run_slot(self, tenant: str, name: str, slot: datetime) -> Launch:
        """Fire one given slot of a cron or one-off schedule, for an external orchestrator (Airflow).

        The claim uses the key the embedded scheduler derives for the same slot, so the slot
        fires once whoever launches it, and a late launch is recorded as late.

        Raises:
            UsageError: the schedule is paused or event-triggered, ``slot`` is not one of its
                slots, or the slot was already fired (by any instance).
        """
        schedule = self._store.get(tenant, name)
        details = {"tenant": tenant, "schedule": name, "slot": format_time(slot)}
        if schedule.paused:
            raise UsageError(f"schedule {name!r} is paused: its slots do not fire", details=details)
        trigger = schedule.trigger
        if isinstance(trigger, EventTrigger):
            raise UsageError(f"schedule {name!r} fires on events, not at slots", details=details)
        if not is_slot(trigger, slot):
            raise UsageError(f"{format_time(slot)} is not a slot of schedule {name!r}", details=details)
        now = self._clock()
        key = slot_key("at" if isinstance(trigger, OnceTrigger) else "cron", slot)
        fire = Fire(tenant, name, key, slot, now, self._instance, late=now - slot > self._grace)
        if not self._store.claim(fire):
            fired = self._store.fire(tenant, name, key)
            raise UsageError(
                f"slot {key} of schedule {name!r} was already fired by {fired.instance} ({fired.status})",
                details={**details, "instance": fired.instance, "status": fired.status},
            )
        launch = Launch(schedule, fire)
        self.launch(launch)
        return launch

    def launch(self, launch: Launch) -> dict[str, Any]:
        """Run a claimed launch and record its outcome on the fire; failures are recorded, not raised."""
        fire = launch.fire
        if self._observe_lag is not None:
            self._observe_lag(launch)
        _LOG.info(
            "schedule %s/%s fires slot %s (lag %.1f s)",
            fire.tenant,
            fire.name,
            fire.key,
            launch.lag_seconds,
            extra={"event": "schedule.fire", "schedule": fire.name, "tenant": fire.tenant, "slot": fire.key},
        )
        if self._launcher is None:
            return {}
        try:
            result = self._launcher(launch)
        except StellaError as exc:
            result = {"error": {"code": exc.code, "message": exc.message, "details": exc.details}}
            self._store.finish(fire.tenant, fire.name, fire.key, "failed", result)
            _LOG.warning("schedule %s/%s slot %s failed: %s", fire.tenant, fire.name, fire.key, exc.message)
            return result
        self._store.finish(fire.tenant, fire.name, fire.key, "succeeded", result)
        return result

    def _claim_one(self, schedule: Schedule, now: datetime) -> Launch | None:
        cursor = self._store.cursor(schedule.tenant, schedule.name)
        due: Due | None
        if isinstance(schedule.trigger, EventTrigger):
            events = self._store.events(schedule.tenant, event_names(schedule), cursor.event)
            due = plan_events(schedule.trigger, events, now)
        else:
            due = plan_time(schedule.trigger, cursor.at, now, schedule.catch_up, self._grace)
        launch = None
        if due is not None:
            fire = Fire(
                schedule.tenant,
                schedule.name,
                due.key,
                due.slot,
                now,
                self._instance,
                late=due.late,
                missed=due.missed,
            )
            moved = None if due.event_cursor is None else (cursor.event, due.event_cursor)
            # A lost claim means another instance fired this slot.
            launch = Launch(schedule, fire) if self._store.claim(fire, event_cursor=moved) else None
        if not isinstance(schedule.trigger, EventTrigger):
            # After the claim: a crash in between re-plans the same key, which the store refuses.
            self._store.advance(schedule.tenant, schedule.name, now)
        return launch
