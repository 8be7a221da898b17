"""``--workers N``: the N worker processes start with the command, not after the plan.

Beam's multi-process embedded runner starts its SDK workers when the first stage runs.
Each is a fresh interpreter that imports Beam (about a second on the 2-core VM) after the
driver has imported Beam and planned the pipeline, so that second is serial: at 1M
documents it was a third of what kept a two-worker json:raw export under 1.6x a one-worker
one. Here the CLI starts the worker processes first thing (:func:`start_for`); they import
Beam and the transforms while the driver does the same on the other core, then wait on
their stdin. The export's runner (:func:`runners.warm_runner.runner_for`) gives each of Beam's worker handlers
one of them, through an environment of ours, with the variables Beam's own spawner sets
(control endpoint, pipeline options, worker id) on top of the driver's environment at that
moment (so ``STELLA_PROGRESS_DIR`` & co. arrive as if inherited). Not the logging endpoint:
Beam's spawner runs a gRPC server per worker only to log its records again in the driver;
these workers log to the stderr they inherited (silenced unless ``-v``), and progress
reaches the driver through ``transforms.progress`` as with Beam's own workers.

The same SDK harness then runs the same bundles: the output is byte-identical (the
``--workers`` tests compare bundles). A run this command did not warm (a library call, the
service, ``--direct_*`` flags given by hand, a warm process that died) gets Beam's own
processes or a cold one of ours, never a hang.

The worker side is ``python -m runners.warm``: import, wait for one line of JSON (the
environment), run Beam's ``sdk_worker_main``; end of input without a line means the run did
not need it, and it exits.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Sequence
from typing import IO

__all__ = ["WARM_URN", "WarmPool", "main", "pool", "pool_of", "start_for"]

WARM_URN = "stella:environment:warm-process:v1"
_POOLS: dict[str, WarmPool] = {}
_LOG = logging.getLogger(__name__)
# What every profile's workers import on their first bundle, taken while the driver plans.
_PRELOAD = ("apache_beam.runners.worker.sdk_worker_main", "transforms.ledger", "transforms.shards")


class WarmPool:
    """Worker processes started ahead, handed out one per Beam worker handler."""

    def __init__(self, count: int, *, verbose: bool) -> None:
        self.id = uuid.uuid4().hex
        self.count = count
        self._stderr = None if verbose else subprocess.DEVNULL  # as silenced_stderr does for Beam's
        self._lock = threading.Lock()
        self._idle = [self._spawn() for _ in range(count)]
        self._busy: list[subprocess.Popen[bytes]] = []
        _LOG.debug("started %d worker processes ahead: %s", count, ", ".join(str(p.pid) for p in self._idle))
        _POOLS[self.id] = self
        atexit.register(self.close)

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "runners.warm"], stdin=subprocess.PIPE, stderr=self._stderr
        )

    def attach(self, variables: dict[str, str]) -> subprocess.Popen[bytes]:
        """A waiting process (or a new one, if none is left alive) now running Beam's harness."""
        line = json.dumps({**os.environ, **variables}).encode() + b"\n"
        while True:
            with self._lock:
                process = self._idle.pop(0) if self._idle else self._spawn()
                self._busy.append(process)
            stdin: IO[bytes] | None = process.stdin
            assert stdin is not None
            try:
                stdin.write(line)
                stdin.close()
                return process
            except (BrokenPipeError, ValueError):  # it died waiting: the next one, or a cold one
                continue

    def close(self) -> None:
        """End the processes no run took (their stdin closes: they exit), and forget the pool."""
        _POOLS.pop(self.id, None)
        with self._lock:
            idle, self._idle = self._idle, []
        for process in idle:
            if process.stdin is not None:
                process.stdin.close()
        for process in [*idle, *self._busy]:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _workers_asked(argv: Sequence[str]) -> int:
    """N of ``export run ... --workers N`` (0 for anything else): a pre-scan; the parser decides."""
    words = list(argv)
    if "export" not in words or "run" not in words[words.index("export") :]:
        return 0
    if any(w == "--server" or w.startswith(("--server=", "--runner", "--direct_")) for w in words):
        return 0
    for index, word in enumerate(words):
        value = word.split("=", 1)[1] if word.startswith("--workers=") else None
        if word == "--workers" and index + 1 < len(words):
            value = words[index + 1]
        if value is not None:
            return int(value) if value.isdigit() else 0
    return 0


def start_for(argv: Sequence[str], *, verbose: bool) -> WarmPool | None:
    """Start the worker processes ``argv`` will ask for, before this process imports Beam."""
    count = _workers_asked(argv)
    return WarmPool(count, verbose=verbose) if count > 1 else None


def pool_of(count: int) -> WarmPool | None:
    """This command's warm pool of ``count`` processes, if it started one."""
    return next((p for p in _POOLS.values() if p.count == count), None)


def pool(pool_id: str) -> WarmPool:
    """The pool an environment names (in this process: the driver's)."""
    return _POOLS[pool_id]


def main() -> int:
    """The worker side: preload, wait for the environment, run Beam's SDK harness."""
    import importlib

    for module in _PRELOAD:
        importlib.import_module(module)
    line = sys.stdin.buffer.readline()
    if not line.strip():
        return 0  # the run did not need this process
    os.environ.update(json.loads(line))
    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main(sys.argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
