"""Schedules through the service (SQLite and PostgreSQL): API, webhook scope, worker launch, targets, metrics."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from stella.bundle.verify import verify_bundle
from stella.schedules.model import CronTrigger, Schedule
from stella.service.store.schedules import open_schedule_store
from stella.signers.registry import generate_key
from tests.service.support import Service, start_service
from tests.support import assert_trusted


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
        shown = client.get("/api/export/schedules/nightly").json()
        assert shown["nextSlot"].endswith(("00:00Z", "01:00:00Z"))  # 02:00 in Paris, in UTC
        (fire,) = shown["fires"]  # the slot shows its run's final state, not "queued it"
        assert fire["status"] == "succeeded" and fire["result"]["runStatus"] == "succeeded"
        assert fire["result"]["exportId"] == run["exportId"]
        assert client.post("/api/export/schedules/nightly/resume").json()["paused"] is False
        assert client.delete("/api/export/schedules/nightly").status_code == 204
        assert client.get("/api/export/schedules/nightly").status_code == 404


def test_a_fired_slot_mirrors_a_failed_publish_and_a_cancelled_run(service: Service, tmp_path: Path) -> None:
    token = service.token("acme")
    blocker = tmp_path / f"blocker-{service.store_url.split(':', 1)[0]}"
    blocker.write_text("a file where the target wants a folder")
    body = {"name": "mirrored", "profile": "json:raw", "at": "2099-01-01T00:00:00Z"}
    body |= {"selectors": ["kind=vex"], "targets": [f"file://{blocker}/share"]}
    with service.client(token) as client:
        assert client.post("/api/export/schedules", json=body).status_code == 201
        launched = client.post("/api/export/schedules/mirrored/run").json()
        assert launched["status"] == "launched"  # queued: not yet an outcome
        run = service.wait(token, launched["result"]["runId"])
        # The run succeeded (its bundle is downloadable); its one target did not publish.
        assert run["status"] == "succeeded" and run["result"]["targets"][0]["status"] == "failed"
        fire = client.get("/api/export/schedules/mirrored").json()["fires"][0]
        assert fire["status"] == "failed" and fire["result"]["runStatus"] == "succeeded"
        assert fire["result"]["error"]["code"] == run["result"]["targets"][0]["error"]["code"]
        assert fire["result"]["targets"] == run["result"]["targets"]

        again = client.post("/api/export/schedules/mirrored/run").json()
        client.post(f"/api/export/runs/{again['result']['runId']}/cancel")
        cancelled = service.wait(token, again["result"]["runId"])
        latest = client.get("/api/export/schedules/mirrored").json()["fires"][0]
        # A cancel can lose to a quick run, which then fails its target like the first one.
        expected = "cancelled" if cancelled["status"] == "cancelled" else "failed"
        assert latest["key"] == again["key"] and latest["status"] == expected
        metrics = client.get("/metrics").text
        assert client.delete("/api/export/schedules/mirrored").status_code == 204
    families = {family.name: family for family in text_string_to_metric_families(metrics)}
    outcomes = {
        s.labels["status"]: s.value
        for s in families["exporter_schedule_fires"].samples
        if s.labels["tenant"] == "acme"
    }
    assert outcomes.get("failed", 0) >= 1  # the metric counts slots by their runs' outcomes too
    routes = {s.labels["route"] for s in families["exporter_http_request_duration_seconds"].samples}
    assert "/api/export/schedules/{name}/run" in routes


def test_a_schedule_asking_for_a_signature_fails_its_slot_on_a_service_without_a_key(
    service: Service, tmp_path: Path
) -> None:
    token = service.token("acme")
    body = {"name": "must-sign", "profile": "json:raw", "cron": "0 3 * * *", "sign": True}
    with service.client(token) as client:
        refused = client.post("/api/export/schedules", json=body)
        assert refused.status_code == 400 and "signing key" in refused.json()["message"]
        assert client.post("/api/export/schedules", json={**body, "sign": "yes"}).status_code == 400
    # Stored while the service had a key, fired after a restart without one: the slot fails.
    store = open_schedule_store(service.store_url)
    store.create(
        Schedule("acme", "must-sign", "json:raw", CronTrigger("0 3 * * *"), datetime.now(UTC), sign=True)
    )
    with service.client(token) as client:
        fired = client.post("/api/export/schedules/must-sign/run")
        assert fired.status_code == 202, fired.text
        assert fired.json()["status"] == "failed"
        assert fired.json()["result"]["error"]["code"] == "ERR_EXPORT_USAGE"
        assert "no signing key" in fired.json()["result"]["error"]["message"]
        assert "runId" not in fired.json()["result"]  # no run, so no unsigned bundle
        assert client.delete("/api/export/schedules/must-sign").status_code == 204


def test_a_service_fired_slot_is_signed_with_the_services_key(service_ledger: Path, tmp_path: Path) -> None:
    private, public = tmp_path / "service.key", tmp_path / "service.pub"
    generate_key("ecdsa-p256", private, public, password=None)
    home = tmp_path / "signing-service"
    env = {"STELLA_SERVICE_SIGN_KEY": str(private)}
    with start_service(home, service_ledger, f"sqlite:///{home / 'runs.db'}", env=env) as signing:
        token = signing.token("acme")
        body = {"name": "signed", "profile": "json:raw", "on": "webhook", "quietSeconds": 0, "sign": True}
        with signing.client(token) as client:
            created = client.post("/api/export/schedules", json=body)
            assert created.status_code == 201 and created.json()["sign"] is True, created.text
        with signing.client(signing.token("acme", scopes=["export:trigger"])) as client:
            assert client.post("/api/export/triggers/signed").status_code == 202
        run = _wait_for_run(signing, token, "signed")
        assert run["status"] == "succeeded", run
        bundle = signing.home / "service" / "bundles" / "acme" / run["exportId"]
        assert_trusted(bundle, public, tmp_path)
