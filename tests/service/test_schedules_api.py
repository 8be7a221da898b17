"""Schedules through the service (SQLite and PostgreSQL): API, webhook scope, worker launch, targets, metrics."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from stella.bundle.verify import verify_bundle
from tests.service.support import Service


def _wait_for_run(service: Service, token: str, schedule: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with service.client(token) as client:
        while time.monotonic() < deadline:
            fires = client.get(f"/api/export/schedules/{schedule}").raise_for_status().json()["fires"]
            if fires and fires[0]["result"].get("runId"):
                return service.wait(token, fires[0]["result"]["runId"])
            time.sleep(0.2)
    raise AssertionError(f"schedule {schedule} never launched:\n{service.log.read_text()[-3000:]}")


def test_a_webhook_schedule_runs_in_the_service_and_publishes_to_its_target(
    service: Service, tmp_path: Path
) -> None:
    token = service.token("acme")
    share = tmp_path / f"share-{service.store_url.split(':', 1)[0]}"
    body = {
        "name": "on-hook",
        "profile": "json:raw",
        "on": "webhook",
        "quietSeconds": 0,
        "selectors": ["kind=advisory"],
        "targets": [f"file://{share}?keep=2"],
    }
    with service.client(token) as client:
        created = client.post("/api/export/schedules", json=body)
        assert created.status_code == 201, created.text
        assert client.post("/api/export/schedules", json=body).status_code == 409
        denied = client.post(
            "/api/export/schedules", json={**body, "name": "leaks", "targets": ["oci://127.0.0.2:1/x/y:1"]}
        )
        assert denied.status_code == 403 and denied.json()["code"] == "ERR_EXPORT_EGRESS_DENIED"
    # The webhook needs its own scope: export:run is not enough, export:trigger alone is.
    runner = service.token("acme", scopes=["export:read", "export:run"])
    with service.client(runner) as client:
        assert client.post("/api/export/triggers/on-hook").status_code == 403
    hook = service.token("acme", scopes=["export:trigger"])
    with service.client(hook) as client:
        fired = client.post("/api/export/triggers/on-hook")
        assert fired.status_code == 202, fired.text
        assert client.get("/api/export/schedules").status_code == 403  # and it cannot read anything
    with service.client(service.token("globex")) as other:
        assert other.get("/api/export/schedules/on-hook").status_code == 404  # another tenant's: not found

    run = _wait_for_run(service, token, "on-hook")
    assert run["status"] == "succeeded", run
    (target,) = run["result"]["targets"]
    assert target["status"] == "published" and target["kind"] == "file"
    assert verify_bundle(Path(target["location"])).report.ok

    with service.client(token) as client:
        metrics = client.get("/metrics").text
    families = {family.name: family for family in text_string_to_metric_families(metrics)}
    attempts = [s for s in families["exporter_publish_attempts"].samples if s.labels["kind"] == "file"]
    assert attempts and all(sample.value >= 1 for sample in attempts)
    lag = [s for s in families["exporter_schedule_lag_seconds"].samples if s.name.endswith("_count")]
    assert any(sample.labels["tenant"] == "acme" and sample.value >= 1 for sample in lag)


def test_run_now_pause_and_delete_through_the_api(service: Service, tmp_path: Path) -> None:
    token = service.token("acme")
    with service.client(token) as client:
        body = {"name": "nightly", "profile": "json:raw", "cron": "0 2 * * *", "timezone": "Europe/Paris"}
        assert client.post("/api/export/schedules", json=body).status_code == 201
        paused = client.post("/api/export/schedules/nightly/pause").json()
        assert paused["paused"] is True
        now = client.post("/api/export/schedules/nightly/run")
        assert now.status_code == 202 and now.json()["key"].startswith("manual:")
    run = service.wait(token, now.json()["result"]["runId"])
    assert run["status"] == "succeeded"
    with service.client(token) as client:
        assert client.post("/api/export/schedules/nightly/resume").json()["paused"] is False
        assert client.delete("/api/export/schedules/nightly").status_code == 204
        assert client.get("/api/export/schedules/nightly").status_code == 404
