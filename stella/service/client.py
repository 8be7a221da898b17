"""A client of the Export Center API: what ``stella --server URL …`` uses.

Errors come back as the server's ``{code, message, …}`` and are raised as a
:class:`RemoteApiError` carrying that code, so the CLI exits with the same status as
when the same failure happens locally. Downloads resume: bytes already on disk are kept
(``.part``), the rest is asked for with ``Range`` + ``If-Range`` (so a changed file
restarts instead of splicing), and the whole file must match the run's digest before it
is renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from stella.errors import EXIT_CODES, BundleIntegrityError, StellaError, UsageError
from stella.model import validate_tenant

__all__ = ["ApiClient", "RemoteApiError", "download_resumable"]

_ATTEMPTS = 5


class RemoteApiError(StellaError):
    """An error the server reported; ``code`` is the server's (unknown codes: ERR_EXPORT_REMOTE)."""

    def __init__(self, code: str, message: str, *, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message, details=details)
        self.code = code if code in EXIT_CODES else "ERR_EXPORT_REMOTE"


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        payload = response.json()
        code, message = str(payload["code"]), str(payload["message"])
        details = dict(payload.get("details") or {}, traceId=payload.get("traceId"))
    except (ValueError, KeyError, TypeError):
        code, message, details = "ERR_EXPORT_REMOTE", f"HTTP {response.status_code}", {}
    raise RemoteApiError(code, message, details=details)


def _server_url(server: str) -> httpx.URL:
    """``--server`` as an http(s) URL with a host; anything else is the caller's mistake (exit 2)."""
    try:
        url = httpx.URL(server.rstrip("/"))
    except httpx.InvalidURL as exc:
        raise UsageError(f"--server {server!r}: {exc}", details={"server": server}) from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise UsageError(
            f"--server {server!r}: expected http://HOST[:PORT] or https://HOST[:PORT]",
            details={"server": server},
        )
    return url


class ApiClient:
    def __init__(
        self, server: str, token: str | None, tenant: str | None = None, *, timeout: float = 60.0
    ) -> None:
        if not token:
            raise UsageError("no API token: set STELLA_TOKEN (stella auth token --tenant T --scope …)")
        base = _server_url(server)
        if not token.isascii() or not token.isprintable():
            raise UsageError("STELLA_TOKEN holds characters a token never has (non-ASCII or control)")
        headers = {"Authorization": f"Bearer {token}", "User-Agent": "stella-cli"}
        if tenant:
            headers["X-Stella-Tenant"] = validate_tenant(tenant)
        self._http = httpx.Client(base_url=base, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, f"/api/export{path}", **kwargs)
        except httpx.TransportError as exc:
            raise RemoteApiError("ERR_EXPORT_REMOTE", f"cannot reach the server: {exc}") from exc
        _raise_for(response)
        return response.json() if response.content else None

    def profiles(self) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", "/profiles")
        return result

    def submit(self, body: Mapping[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        result: dict[str, Any] = self._json("POST", "/runs", json=dict(body), headers=headers)
        return result

    def run(self, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/runs/{run_id}")
        return result

    def runs(self, **query: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", "/runs", params={k: v for k, v in query.items() if v})
        return result

    def schedules(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._json("GET", "/schedules")["items"]
        return result

    def schedule(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/schedules/{name}")
        return result

    def create_schedule(self, body: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._json("POST", "/schedules", json=dict(body))
        return result

    def schedule_action(self, name: str, action: str) -> dict[str, Any]:
        """``pause`` and ``resume`` answer the schedule; ``run`` answers the fired slot."""
        result: dict[str, Any] = self._json("POST", f"/schedules/{name}/{action}")
        return result

    def delete_schedule(self, name: str) -> None:
        self._json("DELETE", f"/schedules/{name}")

    def events(self, run_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """Follow a run's SSE stream to its end, reconnecting with Last-Event-ID if it drops."""
        last = 0
        for _attempt in range(_ATTEMPTS):
            try:
                headers = {"Last-Event-ID": str(last)}
                with self._http.stream(
                    "GET", f"/api/export/runs/{run_id}/events", headers=headers, timeout=None
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        _raise_for(response)
                    kind, data = "", ""
                    for line in response.iter_lines():
                        if line.startswith("id: "):
                            last = int(line[4:])
                        elif line.startswith("event: "):
                            kind = line[7:]
                        elif line.startswith("data: "):
                            data = line[6:]
                        elif not line and kind:
                            yield kind, json.loads(data)
                            kind, data = "", ""
                return
            except httpx.TransportError:
                time.sleep(1.0)
        raise RemoteApiError("ERR_EXPORT_REMOTE", f"lost the event stream of run {run_id}")

    def stream(self, path: str, headers: Mapping[str, str]) -> Any:
        return self._http.stream("GET", f"/api/export{path}", headers=dict(headers), timeout=None)


def download_resumable(
    client: ApiClient,
    run: Mapping[str, Any],
    target: Path,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Download a run's archive to ``target``, resuming a ``.part`` file, digest-checked.

    Raises:
        RemoteApiError: the server refused (not found, not ready, no scope, ...).
        BundleIntegrityError: the bytes never matched the run's digest.
    """
    result = run.get("result") or {}
    digest, size = str(result.get("archiveDigest", "")), int(result.get("archiveBytes", 0))
    if not digest:
        raise RemoteApiError(
            "ERR_EXPORT_NOT_READY", f"run {run['runId']} has no published bundle ({run['status']})"
        )
    part = target.with_name(target.name + ".part")
    target.parent.mkdir(parents=True, exist_ok=True)
    restarted = False
    for _attempt in range(_ATTEMPTS):
        have = part.stat().st_size if part.exists() else 0
        if have > size:
            part.unlink()
            have = 0
        headers = {"If-Range": f'"{digest}"', "Range": f"bytes={have}-"} if 0 < have < size else {}
        if have < size:
            try:
                with client.stream(f"/runs/{run['runId']}/download", headers) as response:
                    if response.status_code >= 400:
                        response.read()
                        _raise_for(response)
                    mode = "ab" if response.status_code == 206 else "wb"
                    with part.open(mode) as handle:
                        written = have if mode == "ab" else 0
                        for chunk in response.iter_bytes(1 << 16):
                            handle.write(chunk)
                            written += len(chunk)
                            if progress is not None:
                                progress(written, size)
            except httpx.TransportError:
                time.sleep(0.5)
                continue  # keep what arrived; the next attempt asks for the rest
        if _sha256(part) == digest:
            os.replace(part, target)
            return target
        if restarted:
            break
        part.unlink()  # resumed onto bytes that were not this file's: start over once
        restarted = True
    raise BundleIntegrityError(
        f"the download of run {run['runId']} never matched its digest {digest}",
        details={"runId": run["runId"], "expected": digest},
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"
