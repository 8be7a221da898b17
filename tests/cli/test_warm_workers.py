"""``--workers N``: worker processes started with the command (runners/warm.py).

The run must be the same run (byte-identical bundle, progress relayed), its workers
must really be the processes started ahead, and no process may outlive the command,
whether a run took it or not.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runners.warm import WarmPool, _workers_asked
from tests.support import REPO, stella_cli, tree_digests


@pytest.mark.parametrize(
    ("argv", "count"),
    [
        (["export", "run", "--tenant", "t", "--workers", "2"], 2),
        (["-v", "export", "run", "--workers=3", "--json"], 3),
        (["export", "run", "--workers", "1"], 1),
        (["export", "run"], 0),
        (["export", "verify", "--workers", "2"], 0),  # not a run
        (["ledger", "generate", "--workers", "2"], 0),  # its own workers, not Beam's
        (["export", "run", "--workers", "2", "--server", "http://127.0.0.1:1"], 0),  # the server's workers
        (["export", "run", "--workers", "2", "--", "--runner=DaskRunner"], 0),
        (["export", "run", "--workers", "two"], 0),  # the parser reports it
    ],
)
def test_the_prescan_starts_processes_only_for_an_embedded_multi_worker_run(
    argv: list[str], count: int
) -> None:
    assert _workers_asked(argv) == count


def test_processes_no_run_takes_exit_when_the_pool_closes() -> None:
    pool = WarmPool(2, verbose=False)
    processes = list(pool._idle)
    assert all(p.poll() is None for p in processes)
    pool.close()
    assert [p.returncode for p in processes] == [0, 0]  # end of input: "not needed", a clean exit


def test_a_warm_process_that_died_is_replaced_not_waited_for() -> None:
    pool = WarmPool(1, verbose=False)
    (dead,) = pool._idle
    dead.send_signal(signal.SIGKILL)
    dead.wait()
    fresh = pool.attach({"CONTROL_API_SERVICE_DESCRIPTOR": 'url: "127.0.0.1:9"', "PIPELINE_OPTIONS": "{}"})
    try:
        assert fresh.pid != dead.pid
        time.sleep(0.5)
        assert fresh.poll() is None  # running Beam's harness (dialling the runner that isn't there)
    finally:
        fresh.kill()
        pool.close()


@pytest.mark.slow
def test_workers_2_runs_on_the_processes_started_ahead_and_gives_the_same_bundle(
    small_ledger: Path, small_bundle: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    ran = stella_cli(
        "-v", "export", "run", "--tenant", "acme", "--ledger", str(small_ledger), "--profile", "json:raw",
        "--out", str(out), "--workers", "2", env={"STELLA_HOME": str(tmp_path / "home")},
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    lines = ran.stderr.splitlines()
    (ahead,) = [line.split(": ", 1)[1] for line in lines if "worker processes ahead: " in line]
    attached = [
        line.split("process ")[1].split(",")[0] for line in lines if "started with the command" in line
    ]
    assert sorted(attached) == sorted(ahead.split(", ")), ran.stderr  # both, and none spawned later
    (bundle,) = [path for path in out.iterdir() if path.is_dir()]
    assert tree_digests(bundle) == tree_digests(small_bundle)


def test_a_command_that_fails_early_leaves_no_process_behind(tmp_path: Path) -> None:
    """A usage error after the pre-scan started two processes: both end with the command."""
    before = _warm_processes()
    ran = subprocess.run(
        [sys.executable, "-m", "stella", "export", "run", "--tenant", "acme", "--profile", "json:raw",
         "--ledger", str(tmp_path / "none"), "--out", str(tmp_path / "out"), "--workers", "2"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert ran.returncode != 0
    assert _warm_processes() <= before, ran.stderr


def _warm_processes() -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"runners.warm" in command:
                found.add(int(entry.name))
    return found
