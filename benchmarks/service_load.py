"""Loopback load on the Export Center API: N concurrent clients polling and downloading
while runs execute. Reports the p50/p95/max latency of status calls and error counts.

    python -m benchmarks --only service_load            # starts its own `stella serve`, 200 clients

Bounded: a fixed number of rounds per client, loopback only, stops by itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

__all__ = ["LoadReport", "baseline_status_ms", "run", "run_load"]


@dataclass
class LoadReport:
    clients: int
    requests: int = 0
    errors: list[str] = field(default_factory=list)
    status_ms: list[float] = field(default_factory=list)
    downloaded_bytes: int = 0
    seconds: float = 0.0

    def summary(self) -> dict[str, object]:
        ordered = sorted(self.status_ms)
        p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)] if ordered else 0.0
        return {
            "clients": self.clients,
            "requests": self.requests,
            "errors": len(self.errors),
            "statusCalls": len(ordered),
            "statusP50ms": round(statistics.median(ordered), 2) if ordered else 0.0,
            "statusP95ms": round(p95, 2),
            "statusMaxMs": round(ordered[-1], 2) if ordered else 0.0,
            "downloadedBytes": self.downloaded_bytes,
            "seconds": round(self.seconds, 2),
            "requestsPerSecond": round(self.requests / self.seconds, 1) if self.seconds else 0.0,
        }


async def _client(
    url: str, token: str, run_ids: list[str], download_id: str, index: int, rounds: int, report: LoadReport
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60.0) as client:
        for round_ in range(rounds):
            run_id = run_ids[(index + round_) % len(run_ids)]
            started = time.perf_counter()
            try:
                status = await client.get(f"/api/export/runs/{run_id}")
                report.status_ms.append((time.perf_counter() - started) * 1000)
                listing = await client.get("/api/export/runs", params={"limit": "5"})
                responses = [status, listing]
                if (index + round_) % 2 == 0:
                    download = await client.get(f"/api/export/runs/{download_id}/download")
                    report.downloaded_bytes += len(download.content)
                    responses.append(download)
            except httpx.HTTPError as exc:
                report.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            report.requests += len(responses)
            report.errors += [
                f"{r.request.url.path} -> {r.status_code}" for r in responses if r.status_code >= 400
            ]


def baseline_status_ms(url: str, token: str, run_id: str, calls: int = 50) -> dict[str, float]:
    """The in-run baseline: one client, one status call at a time (no queueing)."""
    timings = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        for _ in range(calls):
            started = time.perf_counter()
            client.get(f"/api/export/runs/{run_id}").raise_for_status()
            timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return {"p50ms": round(statistics.median(timings), 2), "p95ms": round(timings[int(calls * 0.95) - 1], 2)}


def run_load(
    url: str, token: str, run_ids: list[str], download_id: str, *, clients: int = 200, rounds: int = 5
) -> LoadReport:
    """``clients`` concurrent clients, each ``rounds`` x (status, list, every other round a download)."""
    report = LoadReport(clients)

    async def main() -> None:
        await asyncio.gather(
            *(_client(url, token, run_ids, download_id, i, rounds, report) for i in range(clients))
        )

    started = time.perf_counter()
    asyncio.run(main())
    report.seconds = time.perf_counter() - started
    return report


def run(records: int = 5000, clients: int = 200) -> None:
    """Start `stella serve` on a fresh home, make a ledger, then load it while 4 runs execute."""
    from stella.ledger.generate import generate_ledger
    from stella.ledger.store import LedgerStore
    from stella.service.auth import SCOPES, LocalKeys, issue_token

    with tempfile.TemporaryDirectory(prefix="stella-load-") as scratch:
        home = Path(scratch)
        generate_ledger(
            LedgerStore(str(home / "ledger")), "load", records, seed=1, ingested_at="2026-11-27T00:00:00Z"
        )
        env = {**os.environ, "STELLA_HOME": str(home), "STELLA_LEDGER": str(home / "ledger")}
        out = home / "serve.out"
        with out.open("wb") as stdout, (home / "serve.log").open("wb") as stderr:
            server = subprocess.Popen(
                [sys.executable, "-m", "stella", "serve", "--port", "0"],
                stdout=stdout,
                stderr=stderr,
                env=env,
            )
        try:
            while "Export Center" not in out.read_text():
                time.sleep(0.1)
            url = out.read_text().split()[2]
            keys = LocalKeys.load_or_create(home / "service" / "token-signing.key")
            token = issue_token(keys, tenants=["load"], scopes=SCOPES, subject="load", ttl_seconds=3600)
            with httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60
            ) as client:
                small = {
                    "profile": "json:raw",
                    "selectors": ["kind=vex"],
                }  # the bundle every client downloads
                first = client.post("/api/export/runs", json=small).json()["runId"]
                while client.get(f"/api/export/runs/{first}").json()["status"] != "succeeded":
                    time.sleep(0.2)
                runs = [
                    client.post(
                        "/api/export/runs", json={"profile": "json:raw", "selectors": [f"kind={k}"]}
                    ).json()["runId"]
                    for k in ("advisory", "sbom", "vex", "advisory,vex")
                ]
            report = run_load(url, token, runs, first, clients=clients, rounds=4)
            print(
                json.dumps(
                    {"records": records, **report.summary(), "sampleErrors": report.errors[:5]}, indent=2
                )
            )
        finally:
            server.terminate()
            server.wait(timeout=30)
