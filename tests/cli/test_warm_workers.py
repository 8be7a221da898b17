"""``--workers N``: worker processes forked (or spawned) ahead by the command (runners/warm.py).

The run must be the same run (byte-identical bundle, progress relayed), its workers
must really be the processes started ahead, and no process may outlive the command,
whether a run took it or not.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runners.warm import _workers_asked
from tests.support import REPO, processes_naming, stella_cli, tree_digests


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


# Pools are made in a fresh interpreter: forking this test process (its threads, its
# captured streams) is not what the CLI does, which forks with only its main thread.
_POOL_SCRIPT = """
import atexit, json, os, signal, sys, time
from runners.warm import WarmPool

def scenario(fork):
    {body}

print("RESULT", json.dumps(scenario({fork})))
"""


def _in_fresh_process(body: str, *, fork: bool) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    script = _POOL_SCRIPT.format(body=body.strip().replace("\n", "\n    "), fork=fork)
    ran = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    result = ran.stdout.split("RESULT ", 1)[1].splitlines()[0]
    return json.loads(result), ran


@pytest.mark.parametrize("fork", [True, False], ids=["forked", "spawned"])
def test_each_process_no_run_takes_exits_when_its_own_input_closes(fork: bool) -> None:
    """Closing one worker's input ends that worker only: no sibling holds its pipe open."""
    result, _ = _in_fresh_process(
        """
pool = WarmPool(2, verbose=False, fork=fork)
first, second = list(pool._idle)
alive = [first.poll() is None, second.poll() is None]
first.stdin.close()
first_code = first.wait(timeout=10)
second_alive = second.poll() is None
pool.close()
return {"kind": type(first).__name__, "alive": alive, "first": first_code,
        "second_alive": second_alive, "second": second.returncode}
""",
        fork=fork,
    )
    assert result == {
        "kind": "ForkedProcess" if fork else "Popen",
        "alive": [True, True],
        "first": 0,  # end of input: "not needed", a clean exit
        "second_alive": True,
        "second": 0,
    }


def test_a_spawned_worker_imports_this_package_whatever_the_current_folder_holds(tmp_path: Path) -> None:
    """``python -m`` puts the cwd first on sys.path: another checkout there must not answer for ours."""
    decoy = tmp_path / "runners"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("")
    (decoy / "warm.py").write_text("import sys\nsys.exit(3)  # another checkout's worker\n")
    result, _ = _in_fresh_process(
        f"""
os.chdir({str(tmp_path)!r})
pool = WarmPool(1, verbose=False, fork=False)
(worker,) = pool._idle
time.sleep(1.0)
alive = worker.poll() is None  # ours waits for its environment; the decoy exits 3 at once
pool.close()
return {{"alive": alive, "code": worker.returncode}}
""",
        fork=False,
    )
    assert result == {"alive": True, "code": 0}


@pytest.mark.parametrize("fork", [True, False], ids=["forked", "spawned"])
def test_a_warm_process_that_died_is_replaced_by_a_spawned_one(fork: bool) -> None:
    """Not waited for, and never forked late: by then the driver runs gRPC threads."""
    result, _ = _in_fresh_process(
        """
pool = WarmPool(1, verbose=False, fork=fork)
(dead,) = pool._idle
os.kill(dead.pid, signal.SIGKILL)
dead.wait()
fresh = pool.attach({"CONTROL_API_SERVICE_DESCRIPTOR": 'url: "127.0.0.1:9"', "PIPELINE_OPTIONS": "{}"})
time.sleep(0.5)
running = fresh.poll() is None  # in Beam's harness, dialling the runner that isn't there
fresh.kill()
pool.close()
return {"dead": dead.returncode, "replaced": fresh.pid != dead.pid, "kind": type(fresh).__name__,
        "running": running}
""",
        fork=fork,
    )
    assert result == {"dead": -signal.SIGKILL, "replaced": True, "kind": "Popen", "running": True}


def test_a_forked_worker_runs_none_of_the_commands_exit_handlers(tmp_path: Path) -> None:
    """A worker ends with ``os._exit``: the command's exit handlers (pool, telemetry) run once, in it."""
    ran = tmp_path / "exit-handlers"
    result, _ = _in_fresh_process(
        f"""
atexit.register(lambda: open({str(ran)!r}, "a").write(f"{{os.getpid()}}\\n"))
pool = WarmPool(2, verbose=False, fork=fork)
processes = list(pool._idle)
pool.close()
return {{"codes": [p.returncode for p in processes], "pid": os.getpid()}}
""",
        fork=True,
    )
    assert result["codes"] == [0, 0]
    assert ran.read_text() == f"{result['pid']}\n"


@pytest.mark.slow
def test_workers_2_runs_on_the_processes_started_ahead_and_gives_the_same_bundle(
    small_ledger: Path, small_bundle: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    ran = stella_cli(
        "-v", "export", "run", "--tenant", "acme", "--ledger", str(small_ledger), "--profile", "json:raw",
        "--out", str(out), "--workers", "2", "--json", env={"STELLA_HOME": str(tmp_path / "home")},
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    lines = ran.stderr.splitlines()
    (ahead,) = [line.split(": ", 1)[1] for line in lines if "forked 2 worker processes ahead: " in line]
    attached = [
        line.split("process ")[1].split(",")[0] for line in lines if "started with the command" in line
    ]
    assert sorted(attached) == sorted(ahead.split(", ")), ran.stderr  # both, and none spawned later
    (bundle,) = [path for path in out.iterdir() if path.is_dir()]
    assert tree_digests(bundle) == tree_digests(small_bundle)
    assert json.loads(ran.stdout)["bundle"] == str(bundle)  # the workers wrote nothing to stdout


def test_a_command_that_fails_early_leaves_no_process_behind(tmp_path: Path) -> None:
    """A bad ledger path after the CLI forked two processes: both end with the command."""
    ran = subprocess.run(
        [sys.executable, "-m", "stella", "-v", "export", "run", "--tenant", "acme", "--profile", "json:raw",
         "--ledger", str(tmp_path / "none"), "--out", str(tmp_path / "out"), "--workers", "2"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert ran.returncode != 0
    assert "forked 2 worker processes ahead" in ran.stderr
    assert processes_naming(str(tmp_path)) == set(), ran.stderr  # forked workers share its command line
