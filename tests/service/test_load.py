"""Bounded loopback load: 200 concurrent clients polling and downloading while 4 runs
execute, against the shared service. Asserts no error response; the p95 latency of
status calls is reported (.cache/service-load.json), never asserted (benchmarks/ measures).
"""

from __future__ import annotations

import json
import os
import time

import pytest

from benchmarks.service_load import baseline_status_ms, run_load
from tests.service.support import Service
from tests.support import CACHE


@pytest.mark.slow
@pytest.mark.parametrize("service", ["sqlite"], indirect=True)
def test_200_clients_poll_and_download_while_4_runs_execute(service: Service) -> None:
    token = service.token("globex")
    with service.client(token) as client:
        deadline = time.monotonic() + 120
        while any(
            client.get("/api/export/runs", params={"status": s}).json()["items"]
            for s in ("queued", "running")
        ):
            assert time.monotonic() < deadline, "globex runs of other tests never finished"
            time.sleep(0.2)
        published = client.post("/api/export/runs", json={"profile": "json:raw"}).json()["runId"]
        assert service.wait(token, published)["status"] == "succeeded"
        runs = []
        for kinds in ("advisory", "sbom", "vex", "advisory,vex"):
            response = client.post(
                "/api/export/runs", json={"profile": "json:raw", "selectors": [f"kind={kinds}"]}
            )
            assert response.status_code == 202, response.text
            runs.append(response.json()["runId"])
        over = client.post("/api/export/runs", json={"profile": "json:raw"})
        assert over.status_code == 429  # the 4 runs fill globex's quota
    baseline = baseline_status_ms(service.url, token, published, calls=20)
    report = run_load(service.url, token, runs, published, clients=200, rounds=4)
    summary = {**report.summary(), "baselineOneClient": baseline, "loadAverage": os.getloadavg()[0]}
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "service-load.json").write_text(json.dumps(summary, indent=2))
    print("service load:", json.dumps(summary))
    assert report.errors == [], report.errors[:10]
    assert summary["statusCalls"] == 200 * 4 and summary["downloadedBytes"] > 0
    assert {service.wait(token, run_id)["status"] for run_id in runs} == {"succeeded"}
