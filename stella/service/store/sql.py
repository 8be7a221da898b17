"""The SQL both store adapters share; each adapter supplies connections and locking.

Plain SQL with ``?`` placeholders (the PostgreSQL adapter rewrites them): the schema
is small and the statements are the documentation of what the service persists.
Migrations are numbered and recorded in ``schema_migrations``; each runs once, in a
transaction, and adapters serialise concurrent migrators (several API processes and
workers may start together).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import fields
from typing import Any, Protocol

from stella.errors import ConflictError, NotFoundError, QuotaError, UsageError
from stella.service.store.interface import (
    TERMINAL,
    Clock,
    Event,
    Lease,
    Run,
    RunPage,
    RunStatus,
    StoredProfile,
)
from stella.telemetry.metrics import RunStats

__all__ = ["MIGRATIONS", "Cursor", "SqlRunStore"]

MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """CREATE TABLE runs (
                id TEXT PRIMARY KEY,
                tenant TEXT NOT NULL,
                status TEXT NOT NULL,
                profile TEXT NOT NULL,
                params TEXT NOT NULL,
                idempotency_key TEXT,
                created_at DOUBLE PRECISION NOT NULL,
                started_at DOUBLE PRECISION,
                finished_at DOUBLE PRECISION,
                attempts INTEGER NOT NULL DEFAULT 0,
                worker TEXT,
                lease_until DOUBLE PRECISION,
                cancel_requested INTEGER NOT NULL DEFAULT 0,
                export_id TEXT,
                result TEXT NOT NULL DEFAULT '{}',
                error TEXT,
                progress TEXT NOT NULL DEFAULT '{}',
                event_seq INTEGER NOT NULL DEFAULT 0
            )""",
            "CREATE UNIQUE INDEX runs_idempotency ON runs (tenant, idempotency_key)",
            "CREATE INDEX runs_tenant_created ON runs (tenant, created_at, id)",
            "CREATE INDEX runs_status ON runs (status, created_at)",
            """CREATE TABLE run_events (
                run_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                type TEXT NOT NULL,
                data TEXT NOT NULL,
                at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (run_id, seq)
            )""",
            """CREATE TABLE profiles (
                tenant TEXT NOT NULL,
                name TEXT NOT NULL,
                revision INTEGER NOT NULL,
                body TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (tenant, name, revision)
            )""",
        ),
    ),
)

_ACTIVE = (RunStatus.QUEUED.value, RunStatus.RUNNING.value)


class Cursor(Protocol):
    """The slice of a DB-API cursor the shared SQL uses (rows come back as dicts)."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    def one(self) -> dict[str, Any] | None: ...

    def all(self) -> list[dict[str, Any]]: ...

    @property
    def rowcount(self) -> int: ...


_JSON_FIELDS = ("params", "result", "progress")


def _run(row: Mapping[str, Any]) -> Run:
    """A ``runs`` row as a :class:`Run`: its columns are the dataclass's fields, by name.

    The dataclass is the one list of what a run holds; only the JSON columns and the two
    typed ones are decoded here, so a field added to both cannot be forgotten in between.
    """
    values = {column.name: row[column.name] for column in fields(Run)}
    for name in _JSON_FIELDS:
        values[name] = json.loads(values[name])
    values["error"] = json.loads(values["error"]) if values["error"] else None
    values["status"] = RunStatus(values["status"])
    values["cancel_requested"] = bool(values["cancel_requested"])
    return Run(**values)


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _encode_cursor(run: Run) -> str:
    return base64.urlsafe_b64encode(f"{run.created_at!r}|{run.id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, run_id = text.split("|", 1)
        return float(created), run_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError("cursor is not one this server issued", details={"cursor": cursor[:80]}) from exc


class SqlRunStore:
    """:class:`~stella.service.store.interface.RunStore` over any DB-API database.

    Subclasses implement :meth:`_tx` (a transaction yielding a :class:`Cursor`; with
    ``write=True`` it must serialise writers or lock rows) and :attr:`_skip_locked`.
    """

    _skip_locked = ""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def _tx(self, *, write: bool = False) -> AbstractContextManager[Cursor]:
        raise NotImplementedError

    def _migration_lock(self, cur: Cursor) -> None:
        """Serialise migrators (PostgreSQL takes an advisory lock; SQLite's write lock suffices)."""

    def _tenant_lock(self, cur: Cursor, tenant: str) -> None:
        """Serialise run creation per tenant, so quota counts and idempotency keys cannot race."""

    # -- schema ---------------------------------------------------------------------------
    def migrate(self) -> None:
        with self._tx(write=True) as cur:
            self._migration_lock(cur)
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
            )
            cur.execute("SELECT version FROM schema_migrations")
            done = {row["version"] for row in cur.all()}
            for version, statements in MIGRATIONS:
                if version in done:
                    continue
                for statement in statements:
                    cur.execute(statement)
                cur.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                    (version, self._clock()),
                )

    def ping(self) -> None:
        with self._tx() as cur:
            cur.execute("SELECT 1 AS ok")
            cur.one()

    # -- runs -----------------------------------------------------------------------------
    def _select_run(self, cur: Cursor, where: str, params: Sequence[Any], lock: bool = False) -> Run | None:
        suffix = " FOR UPDATE" if lock and self._skip_locked else ""
        cur.execute(f"SELECT * FROM runs WHERE {where}{suffix}", params)
        row = cur.one()
        return _run(row) if row else None

    def _event(self, cur: Cursor, run_id: str, type_: str, data: Mapping[str, Any]) -> int:
        cur.execute("UPDATE runs SET event_seq = event_seq + 1 WHERE id = ? RETURNING event_seq", (run_id,))
        row = cur.one()
        if row is None:
            raise NotFoundError(f"run {run_id} does not exist", details={"runId": run_id})
        seq = int(row["event_seq"])
        cur.execute(
            "INSERT INTO run_events (run_id, seq, type, data, at) VALUES (?, ?, ?, ?, ?)",
            (run_id, seq, type_, _dump(dict(data)), self._clock()),
        )
        return seq

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
        with self._tx(write=True) as cur:
            self._tenant_lock(cur, tenant)
            if idempotency_key is not None:
                first = self._select_run(cur, "tenant = ? AND idempotency_key = ?", (tenant, idempotency_key))
                if first is not None:
                    if first.params != dict(params) or first.profile != profile:
                        raise ConflictError(
                            "Idempotency-Key was already used for a different request",
                            details={"idempotencyKey": idempotency_key, "runId": first.id},
                        )
                    return first, False
            cur.execute(
                "SELECT COUNT(*) AS n FROM runs WHERE tenant = ? AND status IN (?, ?)", (tenant, *_ACTIVE)
            )
            row = cur.one()
            active = int(row["n"]) if row else 0
            if active >= max_active:
                raise QuotaError(
                    f"tenant {tenant} already has {active} queued or running runs (limit {max_active})",
                    retry_after=retry_after,
                    details={"limit": max_active, "active": active},
                )
            run_id = f"run-{uuid.uuid4().hex}"
            now = self._clock()
            cur.execute(
                "INSERT INTO runs (id, tenant, status, profile, params, idempotency_key, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, tenant, RunStatus.QUEUED.value, profile, _dump(dict(params)), idempotency_key, now),
            )
            self._event(cur, run_id, "queued", {"runId": run_id, "status": "queued"})
            run = self._select_run(cur, "id = ?", (run_id,))
            assert run is not None
            return run, True

    def active_runs(self, tenant: str) -> int:
        with self._tx() as cur:
            cur.execute(
                "SELECT COUNT(*) AS n FROM runs WHERE tenant = ? AND status IN (?, ?)", (tenant, *_ACTIVE)
            )
            row = cur.one()
            return int(row["n"]) if row else 0

    def get_run(self, tenant: str, run_id: str) -> Run | None:
        with self._tx() as cur:
            return self._select_run(cur, "tenant = ? AND id = ?", (tenant, run_id))

    def list_runs(
        self,
        tenant: str,
        *,
        status: RunStatus | None = None,
        profile: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage:
        clauses, params = ["tenant = ?"], [tenant]
        if status is not None:
            clauses.append("status = ?")
            params.append(status.value)
        if profile is not None:
            clauses.append("profile = ?")
            params.append(profile)
        if cursor is not None:
            created, run_id = _decode_cursor(cursor)
            clauses.append("(created_at < ? OR (created_at = ? AND id < ?))")
            params.extend([created, created, run_id])  # type: ignore[list-item]
        sql = (
            f"SELECT * FROM runs WHERE {' AND '.join(clauses)} "
            f"ORDER BY created_at DESC, id DESC LIMIT {int(limit) + 1}"
        )
        with self._tx() as cur:
            cur.execute(sql, params)
            runs = [_run(row) for row in cur.all()]
        more = len(runs) > limit
        runs = runs[:limit]
        return RunPage(runs, _encode_cursor(runs[-1]) if more and runs else None)

    def cancel_run(self, tenant: str, run_id: str) -> Run | None:
        with self._tx(write=True) as cur:
            run = self._select_run(cur, "tenant = ? AND id = ?", (tenant, run_id), lock=True)
            if run is None or run.status in TERMINAL:
                return run
            if run.status is RunStatus.QUEUED:
                cur.execute(
                    "UPDATE runs SET status = ?, finished_at = ?, cancel_requested = 1 WHERE id = ?",
                    (RunStatus.CANCELLED.value, self._clock(), run_id),
                )
                self._event(cur, run_id, "cancelled", {"runId": run_id, "status": "cancelled"})
            elif not run.cancel_requested:
                cur.execute("UPDATE runs SET cancel_requested = 1 WHERE id = ?", (run_id,))
                self._event(cur, run_id, "cancel_requested", {"runId": run_id})
            return self._select_run(cur, "id = ?", (run_id,))

    def events_after(self, tenant: str, run_id: str, after: int, limit: int = 500) -> list[Event]:
        with self._tx() as cur:
            cur.execute(
                "SELECT e.run_id, e.seq, e.type, e.data, e.at FROM run_events e JOIN runs r ON r.id = e.run_id "
                f"WHERE r.tenant = ? AND e.run_id = ? AND e.seq > ? ORDER BY e.seq LIMIT {int(limit)}",
                (tenant, run_id, after),
            )
            return [
                Event(row["run_id"], int(row["seq"]), row["type"], json.loads(row["data"]), row["at"])
                for row in cur.all()
            ]

    # -- workers --------------------------------------------------------------------------
    def claim_run(self, worker: str, lease_seconds: float) -> Lease | None:
        with self._tx(write=True) as cur:
            cur.execute(
                "SELECT id FROM runs WHERE status = ? ORDER BY created_at, id LIMIT 1" + self._skip_locked,
                (RunStatus.QUEUED.value,),
            )
            row = cur.one()
            if row is None:
                return None
            now = self._clock()
            until = now + lease_seconds
            cur.execute(
                "UPDATE runs SET status = ?, worker = ?, lease_until = ?, attempts = attempts + 1, "
                "started_at = COALESCE(started_at, ?) WHERE id = ? AND status = ?",
                (RunStatus.RUNNING.value, worker, until, now, row["id"], RunStatus.QUEUED.value),
            )
            if cur.rowcount != 1:
                return None
            run = self._select_run(cur, "id = ?", (row["id"],))
            assert run is not None
            self._event(
                cur, run.id, "started", {"runId": run.id, "status": "running", "attempt": run.attempts}
            )
            return Lease(run, worker, until)

    def heartbeat(self, run_id: str, worker: str, lease_seconds: float) -> bool | None:
        with self._tx(write=True) as cur:
            cur.execute(
                "UPDATE runs SET lease_until = ? WHERE id = ? AND worker = ? AND status = ? "
                "RETURNING cancel_requested",
                (self._clock() + lease_seconds, run_id, worker, RunStatus.RUNNING.value),
            )
            row = cur.one()
            return None if row is None else bool(row["cancel_requested"])

    def append_event(self, run_id: str, type_: str, data: Mapping[str, Any]) -> int:
        with self._tx(write=True) as cur:
            return self._event(cur, run_id, type_, data)

    def record_progress(self, run_id: str, worker: str, progress: Mapping[str, Any]) -> None:
        with self._tx(write=True) as cur:
            cur.execute(
                "UPDATE runs SET progress = ? WHERE id = ? AND worker = ? AND status = ?",
                (_dump(dict(progress)), run_id, worker, RunStatus.RUNNING.value),
            )
            if cur.rowcount == 1:
                self._event(cur, run_id, "progress", {"runId": run_id, **progress})

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
        with self._tx(write=True) as cur:
            cur.execute(
                "UPDATE runs SET status = ?, finished_at = ?, lease_until = NULL, export_id = ?, result = ?, "
                "error = ? WHERE id = ? AND worker = ? AND status = ?",
                (
                    status.value,
                    self._clock(),
                    export_id,
                    _dump(dict(result or {})),
                    _dump(dict(error)) if error else None,
                    run_id,
                    worker,
                    RunStatus.RUNNING.value,
                ),
            )
            if cur.rowcount != 1:
                return False
            payload: dict[str, Any] = {"runId": run_id, "status": status.value}
            if export_id:
                payload["exportId"] = export_id
            if error:
                payload["error"] = dict(error)
            self._event(cur, run_id, status.value, payload)
            return True

    def reap_expired(self, max_attempts: int) -> list[Run]:
        reaped: list[Run] = []
        with self._tx(write=True) as cur:
            now = self._clock()
            cur.execute(
                "SELECT id FROM runs WHERE status = ? AND lease_until < ?" + self._skip_locked,
                (RunStatus.RUNNING.value, now),
            )
            for row in cur.all():
                run = self._select_run(cur, "id = ?", (row["id"],))
                if run is None:
                    continue
                lost = {"worker": run.worker, "attempt": run.attempts}
                if run.cancel_requested:
                    cur.execute(
                        "UPDATE runs SET status = ?, finished_at = ?, lease_until = NULL WHERE id = ?",
                        (RunStatus.CANCELLED.value, now, run.id),
                    )
                    self._event(cur, run.id, "cancelled", {"runId": run.id, "status": "cancelled"})
                elif run.attempts < max_attempts:
                    cur.execute(
                        "UPDATE runs SET status = ?, worker = NULL, lease_until = NULL, progress = '{}' "
                        "WHERE id = ?",
                        (RunStatus.QUEUED.value, run.id),
                    )
                    self._event(cur, run.id, "requeued", {"runId": run.id, "status": "queued", **lost})
                else:
                    error = {
                        "code": "ERR_EXPORT_PIPELINE",
                        "message": f"the worker running this run stopped answering {run.attempts} time(s); "
                        "nothing was published",
                        "details": lost,
                    }
                    cur.execute(
                        "UPDATE runs SET status = ?, finished_at = ?, lease_until = NULL, error = ? WHERE id = ?",
                        (RunStatus.FAILED.value, now, _dump(error), run.id),
                    )
                    self._event(cur, run.id, "failed", {"runId": run.id, "status": "failed", "error": error})
                updated = self._select_run(cur, "id = ?", (run.id,))
                assert updated is not None
                reaped.append(updated)
        return reaped

    def expire_before(self, finished_before: float) -> list[Run]:
        with self._tx(write=True) as cur:
            cur.execute(
                "SELECT * FROM runs WHERE status = ? AND finished_at < ?",
                (RunStatus.SUCCEEDED.value, finished_before),
            )
            runs = [_run(row) for row in cur.all()]
            for run in runs:
                cur.execute("UPDATE runs SET status = ? WHERE id = ?", (RunStatus.EXPIRED.value, run.id))
                self._event(cur, run.id, "expired", {"runId": run.id, "status": "expired"})
            return runs

    def live_export_ids(self, tenant: str) -> set[str]:
        with self._tx() as cur:
            cur.execute(
                "SELECT DISTINCT export_id FROM runs WHERE tenant = ? AND status = ? AND export_id IS NOT NULL",
                (tenant, RunStatus.SUCCEEDED.value),
            )
            return {row["export_id"] for row in cur.all()}

    def stats(self) -> RunStats:
        stats = RunStats()
        with self._tx() as cur:
            cur.execute(
                "SELECT tenant, profile, status, started_at, finished_at, result, error FROM runs "
                "WHERE finished_at IS NOT NULL AND started_at IS NOT NULL"
            )
            for row in cur.all():
                key = (row["profile"], row["tenant"])
                stats.durations.setdefault(key, []).append(row["finished_at"] - row["started_at"])
                if row["status"] == RunStatus.FAILED.value:
                    code = json.loads(row["error"] or "{}").get("code", "ERR_EXPORT_INTERNAL")
                    failure = (row["profile"], row["tenant"], code)
                    stats.failures[failure] = stats.failures.get(failure, 0) + 1
                published = json.loads(row["result"] or "{}").get("archiveBytes")
                if isinstance(published, int):
                    stats.bundle_bytes[key] = stats.bundle_bytes.get(key, 0) + published
            cur.execute(
                "SELECT status, COUNT(*) AS n FROM runs WHERE status IN (?, ?) GROUP BY status", _ACTIVE
            )
            counts = {row["status"]: int(row["n"]) for row in cur.all()}
        return RunStats(
            durations=stats.durations,
            failures=stats.failures,
            bundle_bytes=stats.bundle_bytes,
            queued=counts.get(RunStatus.QUEUED.value, 0),
            running=counts.get(RunStatus.RUNNING.value, 0),
        )

    # -- profiles -------------------------------------------------------------------------
    def put_profile(self, tenant: str, name: str, body: Mapping[str, Any], *, create: bool) -> StoredProfile:
        with self._tx(write=True) as cur:
            cur.execute(
                "SELECT MAX(revision) AS revision FROM profiles WHERE tenant = ? AND name = ?", (tenant, name)
            )
            row = cur.one()
            latest = row["revision"] if row and row["revision"] is not None else None
            if create and latest is not None:
                raise ConflictError(
                    f"profile {name} already exists (revision {latest}); update it instead",
                    details={"profile": name, "revision": latest},
                )
            if not create and latest is None:
                raise NotFoundError(f"profile {name} not found", details={"profile": name})
            revision = (latest or 0) + 1
            now = self._clock()
            cur.execute(
                "INSERT INTO profiles (tenant, name, revision, body, created_at) VALUES (?, ?, ?, ?, ?)",
                (tenant, name, revision, _dump(dict(body)), now),
            )
            return StoredProfile(tenant, name, revision, dict(body), now)

    def get_profile(self, tenant: str, name: str, revision: int | None = None) -> StoredProfile | None:
        with self._tx() as cur:
            if revision is None:
                cur.execute(
                    "SELECT * FROM profiles WHERE tenant = ? AND name = ? ORDER BY revision DESC LIMIT 1",
                    (tenant, name),
                )
            else:
                cur.execute(
                    "SELECT * FROM profiles WHERE tenant = ? AND name = ? AND revision = ?",
                    (tenant, name, revision),
                )
            row = cur.one()
        if row is None:
            return None
        return StoredProfile(
            row["tenant"], row["name"], row["revision"], json.loads(row["body"]), row["created_at"]
        )

    def list_profiles(self, tenant: str) -> list[StoredProfile]:
        with self._tx() as cur:
            cur.execute(
                "SELECT p.* FROM profiles p WHERE p.tenant = ? AND p.revision = "
                "(SELECT MAX(q.revision) FROM profiles q WHERE q.tenant = p.tenant AND q.name = p.name) "
                "ORDER BY p.name",
                (tenant,),
            )
            rows = cur.all()
        return [
            StoredProfile(
                row["tenant"], row["name"], row["revision"], json.loads(row["body"]), row["created_at"]
            )
            for row in rows
        ]
