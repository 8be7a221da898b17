"""The run-store contract, run against both adapters with an injected clock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from stella.errors import ConflictError, NotFoundError, QuotaError
from stella.service.store.interface import RunStatus, RunStore
from stella.telemetry.metrics import ServiceMetrics
from tests.service.conftest import new_database


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
def store_and_clock(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[RunStore, Clock]]:
    clock = Clock()
    if request.param == "sqlite":
        from stella.service.store.sqlite import SqliteRunStore

        store: RunStore = SqliteRunStore(tmp_path / "runs.db", clock=clock)
    else:
        from stella.service.store.postgres import PostgresRunStore

        url = new_database(request.getfixturevalue("postgres_url"), f"store_{abs(hash(tmp_path)) % 10**9}")
        store = PostgresRunStore(url, clock=clock)
    store.migrate()
    store.migrate()  # idempotent
    yield store, clock
    close = getattr(store, "close", None)
    if close is not None:
        close()


def _create(store: RunStore, tenant: str = "acme", key: str | None = None, limit: int = 10) -> str:
    run, created = store.create_run(
        tenant=tenant,
        profile="json:raw",
        params={"selectors": []},
        idempotency_key=key,
        max_active=limit,
        retry_after=7,
    )
    assert created
    return run.id


def test_claims_are_exclusive_and_tenants_isolated(store_and_clock: tuple[RunStore, Clock]) -> None:
    store, _clock = store_and_clock
    ids = {_create(store) for _ in range(6)}
    claimed: list[str] = []
    lock = threading.Lock()

    def take() -> None:
        while (lease := store.claim_run(f"w-{threading.get_ident()}", 30)) is not None:
            with lock:
                claimed.append(lease.run.id)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(ids)  # every run once, none twice
    assert store.get_run("globex", claimed[0]) is None
    assert store.events_after("globex", claimed[0], 0) == []
    assert store.list_runs("globex").runs == []


def test_quota_and_idempotency(store_and_clock: tuple[RunStore, Clock]) -> None:
    store, _clock = store_and_clock
    first = _create(store, key="k1", limit=2)
    replay, created = store.create_run(
        tenant="acme",
        profile="json:raw",
        params={"selectors": []},
        idempotency_key="k1",
        max_active=2,
        retry_after=7,
    )
    assert not created and replay.id == first
    with pytest.raises(ConflictError):
        store.create_run(
            tenant="acme",
            profile="json:raw",
            params={"selectors": ["kind=vex"]},
            idempotency_key="k1",
            max_active=2,
            retry_after=7,
        )
    _create(store, limit=2)
    assert (store.active_runs("acme"), store.active_runs("globex")) == (2, 0)
    with pytest.raises(QuotaError) as raised:
        _create(store, limit=2)
    assert raised.value.retry_after == 7 and raised.value.spec.http_status == 429
    _create(store, tenant="globex", limit=2)  # quotas are per tenant


def test_lease_expiry_requeues_then_fails(store_and_clock: tuple[RunStore, Clock]) -> None:
    store, clock = store_and_clock
    run_id = _create(store)
    lease = store.claim_run("w1", 10)
    assert lease is not None and lease.run.attempts == 1
    clock.now += 5
    assert store.heartbeat(run_id, "w1", 10) is False
    clock.now += 9
    assert store.reap_expired(max_attempts=2) == []  # the heartbeat kept it alive
    clock.now += 20
    [requeued] = store.reap_expired(max_attempts=2)
    assert requeued.status is RunStatus.QUEUED
    assert store.heartbeat(run_id, "w1", 10) is None  # w1 lost it
    assert not store.finish_run(run_id, "w1", RunStatus.SUCCEEDED, export_id="x")  # and cannot publish
    second = store.claim_run("w2", 10)
    assert second is not None and second.run.attempts == 2
    clock.now += 60
    [failed] = store.reap_expired(max_attempts=2)
    assert failed.status is RunStatus.FAILED and failed.error is not None
    assert failed.error["code"] == "ERR_EXPORT_PIPELINE"
    kinds = [event.type for event in store.events_after("acme", run_id, 0)]
    assert kinds == ["queued", "started", "requeued", "started", "failed"]


def test_cancel_and_events(store_and_clock: tuple[RunStore, Clock]) -> None:
    store, _clock = store_and_clock
    queued = _create(store)
    cancelled = store.cancel_run("acme", queued)
    assert cancelled is not None and cancelled.status is RunStatus.CANCELLED
    assert store.claim_run("w", 10) is None
    running = _create(store)
    assert store.claim_run("w", 10) is not None
    flagged = store.cancel_run("acme", running)
    assert flagged is not None and flagged.status is RunStatus.RUNNING and flagged.cancel_requested
    assert store.heartbeat(running, "w", 10) is True
    assert store.finish_run(running, "w", RunStatus.CANCELLED)
    assert store.cancel_run("globex", running) is None
    seqs = [event.seq for event in store.events_after("acme", running, 0)]
    assert seqs == list(range(1, len(seqs) + 1))


def test_profiles_keep_revisions(store_and_clock: tuple[RunStore, Clock]) -> None:
    store, _clock = store_and_clock
    with pytest.raises(NotFoundError):
        store.put_profile("acme", "nightly", {"profile": "json:raw"}, create=False)
    store.put_profile("acme", "nightly", {"profile": "json:raw"}, create=True)
    with pytest.raises(ConflictError):
        store.put_profile("acme", "nightly", {"profile": "json:raw"}, create=True)
    second = store.put_profile("acme", "nightly", {"profile": "trivy:db"}, create=False)
    assert second.revision == 2
    latest = store.get_profile("acme", "nightly")
    first = store.get_profile("acme", "nightly", 1)
    assert latest is not None and latest.body["profile"] == "trivy:db"
    assert first is not None and first.body["profile"] == "json:raw"
    assert [p.name for p in store.list_profiles("acme")] == ["nightly"]
    assert store.get_profile("globex", "nightly") is None and list(store.list_profiles("globex")) == []


def test_retention_and_metrics_from_the_store(store_and_clock: tuple[RunStore, Clock]) -> None:
    store, clock = store_and_clock
    ok = _create(store)
    assert store.claim_run("w", 10) is not None
    clock.now += 42
    assert store.finish_run(
        ok, "w", RunStatus.SUCCEEDED, export_id="acme-json-raw-1", result={"archiveBytes": 1234}
    )
    bad = _create(store)
    assert store.claim_run("w", 10) is not None
    store.finish_run(bad, "w", RunStatus.FAILED, error={"code": "ERR_EXPORT_INPUT", "message": "m"})
    text = ServiceMetrics(store.stats).render().decode()
    assert (
        'exporter_run_failures_total{error_code="ERR_EXPORT_INPUT",profile="json:raw",tenant="acme"} 1.0'
        in text
    )
    assert 'exporter_bundle_bytes_total{profile="json:raw",tenant="acme"} 1234.0' in text
    assert 'exporter_run_duration_seconds_bucket{le="60.0",profile="json:raw",tenant="acme"} 2.0' in text
    assert store.live_export_ids("acme") == {"acme-json-raw-1"}
    clock.now += 1000
    [expired] = store.expire_before(clock.now - 10)
    assert expired.id == ok and store.live_export_ids("acme") == set()
    run = store.get_run("acme", ok)
    assert run is not None and run.status is RunStatus.EXPIRED
