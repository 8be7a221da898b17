"""Live progress with ``--workers N``: worker processes relay their progress to the driver
(transforms/progress.py), which shows it like a one-process run's (plain lines off a terminal)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import REPO, stella_cli
from transforms.progress import ENV_DIR, tail_progress

_WORKER = """
import logging
from transforms.progress import relay_progress
relay_progress()
logging.getLogger("transforms.ledger").info(
    "reading seg: 7 records", extra={"progress": {"stage": "read", "records": 7, "bytes": 70}}
)
logging.getLogger("transforms.ledger").info("not progress: never relayed")
"""


def test_a_worker_process_progress_reaches_the_driver_while_it_runs(caplog: pytest.LogCaptureFixture) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with caplog.at_level(logging.INFO, logger="transforms.progress"), tail_progress(True):
        assert os.environ[ENV_DIR]
        subprocess.run([sys.executable, "-c", _WORKER], env={**env, ENV_DIR: os.environ[ENV_DIR]}, check=True)
        deadline = time.monotonic() + 30
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.1)
        live = [record.getMessage() for record in caplog.records]  # before the run ends
    assert live == ["reading seg: 7 records"]
    assert caplog.records[0].progress == {"stage": "read", "records": 7, "bytes": 70}  # type: ignore[attr-defined]
    assert ENV_DIR not in os.environ


def test_one_process_runs_set_up_nothing() -> None:
    with tail_progress(False):
        assert ENV_DIR not in os.environ


@pytest.mark.slow
def test_workers_2_shows_records_and_bytes_per_stage(small_ledger: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    ran = stella_cli(
        "export", "run", "--tenant", "acme", "--ledger", str(small_ledger), "--profile", "json:raw",
        "--out", str(out), "--workers", "2", env={"STELLA_HOME": str(tmp_path / "home")},
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    (bundle,) = [path for path in out.iterdir() if path.is_dir()]
    records = sum(json.loads((bundle / "export.json").read_bytes())["counts"].values())
    lines = ran.stderr.splitlines()  # not a terminal: plain lines
    read = [line for line in lines if line.startswith("read: ")]
    write = [line for line in lines if line.startswith("write: ")]
    assert read and read[-1].startswith(f"read: {records:,} records, "), ran.stderr
    assert write and write[-1].startswith(f"write: {records:,} records, "), ran.stderr
    assert "MiB" in read[-1] or "KiB" in read[-1]
    assert "INFO" not in ran.stderr  # Beam's and the workers' own logging stay quiet
