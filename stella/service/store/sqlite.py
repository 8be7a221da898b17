"""The embedded run store: one SQLite file under ``$STELLA_HOME`` (WAL mode).

One connection per thread (Starlette's thread pool), reopened after a ``fork`` (a
worker's run process) because connections must not cross processes; ``BEGIN
IMMEDIATE`` takes SQLite's one write lock up front, which is what makes
:meth:`claim_run` atomic between workers.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from stella.service.store.interface import Clock
from stella.service.store.sql import Cursor, SqlRunStore

__all__ = ["SqliteRunStore"]


class _SqliteCursor:
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._cursor.execute(sql, tuple(params))

    def one(self) -> dict[str, Any] | None:
        row = self._cursor.fetchone()
        return dict(row) if row is not None else None

    def all(self) -> list[dict[str, Any]]:
        return [dict(row) for row in self._cursor.fetchall()]

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount


class SqliteRunStore(SqlRunStore):
    def __init__(self, path: str | Path, *, clock: Clock = time.time) -> None:
        super().__init__(clock)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connection().execute("PRAGMA journal_mode=WAL")

    def _connection(self) -> sqlite3.Connection:
        cached: tuple[int, sqlite3.Connection] | None = getattr(self._local, "connection", None)
        if cached is not None and cached[0] == os.getpid():
            return cached[1]
        connection = self._connect()
        self._local.connection = (os.getpid(), connection)
        return connection

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA busy_timeout=30000")
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    def close(self) -> None:
        cached: tuple[int, sqlite3.Connection] | None = getattr(self._local, "connection", None)
        if cached is not None and cached[0] == os.getpid():
            cached[1].close()
        self._local.connection = None

    @contextmanager
    def _tx(self, *, write: bool = False) -> Iterator[Cursor]:
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield _SqliteCursor(connection.cursor())
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
