"""Per-tenant quotas through the API (an in-process app and store, no worker: runs stay queued)."""

from __future__ import annotations

import warnings
from pathlib import Path

from stella.service.app import create_app
from stella.service.auth import SCOPES, LocalKeys, issue_token
from stella.service.config import ServiceConfig
from stella.service.store.sqlite import SqliteRunStore

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette 1.x nudges toward httpx2; its TestClient runs on httpx
    from starlette.testclient import TestClient


def test_quota_answers_429_with_retry_after(tmp_path: Path, service_ledger: Path) -> None:
    config = ServiceConfig.from_env(
        {"STELLA_HOME": str(tmp_path)}, ledger_root=str(service_ledger), max_active_runs=2, retry_after=9
    )
    store = SqliteRunStore(tmp_path / "runs.db")
    store.migrate()
    app = create_app(config, store)
    keys = LocalKeys.load_or_create(config.token_key)

    def headers(tenant: str) -> dict[str, str]:
        token = issue_token(keys, tenants=[tenant], scopes=SCOPES, subject="t", ttl_seconds=600)
        return {"Authorization": f"Bearer {token}"}

    body = {"profile": "json:raw"}
    with TestClient(app) as client:
        first = client.post("/api/export/runs", json=body, headers=headers("acme"))
        second = client.post("/api/export/runs", json=body, headers=headers("acme"))
        assert (first.status_code, second.status_code) == (202, 202)
        assert first.headers["x-stella-quota-limit"] == "2"
        assert (first.headers["x-stella-quota-remaining"], second.headers["x-stella-quota-remaining"]) == (
            "1",
            "0",
        )
        over = client.post("/api/export/runs", json=body, headers=headers("acme"))
        assert over.status_code == 429
        assert over.headers["retry-after"] == "9" and over.headers["x-stella-quota-remaining"] == "0"
        assert over.json()["code"] == "ERR_EXPORT_QUOTA" and over.json()["details"]["limit"] == 2
        assert client.post("/api/export/runs", json=body, headers=headers("globex")).status_code == 202
        cancelled = client.post(f"/api/export/runs/{first.json()['runId']}/cancel", headers=headers("acme"))
        assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
        assert client.post("/api/export/runs", json=body, headers=headers("acme")).status_code == 202
