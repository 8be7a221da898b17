"""Debian's ``docker-registry`` (distribution 2.8) on 127.0.0.1, for push/pull tests.

The registry gets a free loopback port, its own storage folder and log file, and a
clean environment (``REGISTRY_*`` variables would override the config). It is stopped
by its process id when the context exits.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.services import free_port, stop

__all__ = ["Registry", "run_registry"]

_STARTUP_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Registry:
    """A running registry: ``address`` is ``127.0.0.1:PORT`` (what references start with)."""

    host: str
    port: int
    storage: Path
    log: Path

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"


def _config(storage: Path, port: int, *, readonly: bool) -> str:
    maintenance = "  maintenance:\n    readonly:\n      enabled: true\n" if readonly else ""
    return (
        "version: 0.1\n"
        "log:\n  level: info\n  fields:\n    service: registry\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {storage}\n"
        "  delete:\n    enabled: true\n"
        f"{maintenance}"
        "http:\n"
        f"  addr: 127.0.0.1:{port}\n"
        "  secret: stella-tests-only\n"
    )


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited with {process.returncode}: {log.read_text()[-2000:]}")
        with (
            contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
            urllib.request.urlopen(url + "/v2/", timeout=2) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(
        f"docker-registry did not answer /v2/ within {_STARTUP_TIMEOUT}s: {log.read_text()[-2000:]}"
    )


@contextlib.contextmanager
def run_registry(
    binary: str, workdir: Path, *, readonly: bool = False, port: int | None = None
) -> Iterator[Registry]:
    """Start ``docker-registry serve`` in ``workdir`` (on ``port``, else a free one); yield once ``GET /v2/`` answers 200."""
    workdir.mkdir(parents=True, exist_ok=True)
    storage = workdir / "storage"
    storage.mkdir(exist_ok=True)
    port = port or free_port()
    config = workdir / "config.yml"
    config.write_text(_config(storage, port, readonly=readonly))
    log = workdir / "registry.log"
    env = {key: value for key, value in os.environ.items() if not key.startswith("REGISTRY_")}
    env.update({"HOME": str(workdir), "OTEL_TRACES_EXPORTER": "none"})
    with log.open("wb") as log_handle:
        process = subprocess.Popen(
            [binary, "serve", str(config)],
            stdout=log_handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
            env=env,
        )
        try:
            registry = Registry("127.0.0.1", port, storage, log)
            _wait_ready(registry.url, process, log)
            yield registry
        finally:
            stop(process)
