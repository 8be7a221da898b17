"""The schedule store on SQLite: one file shared by every scheduler on this machine.

Each method opens its own short transaction (``BEGIN IMMEDIATE`` where it writes), so
two processes -- two CLI ticks, or a CLI tick beside the service -- serialise on the
file lock and the ``PRIMARY KEY (tenant, name, key)`` of ``fires`` decides which claim
wins. Times are stored as RFC 3339 UTC text with microseconds, which sorts correctly.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stella.errors import ConflictError, NotFoundError
from stella.schedules.model import Schedule
from stella.schedules.planning import Event
from stella.schedules.store import Cursor, Fire

__all__ = ["SqliteScheduleStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS export_schedules (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0,
    cursor_at TEXT NOT NULL,
    event_cursor INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, name)
);
CREATE TABLE IF NOT EXISTS export_schedule_fires (
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
);
CREATE TABLE IF NOT EXISTS export_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS export_events_by_tenant ON export_events (tenant, id);
"""


class _Lost(Exception):
    """Another instance claimed the slot first (rolls the claim's transaction back)."""


_FIRE_COLUMNS = "tenant, name, key, slot, fired_at, instance, late, missed, status, result"


def _fire(row: tuple[Any, ...]) -> Fire:
    return Fire(
        tenant=row[0],
        name=row[1],
        key=row[2],
        slot=_time(row[3]),
        fired_at=_time(row[4]),
        instance=row[5],
        late=bool(row[6]),
        missed=row[7],
        status=row[8],
        result=json.loads(row[9]),
    )


def _text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


class SqliteScheduleStore:
    """:class:`stella.schedules.store.ScheduleStore` over one SQLite file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection per store object, kept open: closing the last connection of a
        # WAL database checkpoints it (an fsync per call). A lock serialises this
        # object's threads; other objects and processes serialise on SQLite's file lock.
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        # WAL lets readers run beside the one writer; NORMAL sync survives process
        # crashes (a power cut may lose the last tick, which then replans the same keys).
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._transaction(write=True) as db:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _row(self, db: sqlite3.Connection, tenant: str, name: str) -> tuple[str, int, str, int]:
        row = db.execute(
            "SELECT body, paused, cursor_at, event_cursor FROM export_schedules WHERE tenant=? AND name=?",
            (tenant, name),
        ).fetchone()
        if row is None:
            raise NotFoundError(
                f"no schedule {name!r} for tenant {tenant}", details={"tenant": tenant, "schedule": name}
            )
        return row  # type: ignore[no-any-return]

    @staticmethod
    def _schedule(body: str, paused: int) -> Schedule:
        value = json.loads(body)
        value["paused"] = bool(paused)
        return Schedule.from_json(value)

    def create(self, schedule: Schedule) -> None:
        with self._transaction(write=True) as db:
            try:
                db.execute(
                    "INSERT INTO export_schedules (tenant, name, body, paused, cursor_at, event_cursor) "
                    "VALUES (?, ?, ?, ?, ?, (SELECT COALESCE(MAX(id), 0) FROM export_events))",
                    (
                        schedule.tenant,
                        schedule.name,
                        json.dumps(schedule.to_json(), sort_keys=True),
                        int(schedule.paused),
                        _text(schedule.created_at),
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise ConflictError(
                    f"schedule {schedule.name!r} already exists for tenant {schedule.tenant}",
                    details={"tenant": schedule.tenant, "schedule": schedule.name},
                ) from exc

    def get(self, tenant: str, name: str) -> Schedule:
        with self._transaction() as db:
            body, paused, _, _ = self._row(db, tenant, name)
        return self._schedule(body, paused)

    def schedules(self, tenant: str | None = None) -> list[Schedule]:
        with self._transaction() as db:
            rows = db.execute(
                "SELECT body, paused FROM export_schedules WHERE ? IS NULL OR tenant=? ORDER BY tenant, name",
                (tenant, tenant),
            ).fetchall()
        return [self._schedule(body, paused) for body, paused in rows]

    def set_paused(self, tenant: str, name: str, paused: bool, now: datetime) -> Schedule:
        with self._transaction(write=True) as db:
            body, _, _, _ = self._row(db, tenant, name)
            if paused:
                db.execute("UPDATE export_schedules SET paused=1 WHERE tenant=? AND name=?", (tenant, name))
            else:
                db.execute(
                    "UPDATE export_schedules SET paused=0, cursor_at=MAX(cursor_at, ?), "
                    "event_cursor=(SELECT COALESCE(MAX(id), 0) FROM export_events) WHERE tenant=? AND name=?",
                    (_text(now), tenant, name),
                )
        return self._schedule(body, int(paused))

    def delete(self, tenant: str, name: str) -> None:
        with self._transaction(write=True) as db:
            self._row(db, tenant, name)
            db.execute("DELETE FROM export_schedules WHERE tenant=? AND name=?", (tenant, name))

    def cursor(self, tenant: str, name: str) -> Cursor:
        with self._transaction() as db:
            _, _, at, event = self._row(db, tenant, name)
        return Cursor(at=_time(at), event=event)

    def advance(self, tenant: str, name: str, at: datetime) -> None:
        with self._transaction(write=True) as db:
            db.execute(
                "UPDATE export_schedules SET cursor_at=? WHERE tenant=? AND name=? AND cursor_at < ?",
                (_text(at), tenant, name, _text(at)),
            )

    def claim(self, fire: Fire, *, event_cursor: tuple[int, int] | None = None) -> bool:
        try:
            with self._transaction(write=True) as db:
                if event_cursor is not None:
                    seen, new = event_cursor
                    moved = db.execute(
                        "UPDATE export_schedules SET event_cursor=? "
                        "WHERE tenant=? AND name=? AND event_cursor=?",
                        (new, fire.tenant, fire.name, seen),
                    ).rowcount
                    if moved != 1:
                        raise _Lost
                inserted = db.execute(
                    "INSERT OR IGNORE INTO export_schedule_fires VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                ).rowcount
                if inserted != 1:
                    raise _Lost
        except _Lost:
            return False  # the transaction rolled back: another instance fired this slot
        return True

    def finish(self, tenant: str, name: str, key: str, status: str, result: dict[str, Any]) -> None:
        with self._transaction(write=True) as db:
            db.execute(
                "UPDATE export_schedule_fires SET status=?, result=? WHERE tenant=? AND name=? AND key=?",
                (status, json.dumps(result, sort_keys=True, default=str), tenant, name, key),
            )

    def fires(self, tenant: str | None, name: str | None = None, limit: int | None = 50) -> list[Fire]:
        with self._transaction() as db:
            rows = db.execute(
                f"SELECT {_FIRE_COLUMNS} FROM export_schedule_fires "
                "WHERE (? IS NULL OR tenant=?) AND (? IS NULL OR name=?) "
                "ORDER BY fired_at DESC, key DESC LIMIT ?",
                (tenant, tenant, name, name, -1 if limit is None else limit),
            ).fetchall()
        return [_fire(row) for row in rows]

    def fire(self, tenant: str, name: str, key: str) -> Fire:
        with self._transaction() as db:
            row = db.execute(
                f"SELECT {_FIRE_COLUMNS} FROM export_schedule_fires WHERE tenant=? AND name=? AND key=?",
                (tenant, name, key),
            ).fetchone()
        if row is None:
            raise NotFoundError(f"schedule {name!r} has no run for slot {key}")
        return _fire(row)

    def record_event(self, tenant: str, name: str, at: datetime) -> int:
        with self._transaction(write=True) as db:
            cursor = db.execute(
                "INSERT INTO export_events (tenant, name, at) VALUES (?, ?, ?)", (tenant, name, _text(at))
            )
            event_id = cursor.lastrowid
        assert event_id is not None
        return event_id

    def events(self, tenant: str, names: Sequence[str], after: int) -> list[Event]:
        clauses = " OR ".join("name LIKE ?" if n.endswith("*") else "name = ?" for n in names)
        patterns = [n[:-1] + "%" if n.endswith("*") else n for n in names]
        if not names:
            return []
        with self._transaction() as db:
            rows = db.execute(
                f"SELECT id, tenant, name, at FROM export_events WHERE tenant=? AND id>? AND ({clauses}) "
                "ORDER BY id",
                (tenant, after, *patterns),
            ).fetchall()
        return [Event(id=row[0], tenant=row[1], name=row[2], at=_time(row[3])) for row in rows]
