"""The schedule store (:class:`stella.schedules.store.ScheduleStore`) in the run store's database.

Schedules live beside the runs they launch, in the same SQLite file or PostgreSQL
database, through the run store's own transactions (``?`` placeholders, rewritten for
PostgreSQL by its adapter). The CLI (``stella export schedule``) and every service
replica open the same store, so a slot claimed by one is claimed for all: the claim is
an ``INSERT … ON CONFLICT DO NOTHING`` against the primary key
``(tenant, name, key)``, which both databases make atomic.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from stella.errors import ConflictError, NotFoundError, UsageError
from stella.schedules.model import Schedule, format_time
from stella.schedules.planning import Event, next_slot
from stella.schedules.store import Cursor as ScheduleCursor
from stella.schedules.store import Fire
from stella.service.store.interface import RunStore
from stella.service.store.sql import Cursor, SqlRunStore
from stella.targets.distribute import failed
from stella.targets.interface import TargetResult
from stella.telemetry.metrics import DistributionStats

__all__ = ["SCHEDULE_TABLES", "SqlScheduleStore", "mirror_run", "open_schedule_store", "schedule_store_for"]

SCHEDULE_TABLES: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS export_schedules (
        tenant TEXT NOT NULL,
        name TEXT NOT NULL,
        body TEXT NOT NULL,
        paused INTEGER NOT NULL DEFAULT 0,
        cursor_at TEXT NOT NULL,
        event_cursor BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (tenant, name)
    )""",
    """CREATE TABLE IF NOT EXISTS export_schedule_fires (
        tenant TEXT NOT NULL,
        name TEXT NOT NULL,
        key TEXT NOT NULL,
        slot TEXT NOT NULL,
        fired_at TEXT NOT NULL,
        instance TEXT NOT NULL,
        late INTEGER NOT NULL,
        missed INTEGER NOT NULL,
        status TEXT NOT NULL,
        result TEXT NOT NULL,
        PRIMARY KEY (tenant, name, key)
    )""",
    """CREATE TABLE IF NOT EXISTS export_events (
        id BIGINT PRIMARY KEY,
        tenant TEXT NOT NULL,
        name TEXT NOT NULL,
        at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS export_events_by_tenant ON export_events (tenant, id)",
)
_FIRE_COLUMNS = "tenant, name, key, slot, fired_at, instance, late, missed, status, result"
_OUTCOMES = {"succeeded": "succeeded", "expired": "succeeded", "failed": "failed", "cancelled": "cancelled"}
_EVENTS_LOCK = "stella:export_events"  # serialises event ids (MAX + 1) across writers


def _text(moment: datetime) -> str:
    """RFC 3339 UTC with microseconds: sorts as text, compares the same in both databases."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def mirror_run(fire: Fire, run: dict[str, Any] | None) -> Fire:
    """A slot the service queued as a run, showing that run's state (final once it ends).

    The status is the run's outcome once it ended (``succeeded``, ``failed``,
    ``cancelled``; a run whose bundle later expired still succeeded, its ``runStatus``
    says ``expired``), ``launched`` while it is queued or running. A run that succeeded but
    whose targets did not all publish makes the slot ``failed`` with the first target's
    error -- what a slot launched by ``stella export schedule tick`` records for the same
    outcome, so every surface shows one state for one outcome. An outcome never changes
    once reached, which keeps the fired-slots counter monotonic.
    """
    if run is None:
        return fire  # launched by the CLI (its own result), or the run was pruned
    result: dict[str, Any] = {"runId": run["id"], "runStatus": run["status"]}
    if run["export_id"]:
        result["exportId"] = run["export_id"]
    published = json.loads(run["result"] or "{}")
    error = json.loads(run["error"]) if run["error"] else None
    targets = published.get("targets") or []
    if targets:
        result["targets"] = targets
    status = _OUTCOMES.get(run["status"], "launched")
    refused = failed([TargetResult(**target) for target in targets]) if status == "succeeded" else None
    if error is None and refused is not None:
        status, error = "failed", {"code": refused.code, "message": refused.message, "details": {}}
    if error is not None:
        result["error"] = error
    return replace(fire, status=status, result=result)


def _fire(row: dict[str, Any]) -> Fire:
    return Fire(
        tenant=row["tenant"],
        name=row["name"],
        key=row["key"],
        slot=_time(row["slot"]),
        fired_at=_time(row["fired_at"]),
        instance=row["instance"],
        late=bool(row["late"]),
        missed=int(row["missed"]),
        status=row["status"],
        result=json.loads(row["result"]),
    )


class _Lost(Exception):
    """Another instance claimed the slot first (rolls the claim's transaction back)."""


class SqlScheduleStore:
    """Schedules, fired slots and events over a :class:`SqlRunStore`'s database."""

    def __init__(self, runs: SqlRunStore) -> None:
        self._runs = runs
        with runs._tx(write=True) as cur:
            runs._migration_lock(cur)
            for statement in SCHEDULE_TABLES:
                cur.execute(statement)

    def close(self) -> None:
        """Release the database connections (a PostgreSQL pool; SQLite holds none between calls)."""
        close = getattr(self._runs, "close", None)
        if close is not None:
            close()

    def _row(self, cur: Cursor, tenant: str, name: str) -> dict[str, Any]:
        cur.execute(
            "SELECT body, paused, cursor_at, event_cursor FROM export_schedules WHERE tenant=? AND name=?",
            (tenant, name),
        )
        row = cur.one()
        if row is None:
            raise NotFoundError(
                f"no schedule {name!r} for tenant {tenant}", details={"tenant": tenant, "schedule": name}
            )
        return row

    @staticmethod
    def _schedule(row: dict[str, Any]) -> Schedule:
        value = json.loads(row["body"])
        value["paused"] = bool(row["paused"])
        return Schedule.from_json(value)

    def create(self, schedule: Schedule) -> None:
        with self._runs._tx(write=True) as cur:
            self._runs._tenant_lock(cur, schedule.tenant)
            cur.execute(
                "SELECT 1 AS taken FROM export_schedules WHERE tenant=? AND name=?",
                (schedule.tenant, schedule.name),
            )
            if cur.one() is not None:
                raise ConflictError(
                    f"schedule {schedule.name!r} already exists for tenant {schedule.tenant}",
                    details={"tenant": schedule.tenant, "schedule": schedule.name},
                )
            cur.execute("SELECT COALESCE(MAX(id), 0) AS last FROM export_events")
            last = (cur.one() or {}).get("last", 0)
            cur.execute(
                "INSERT INTO export_schedules (tenant, name, body, paused, cursor_at, event_cursor) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    schedule.tenant,
                    schedule.name,
                    json.dumps(schedule.to_json(), sort_keys=True),
                    int(schedule.paused),
                    _text(schedule.created_at),
                    int(last),
                ),
            )

    def get(self, tenant: str, name: str) -> Schedule:
        with self._runs._tx() as cur:
            return self._schedule(self._row(cur, tenant, name))

    def schedules(self, tenant: str | None = None) -> list[Schedule]:
        with self._runs._tx() as cur:
            if tenant is None:
                cur.execute("SELECT body, paused FROM export_schedules ORDER BY tenant, name")
            else:
                cur.execute(
                    "SELECT body, paused FROM export_schedules WHERE tenant=? ORDER BY name", (tenant,)
                )
            return [self._schedule(row) for row in cur.all()]

    def set_paused(self, tenant: str, name: str, paused: bool, now: datetime) -> Schedule:
        with self._runs._tx(write=True) as cur:
            row = self._row(cur, tenant, name)
            if paused:
                cur.execute("UPDATE export_schedules SET paused=1 WHERE tenant=? AND name=?", (tenant, name))
            else:
                cur.execute("SELECT COALESCE(MAX(id), 0) AS last FROM export_events")
                last = (cur.one() or {}).get("last", 0)
                cur.execute(
                    "UPDATE export_schedules SET paused=0, event_cursor=? WHERE tenant=? AND name=?",
                    (int(last), tenant, name),
                )
                cur.execute(
                    "UPDATE export_schedules SET cursor_at=? WHERE tenant=? AND name=? AND cursor_at < ?",
                    (_text(now), tenant, name, _text(now)),
                )
        return self._schedule({**row, "paused": int(paused)})

    def delete(self, tenant: str, name: str) -> None:
        with self._runs._tx(write=True) as cur:
            self._row(cur, tenant, name)
            cur.execute("DELETE FROM export_schedules WHERE tenant=? AND name=?", (tenant, name))

    def cursor(self, tenant: str, name: str) -> ScheduleCursor:
        with self._runs._tx() as cur:
            row = self._row(cur, tenant, name)
        return ScheduleCursor(at=_time(row["cursor_at"]), event=int(row["event_cursor"]))

    def advance(self, tenant: str, name: str, at: datetime) -> None:
        with self._runs._tx(write=True) as cur:
            cur.execute(
                "UPDATE export_schedules SET cursor_at=? WHERE tenant=? AND name=? AND cursor_at < ?",
                (_text(at), tenant, name, _text(at)),
            )

    def claim(self, fire: Fire, *, event_cursor: tuple[int, int] | None = None) -> bool:
        try:
            with self._runs._tx(write=True) as cur:
                if event_cursor is not None:
                    seen, new = event_cursor
                    cur.execute(
                        "UPDATE export_schedules SET event_cursor=? WHERE tenant=? AND name=? AND event_cursor=?",
                        (new, fire.tenant, fire.name, seen),
                    )
                    if cur.rowcount != 1:
                        raise _Lost
                cur.execute(
                    f"INSERT INTO export_schedule_fires ({_FIRE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    (
                        fire.tenant,
                        fire.name,
                        fire.key,
                        _text(fire.slot),
                        _text(fire.fired_at),
                        fire.instance,
                        int(fire.late),
                        fire.missed,
                        fire.status,
                        json.dumps(fire.result, sort_keys=True),
                    ),
                )
                if cur.rowcount != 1:
                    raise _Lost
        except _Lost:
            return False  # rolled back: another instance fired this slot
        return True

    def finish(self, tenant: str, name: str, key: str, status: str, result: dict[str, Any]) -> None:
        with self._runs._tx(write=True) as cur:
            cur.execute(
                "UPDATE export_schedule_fires SET status=?, result=? WHERE tenant=? AND name=? AND key=?",
                (status, json.dumps(result, sort_keys=True, default=str), tenant, name, key),
            )

    def fires(self, tenant: str | None, name: str | None = None, limit: int | None = 50) -> list[Fire]:
        where, params = [], []
        if tenant is not None:
            where.append("tenant=?")
            params.append(tenant)
        if name is not None:
            where.append("name=?")
            params.append(name)
        sql = f"SELECT {_FIRE_COLUMNS} FROM export_schedule_fires"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY fired_at DESC, key DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._runs._tx() as cur:
            cur.execute(sql, params)
            return [_fire(row) for row in cur.all()]

    def settled(self, fires: Sequence[Fire]) -> list[Fire]:
        """``fires`` with each service-launched slot showing its run's state (see :func:`mirror_run`).

        Read at query time from the runs table, so the slot can never disagree with its
        run whoever finished, cancelled, reaped or expired it.
        """
        ids = sorted({f.result["runId"] for f in fires if isinstance(f.result.get("runId"), str)})
        runs: dict[tuple[str, str], dict[str, Any]] = {}
        if ids:
            marks = ", ".join("?" for _ in ids)
            with self._runs._tx() as cur:
                cur.execute(
                    f"SELECT id, tenant, status, export_id, result, error FROM runs WHERE id IN ({marks})",
                    ids,
                )
                runs = {(row["tenant"], row["id"]): row for row in cur.all()}
        return [mirror_run(fire, runs.get((fire.tenant, str(fire.result.get("runId"))))) for fire in fires]

    def overview(self, schedule: Schedule, now: datetime, limit: int = 10) -> dict[str, Any]:
        """A schedule as every surface shows it (API, CLI, Console): its settings, next slot,
        and latest fired slots with their runs' states."""
        upcoming = next_slot(schedule.trigger, now)
        fires = self.settled(self.fires(schedule.tenant, schedule.name, limit=limit))
        return {
            **schedule.to_json(),
            "nextSlot": None if upcoming is None else format_time(upcoming),
            "fires": [fire.to_json() for fire in fires],
        }

    def fire(self, tenant: str, name: str, key: str) -> Fire:
        with self._runs._tx() as cur:
            cur.execute(
                f"SELECT {_FIRE_COLUMNS} FROM export_schedule_fires WHERE tenant=? AND name=? AND key=?",
                (tenant, name, key),
            )
            row = cur.one()
        if row is None:
            raise NotFoundError(f"schedule {name!r} has no run for slot {key}")
        return _fire(row)

    def record_event(self, tenant: str, name: str, at: datetime) -> int:
        with self._runs._tx(write=True) as cur:
            self._runs._tenant_lock(cur, _EVENTS_LOCK)
            cur.execute("SELECT COALESCE(MAX(id), 0) + 1 AS next FROM export_events")
            event_id = int((cur.one() or {})["next"])
            cur.execute(
                "INSERT INTO export_events (id, tenant, name, at) VALUES (?, ?, ?, ?)",
                (event_id, tenant, name, _text(at)),
            )
        return event_id

    def distribution_stats(self) -> DistributionStats:
        """Schedule lag and fires from the fired slots; publish attempts and failures from every
        recorded target result (slots launched by the CLI, runs executed by service workers)."""
        stats = DistributionStats()
        for fire in self.settled(self.fires(None, limit=None)):
            stats.lags.setdefault(fire.tenant, []).append(_lag(fire))
            if fire.status != "launched":  # counted once it has its outcome: a counter never goes down
                stats.fires[(fire.tenant, fire.status)] = stats.fires.get((fire.tenant, fire.status), 0) + 1
            if "runId" not in fire.result:  # a service run's targets are counted from its run below
                stats.add_targets(fire.result.get("targets") or [])
        with self._runs._tx() as cur:
            cur.execute("SELECT result FROM runs WHERE result LIKE ?", ('%"targets"%',))
            rows = cur.all()
        for row in rows:
            stats.add_targets(json.loads(row["result"]).get("targets") or [])
        return stats

    def events(self, tenant: str, names: Sequence[str], after: int) -> list[Event]:
        if not names:
            return []
        clauses = " OR ".join("name LIKE ?" if n.endswith("*") else "name = ?" for n in names)
        patterns = [n[:-1] + "%" if n.endswith("*") else n for n in names]
        with self._runs._tx() as cur:
            cur.execute(
                f"SELECT id, tenant, name, at FROM export_events WHERE tenant=? AND id>? AND ({clauses}) "
                "ORDER BY id",
                (tenant, after, *patterns),
            )
            rows = cur.all()
        return [Event(id=int(r["id"]), tenant=r["tenant"], name=r["name"], at=_time(r["at"])) for r in rows]


def _lag(fire: Fire) -> float:
    return max(0.0, (fire.fired_at - fire.slot).total_seconds())


def schedule_store_for(runs: RunStore) -> SqlScheduleStore:
    """The schedule store sharing ``runs``' database (every run-store adapter is SQL)."""
    if not isinstance(runs, SqlRunStore):
        raise UsageError(f"{type(runs).__name__} keeps no SQL database for schedules")
    return SqlScheduleStore(runs)


def open_schedule_store(url: str) -> SqlScheduleStore:
    """The schedule store in the database of the run store at ``url`` (``sqlite:///…``, ``postgresql://…``)."""
    from stella.service.store import open_store

    return schedule_store_for(open_store(url))
