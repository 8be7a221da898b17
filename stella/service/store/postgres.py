"""The shared run store: PostgreSQL through psycopg 3 and a connection pool.

Several API processes and workers on several machines point at one database. Workers
claim runs with ``FOR UPDATE SKIP LOCKED`` (no two take the same run, none waits on
another's row); run creation takes a per-tenant advisory lock so quota counts and
idempotency keys cannot race; migrations take a global advisory lock.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from stella.errors import RemoteError
from stella.service.store.interface import Clock
from stella.service.store.sql import Cursor, SqlRunStore

__all__ = ["PostgresRunStore"]

_WAIT_SECONDS = 5.0  # longest wait for a pooled connection before the store counts as unavailable
_CONNECT_SECONDS = 5  # per connection attempt, so a vanished host cannot stall a worker's stop
_MIGRATION_LOCK = 0x57E11A  # an arbitrary, fixed advisory-lock key for schema changes


class _PgCursor:
    def __init__(self, cursor: psycopg.Cursor[dict[str, Any]]) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._cursor.execute(sql.replace("?", "%s"), tuple(params))

    def one(self) -> dict[str, Any] | None:
        return self._cursor.fetchone()

    def all(self) -> list[dict[str, Any]]:
        return self._cursor.fetchall()

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount


class PostgresRunStore(SqlRunStore):
    _skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str, *, clock: Clock = time.time, max_connections: int = 10) -> None:
        super().__init__(clock)
        self._url = url
        self._max = max_connections
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def _get_pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        """A pool per process: connections must never cross a ``fork``."""
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                self._probe()
                self._pool = ConnectionPool(
                    self._url,
                    min_size=1,
                    max_size=self._max,
                    open=True,
                    timeout=_WAIT_SECONDS,
                    kwargs={"autocommit": False, "connect_timeout": _CONNECT_SECONDS},
                )
                self._pid = os.getpid()
            return self._pool

    def _probe(self) -> None:
        """One direct connection first: an unreachable or misspelt store fails now, saying why.

        The pool would instead retry in the background and end in a bare ``PoolTimeout``
        after 30 s, reported as an internal error.
        """
        try:
            psycopg.connect(self._url, connect_timeout=10).close()
        except psycopg.Error as exc:
            raise RemoteError(f"cannot reach the run store: {exc}".strip()) from exc

    def close(self) -> None:
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.close(timeout=_CONNECT_SECONDS)
            self._pool = None

    @contextmanager
    def _tx(self, *, write: bool = False) -> Iterator[Cursor]:
        """One transaction; a store that went away is a ``RemoteError``, never a hang.

        A stopped or restarted server surfaces as ``OperationalError`` (a broken
        connection, or no connection within ``_WAIT_SECONDS``). Callers -- the API's one
        catch site, the worker's loop -- then answer or back off instead of dying with an
        internal error or waiting forever on the pool.
        """
        try:
            with (
                self._get_pool().connection() as connection,
                connection.transaction(),
                connection.cursor(row_factory=dict_row) as cursor,
            ):
                yield _PgCursor(cursor)
        except psycopg.errors.TransactionRollback:
            raise  # a deadlock or serialization failure is the transaction's, not the store's
        except psycopg.OperationalError as exc:
            raise RemoteError(
                f"the run store is unavailable: {type(exc).__name__}: {exc}".strip(),
                details={"store": "postgresql"},
            ) from exc

    def _migration_lock(self, cur: Cursor) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))

    def _tenant_lock(self, cur: Cursor, tenant: str) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (tenant,))
