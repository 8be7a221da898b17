"""A real dask.distributed cluster (scheduler + 2 worker processes) on 127.0.0.1.

Each worker runs in its own working directory with its own TMPDIR, like a worker on
another host: a step that relied on the driver's cwd or temp folder would not find it.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.services import free_port
from tests.support import VENV_BIN, require

__all__ = ["dask_cluster"]


@contextmanager
def dask_cluster(
    log_dir: Path, workers: int = 2, *, env: dict[str, str] | None = None, driver_only: Path | None = None
) -> Iterator[str]:
    """Yield the scheduler address once ``workers`` workers have registered.

    ``env`` is added to every process's environment (e.g. ``STORAGE_EMULATOR_HOST``).
    Nothing under ``driver_only`` can be opened by a worker (:mod:`tests.services.dask_driver_only`).
    """
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
            env={**os.environ, **(env or {})},
        )
    ]
    try:
        worker_args = ["--host", "127.0.0.1", "--nworkers", "1", "--nthreads", "1", "--memory-limit", "2GiB"]
        worker_env = {**os.environ, **(env or {})}
        if driver_only is not None:
            worker_args += ["--preload", str(Path(__file__).with_name("dask_driver_only.py"))]
            worker_env["STELLA_TEST_DRIVER_ONLY"] = str(driver_only)
        homes = [log_dir / f"worker{index}-home" for index in range(workers)]
        for home in homes:
            (home / "tmp").mkdir(parents=True)
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
                cwd=homes[index],
                env={**worker_env, "TMPDIR": str(homes[index] / "tmp")},
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
