"""Starting ``stella serve`` as a user would, and talking to it over loopback HTTP."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from stella.service.auth import SCOPES, LocalKeys, issue_token

__all__ = ["ERROR_KEYS", "Service", "assert_error_body", "start_service"]

_STARTUP = 60.0
ERROR_KEYS = {"code", "message", "details", "traceId", "timestamp"}


def assert_error_body(response: httpx.Response, code: str) -> None:
    """The one error body every route answers with: its keys, code, and the trace id of the response."""
    assert response.headers["content-type"] == "application/json", response.text[:300]
    error = response.json()
    assert set(error) == ERROR_KEYS, error
    assert error["code"] == code, error
    assert error["traceId"] == response.headers["x-trace-id"]


@dataclass
class Service:
    url: str
    home: Path
    store_url: str
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def keys(self) -> LocalKeys:
        return LocalKeys.load_or_create(self.home / "service" / "token-signing.key")

    def token(
        self, *tenants: str, scopes: Sequence[str] = SCOPES, ttl: int = 3600, now: float | None = None
    ) -> str:
        return issue_token(
            self.keys, tenants=tenants, scopes=scopes, subject="tester", ttl_seconds=ttl, now=now
        )

    def client(self, token: str | None = None, **headers: str) -> httpx.Client:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0)

    def submit(self, token: str, body: dict[str, Any], **headers: str) -> httpx.Response:
        with self.client(token) as client:
            return client.post("/api/export/runs", json=body, headers=headers)

    def wait(
        self, token: str, run_id: str, timeout: float = 120.0, until: Sequence[str] = ()
    ) -> dict[str, Any]:
        """Poll a run until it is terminal (or in one of ``until``)."""
        terminal = set(until) or {"succeeded", "failed", "cancelled", "expired"}
        deadline = time.monotonic() + timeout
        with self.client(token) as client:
            while True:
                run: dict[str, Any] = client.get(f"/api/export/runs/{run_id}").raise_for_status().json()
                if run["status"] in terminal:
                    return run
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"run {run_id} still {run['status']} after {timeout}s:\n{self.log.read_text()[-3000:]}"
                    )
                time.sleep(0.2)


@contextlib.contextmanager
def start_service(
    home: Path, ledger: Path, store_url: str, *, workers: int = 1, env: dict[str, str] | None = None
) -> Iterator[Service]:
    """``stella serve --port 0`` in its own STELLA_HOME; yields once /readyz answers."""
    home.mkdir(parents=True, exist_ok=True)
    out, log = home / "serve.out", home / "serve.log"
    full_env = {**os.environ, "STELLA_HOME": str(home), "STELLA_LEDGER": str(ledger), **(env or {})}
    command = [
        sys.executable,
        "-m",
        "stella",
        "serve",
        "--port",
        "0",
        "--workers",
        str(workers),
        "--store",
        store_url,
    ]
    with out.open("wb") as stdout, log.open("wb") as stderr:
        process = subprocess.Popen(
            command, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, env=full_env
        )
    try:
        deadline = time.monotonic() + _STARTUP
        url = None
        while url is None:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"stella serve did not start ({process.returncode}):\n{log.read_text()[-3000:]}"
                )
            for line in out.read_text().splitlines():
                if line.startswith("Export Center"):
                    url = line.split()[2]
            time.sleep(0.1)
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"stella serve never became ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield Service(url, home, store_url, log, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
