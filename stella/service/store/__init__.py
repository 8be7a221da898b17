"""The run store port (:mod:`.interface`) and its SQLite and PostgreSQL adapters."""

from __future__ import annotations

from stella.service.store.interface import RunStore

__all__ = ["open_store"]


def open_store(url: str) -> RunStore:
    """``sqlite:///path/to/file.db`` or ``postgresql://…`` to a store (migrated on open)."""
    from stella.errors import UsageError
    from stella.guards.files import check_file_arg

    if url.startswith("sqlite:///"):
        from stella.service.store.sqlite import SqliteRunStore

        # A folder, a device or a path under a file is the caller's mistake (exit 2),
        # not SQLite's "unable to open database file" surfacing as an internal error.
        path = check_file_arg(url[len("sqlite:///") :], "--store database")
        store: RunStore = SqliteRunStore(path)
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
