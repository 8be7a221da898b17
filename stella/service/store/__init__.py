"""The run store port (:mod:`.interface`) and its SQLite and PostgreSQL adapters."""

from __future__ import annotations

from stella.service.store.interface import RunStore

__all__ = ["open_store"]


def open_store(url: str) -> RunStore:
    """``sqlite:///path/to/file.db`` or ``postgresql://…`` to a store (migrated on open)."""
    from stella.errors import UsageError

    if url.startswith("sqlite:///"):
        from stella.service.store.sqlite import SqliteRunStore

        store: RunStore = SqliteRunStore(url[len("sqlite:///") :])
    elif url.startswith(("postgresql://", "postgres://")):
        from stella.service.store.postgres import PostgresRunStore

        store = PostgresRunStore(url)
    else:
        raise UsageError(
            f"store URL {url.split('@')[-1]!r}: expected sqlite:///PATH or postgresql://…",
            details={"scheme": url.split(":", 1)[0]},
        )
    store.migrate()
    return store
