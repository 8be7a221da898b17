"""A real dask.distributed cluster (scheduler + 2 worker processes) on 127.0.0.1."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.services import free_port
from tests.support import VENV_BIN, require

__all__ = ["dask_cluster"]


@contextmanager
def dask_cluster(log_dir: Path, workers: int = 2) -> Iterator[str]:
    """Yield the scheduler address once ``workers`` workers have registered."""
    dask = VENV_BIN / "dask"
    require(dask.exists(), "dask (pip install 'apache-beam[dask]')")
    port, dashboard = free_port(), free_port()
    address = f"tcp://127.0.0.1:{port}"
    processes = [
        subprocess.Popen(
            [
                str(dask),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--dashboard-address",
                f"127.0.0.1:{dashboard}",
            ],
            stdout=(log_dir / "scheduler.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
    ]
    try:
        worker_args = ["--host", "127.0.0.1", "--nworkers", "1", "--nthreads", "1", "--memory-limit", "2GiB"]
        processes.extend(
            subprocess.Popen(
                [
                    str(dask),
                    "worker",
                    address,
                    *worker_args,
                    "--name",
                    f"w{index}",
                    "--dashboard-address",
                    "127.0.0.1:0",
                ],
                stdout=(log_dir / f"worker{index}.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
            for index in range(workers)
        )
        from distributed import Client

        deadline = time.monotonic() + 60
        while True:
            try:
                with Client(address, timeout=5) as client:
                    client.wait_for_workers(workers, timeout=max(1, deadline - time.monotonic()))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
