"""A worker SIGKILLed mid-run: its run process dies with it, nothing partial is served,
the lease runs out, another worker retries the run and it succeeds; a running run can
also be cancelled. Workers here are separate ``stella worker`` processes, as on
several machines sharing one store.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stella.bundle.verify import verify_bundle
from tests.service.conftest import new_database
from tests.service.support import Service, start_service
from tests.services.postgres import find_pg_bin, postgres_cluster
from tests.support import T0, require

LEASE = {"STELLA_LEASE_SECONDS": "3", "STELLA_HEARTBEAT_SECONDS": "0.5"}


@pytest.fixture(scope="module")
def bulk_ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stella.ledger.generate import generate_ledger
    from stella.ledger.store import LedgerStore

    root = tmp_path_factory.mktemp("bulk-ledger")
    generate_ledger(LedgerStore(str(root)), "bulk", 6000, seed=5, ingested_at=T0, workers=1)
    return root


@contextlib.contextmanager
def _worker(service: Service, ledger: Path, name: str) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "STELLA_HOME": str(service.home), **LEASE}
    command = [
        sys.executable,
        "-m",
        "stella",
        "worker",
        "--store",
        service.store_url,
        "--ledger",
        str(ledger),
    ]
    with (service.home / f"{name}.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.append(int(entry.name))
    return found


@contextlib.contextmanager
def _stopped(pids: list[int]) -> Iterator[None]:
    """``pids`` stopped for the block, and continued once one of them has SIGTERM pending
    (the worker's answer to a cancel) or after 10 s: a stopped run cannot finish meanwhile."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
    try:
        yield
        deadline = time.monotonic() + 10
        while pids and not any(map(_sigterm_pending, pids)) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def _sigterm_pending(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return True  # gone: nothing left to wait for
    masks = (int(line.split()[1], 16) for line in status if line.startswith(("SigPnd:", "ShdPnd:")))
    return any(mask & (1 << (signal.SIGTERM - 1)) for mask in masks)


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_sigkilled_worker_run_is_retried_and_nothing_partial_is_served(
    request: pytest.FixtureRequest, store: str, tmp_path: Path, bulk_ledger: Path
) -> None:
    if store == "sqlite":
        store_url = f"sqlite:///{tmp_path / 'runs.db'}"
    else:
        store_url = new_database(request.getfixturevalue("postgres_url"), "stella_kill")
    with start_service(tmp_path / "home", bulk_ledger, store_url, workers=0, env=LEASE) as service:
        token = service.token("bulk")
        with _worker(service, bulk_ledger, "worker-a") as first:
            run_id = service.submit(token, {"profile": "json:raw"}).json()["runId"]
            service.wait(token, run_id, timeout=60, until=["running"])
            deadline = time.monotonic() + 10
            while not (children := _children(first.pid)) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert children, "the worker runs each export in a child process"
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=10)
            assert all(_gone(child) for child in children), "the run process outlived its worker"
        with service.client(token) as client:
            during = client.get(f"/api/export/runs/{run_id}")
            assert during.json()["status"] in ("running", "queued")
            refused = client.get(f"/api/export/runs/{run_id}/download")
            assert refused.status_code == 409 and refused.json()["code"] == "ERR_EXPORT_NOT_READY"
        bundles = service.home / "service" / "bundles" / "bulk"
        assert not [p for p in bundles.glob("*") if not p.name.startswith(".stella-staging-")]
        with _worker(service, bulk_ledger, "worker-b") as second:
            run = service.wait(token, run_id, timeout=180)
            assert run["status"] == "succeeded", run
            assert run["attempts"] == 2
            with service.client(token) as client:
                events = client.get(f"/api/export/runs/{run_id}/events").text
                assert "event: requeued" in events and events.count("event: started") == 2
                archive = tmp_path / "bundle.tar.zst"
                archive.write_bytes(client.get(f"/api/export/runs/{run_id}/download").content)
            report = verify_bundle(archive).report
            assert report.ok and report.export_id == run["exportId"]

            # A run of this ledger can finish between "running" and the worker's next heartbeat,
            # and then stands as succeeded (a cancel is a request). So the run's process is
            # stopped (SIGSTOP) before the cancel and continued only once the worker has sent it
            # SIGTERM; a run that ended before it could be stopped is submitted again (up to
            # three runs: one must be cancelled, with no bundle, and none may end otherwise).
            outcomes = []
            for _ in range(3):
                cancelled_id = service.submit(token, {"profile": "json:raw"}).json()["runId"]
                service.wait(token, cancelled_id, timeout=60, until=["running"])
                with _stopped(_children(second.pid)), service.client(token) as client:
                    assert client.post(f"/api/export/runs/{cancelled_id}/cancel").status_code in (
                        202,
                        409,
                    )
                cancelled = service.wait(token, cancelled_id, timeout=60)
                outcomes.append(cancelled["status"])
                assert cancelled["status"] in ("cancelled", "succeeded"), cancelled
                if cancelled["status"] == "cancelled":
                    assert cancelled["exportId"] is None
                    break
            assert outcomes[-1] == "cancelled", outcomes


def test_workers_do_not_outlive_a_sigkilled_service(tmp_path: Path, bulk_ledger: Path) -> None:
    """``stella serve`` SIGKILLed (no ``finally`` runs): its workers stop by themselves, none is orphaned."""
    store_url = f"sqlite:///{tmp_path / 'runs.db'}"
    with start_service(tmp_path / "home", bulk_ledger, store_url, workers=2) as service:
        workers = _children(service.process.pid)
        assert len(workers) == 2, workers
        service.process.kill()
        service.process.wait()
        deadline = time.monotonic() + 30
        alive = set(workers)
        while alive and time.monotonic() < deadline:
            for pid in list(alive):
                with contextlib.suppress(FileNotFoundError):
                    if Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z":
                        continue
                alive.discard(pid)
            time.sleep(0.2)
        for pid in alive:  # never leave an orphan behind, even when the assertion fails
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert not alive, f"workers {sorted(alive)} outlived their service"


def _log_count(path: Path, event: str) -> int:
    return path.read_text(errors="replace").count(f'"event": "{event}"') if path.exists() else 0


def _until(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.slow
def test_worker_rides_out_a_store_outage_and_stops_during_one(tmp_path: Path, bulk_ledger: Path) -> None:
    """PostgreSQL stopped under a running worker: the worker backs off instead of dying
    (or hanging), takes runs again once the server is back, and a SIGTERM during an
    outage stops it at once. The API answers 502 ERR_EXPORT_REMOTE meanwhile, not 500."""
    bin_dir = find_pg_bin()
    require(bin_dir is not None, "PostgreSQL server binaries (Debian postgresql)")
    assert bin_dir is not None
    with (
        postgres_cluster(bin_dir) as cluster,
        start_service(tmp_path / "home", bulk_ledger, cluster.url, workers=0, env=LEASE) as service,
    ):
        token = service.token("bulk")
        log = service.home / "worker.log"
        with _worker(service, bulk_ledger, "worker") as worker:
            _until(lambda: _log_count(log, "worker_started") == 1, "the worker to start")
            cluster.stop()
            _until(lambda: _log_count(log, "store_unavailable") >= 2, "the worker to notice the outage")
            assert worker.poll() is None, log.read_text()[-2000:]
            with service.client(token) as client:
                down = client.get("/api/export/runs")
            assert down.status_code == 502 and down.json()["code"] == "ERR_EXPORT_REMOTE", down.text

            cluster.start()
            submitted = None
            for _ in range(20):  # the API's pooled connections died with the server: it reconnects
                submitted = service.submit(token, {"profile": "json:raw"})
                if submitted.status_code != 502:
                    break
                time.sleep(0.5)
            assert submitted is not None and submitted.status_code in (201, 202), submitted.text
            run = service.wait(token, submitted.json()["runId"], timeout=180)
            assert run["status"] == "succeeded", run

            cluster.stop()
            seen = _log_count(log, "store_unavailable")
            _until(lambda: _log_count(log, "store_unavailable") > seen, "the second outage")
            worker.terminate()
            assert worker.wait(timeout=30) == 0, log.read_text()[-2000:]
            cluster.start()  # so the service's own shutdown finds its store
