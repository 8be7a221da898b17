"""One ledger and one running service per store kind, shared by the whole session.

``service`` is parametrized over the two run-store adapters, so every test that uses
it runs against SQLite and against a real PostgreSQL started for the session.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.service.support import Service, start_service
from tests.services.postgres import find_pg_bin, run_postgres
from tests.support import T0, require

TENANTS = {"acme": 400, "globex": 150}


@pytest.fixture(scope="session")
def service_ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic ledgers for two tenants (the service reads them like the CLI does)."""
    from stella.ledger.generate import generate_ledger
    from stella.ledger.store import LedgerStore

    root = tmp_path_factory.mktemp("service-ledger")
    store = LedgerStore(str(root))
    for index, (tenant, count) in enumerate(TENANTS.items()):
        generate_ledger(store, tenant, count, seed=index, ingested_at=T0, workers=1)
    return root


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    bin_dir = find_pg_bin()
    require(bin_dir is not None, "PostgreSQL server binaries (Debian postgresql)")
    assert bin_dir is not None
    with run_postgres(bin_dir) as url:
        yield url


def new_database(server_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, service_ledger: Path
) -> Iterator[Service]:
    home = tmp_path_factory.mktemp(f"serve-{request.param}")
    if request.param == "sqlite":
        store_url = f"sqlite:///{home / 'runs.db'}"
    else:
        store_url = new_database(request.getfixturevalue("postgres_url"), "stella_api")
    with start_service(home, service_ledger, store_url) as running:
        yield running


@pytest.fixture(scope="session")
def finished_run(service: Service) -> dict[str, Any]:
    """One succeeded json:raw run of tenant acme, with the token that made it."""
    token = service.token("acme")
    response = service.submit(token, {"profile": "json:raw", "selectors": ["kind=advisory,vex"]})
    assert response.status_code == 202, response.text
    run = service.wait(token, response.json()["runId"])
    assert run["status"] == "succeeded", run
    return run
