"""``--workers N``: the N worker processes are forked from the command once it has imported.

Beam's multi-process embedded runner starts its SDK workers when the first stage runs:
each a fresh interpreter that imports Beam and the transforms (about a second of CPU on
the 2-core VM) after the driver has imported Beam and planned the pipeline, so that
second is serial. Here the CLI forks the N worker processes right after its own imports
(:func:`start_for`, called once the parser, which imports every command's modules, Beam
included, is built): a forked process starts with all of that imported, so a worker costs
neither the second nor the CPU it would take from the driver. They wait on a pipe while
the driver plans. The export's runner (:func:`runners.warm_runner.runner_for`) gives each
of Beam's worker handlers one of them, through an environment of ours, with the variables
Beam's own spawner sets (control endpoint, pipeline options, worker id) on top of the
driver's environment at that moment (so ``STELLA_PROGRESS_DIR`` & co. arrive as if
inherited). Not the logging endpoint: Beam's spawner runs a gRPC server per worker only to
log its records again in the driver; these workers log to the stderr they inherited
(silenced unless ``-v``), and progress reaches the driver through ``transforms.progress``
as with Beam's own workers.

An earlier version spawned fresh interpreters first thing instead, to import on the other
core while the driver imported: on two cores three importing processes delayed the
driver's own start by ~0.7 s and the first segment by ~1 s against one worker
(docs/benchmarks.md). Forking needs a process with one thread: the CLI at that point has
only its main thread (gRPC, which must not be forked once started, has started nothing);
a pool asked for elsewhere, or on a platform without ``fork``, spawns ``python -m
runners.warm`` processes, which import and then wait the same way.

The same SDK harness then runs the same bundles: the output is byte-identical (the
``--workers`` tests compare bundles). A run this command did not warm (a library call, the
service, ``--direct_*`` flags given by hand, a warm process that died) gets Beam's own
processes or a spawned one of ours, never a hang. Every worker reads one line of JSON (the
environment) and runs Beam's ``sdk_worker_main``; end of input without a line means the
run did not need it, and it exits.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Sequence
from typing import IO, NoReturn, Protocol

__all__ = [
    "WARM_URN",
    "ForkedProcess",
    "WarmPool",
    "WorkerProcess",
    "can_fork",
    "main",
    "pool",
    "pool_of",
    "start_for",
]

WARM_URN = "stella:environment:warm-process:v1"
_POOLS: dict[str, WarmPool] = {}
_LOG = logging.getLogger(__name__)
# What a spawned worker imports before it waits (a forked one has these from the driver).
_PRELOAD = ("apache_beam.runners.worker.sdk_worker_main", "transforms.ledger", "transforms.shards")


class WorkerProcess(Protocol):
    """What the pool and the runner use of a worker process: ``subprocess.Popen``'s names."""

    pid: int
    stdin: IO[bytes] | None
    returncode: int | None

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def kill(self) -> None: ...


class ForkedProcess:
    """A child of :func:`os.fork`, behind the part of ``Popen``'s interface the pool uses."""

    def __init__(self, pid: int, stdin: IO[bytes]) -> None:
        self.pid = pid
        self.stdin: IO[bytes] | None = stdin
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if timeout is None:
            if self.returncode is None:
                self.returncode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
            return self.returncode
        deadline = time.monotonic() + timeout
        while (code := self.poll()) is None:
            if time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"worker process {self.pid}", timeout)
            time.sleep(0.01)
        return code

    def kill(self) -> None:
        if self.returncode is None:
            os.kill(self.pid, signal.SIGKILL)


def can_fork() -> bool:
    """Whether this process may fork its workers: a POSIX fork, and no thread but this one."""
    return hasattr(os, "fork") and sys.platform.startswith("linux") and threading.active_count() == 1


class WarmPool:
    """Worker processes started ahead, handed out one per Beam worker handler."""

    def __init__(self, count: int, *, verbose: bool, fork: bool | None = None) -> None:
        self.id = uuid.uuid4().hex
        self.count = count
        self._verbose = verbose
        self._lock = threading.Lock()
        forking = can_fork() if fork is None else fork
        self._idle: list[WorkerProcess] = []
        self._busy: list[WorkerProcess] = []
        for _ in range(count):
            self._idle.append(self._fork() if forking else self._spawn())
        _LOG.debug(
            "%s %d worker processes ahead: %s",
            "forked" if forking else "started",
            count,
            ", ".join(str(p.pid) for p in self._idle),
        )
        _POOLS[self.id] = self
        atexit.register(self.close)

    def _spawn(self) -> WorkerProcess:
        stderr = None if self._verbose else subprocess.DEVNULL  # as silenced_stderr does for Beam's
        # -P: the cwd is not put first on sys.path (a checkout there would shadow the installed modules)
        return subprocess.Popen(
            [sys.executable, "-P", "-m", "runners.warm"], stdin=subprocess.PIPE, stderr=stderr
        )

    def _fork(self) -> WorkerProcess:
        # Unflushed output would be written twice (the child's copy of the buffers).
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:  # never returns
            siblings = [p.stdin.fileno() for p in self._idle if p.stdin is not None]
            _forked_child(reader, [writer, *siblings], verbose=self._verbose)
        os.close(reader)
        return ForkedProcess(pid, os.fdopen(writer, "wb"))

    def attach(self, variables: dict[str, str]) -> WorkerProcess:
        """A waiting process (or a new one, if none is left alive) now running Beam's harness.

        A replacement is spawned, never forked: by now this process runs the runner's
        gRPC server and threads.
        """
        line = json.dumps({**os.environ, **variables}).encode() + b"\n"
        while True:
            with self._lock:
                process = self._idle.pop(0) if self._idle else self._spawn()
                self._busy.append(process)
            stdin = process.stdin
            assert stdin is not None
            try:
                stdin.write(line)
                stdin.close()
                return process
            except (BrokenPipeError, ValueError):  # it died waiting: the next one, or a cold one
                continue

    def close(self) -> None:
        """End the processes no run took (their input closes: they exit), and forget the pool."""
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


def _forked_child(reader: int, inherited: list[int], *, verbose: bool) -> NoReturn:
    """The forked worker: look like a fresh interpreter, wait for the environment, serve, exit.

    It must never return into the command it was forked from, nor run its exit handlers.
    """
    code = 1
    try:
        for fd in inherited:  # the pool's write ends: each worker must see its own input close
            os.close(fd)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if not verbose:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)
            os.close(null)
        os.dup2(2, 1)  # the command's stdout carries its result (--json): nothing else
        _fresh_logging()
        with os.fdopen(reader, "rb") as source:
            code = _serve(source.readline())
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


def _fresh_logging() -> None:
    """Logging as a spawned worker has it: the command's handlers gone, Python's defaults."""
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        if isinstance(logger, logging.Logger):
            logger.handlers.clear()
            logger.setLevel(logging.NOTSET)
            logger.propagate = True
    logging.getLogger().setLevel(logging.WARNING)
    logging.basicConfig()


def _serve(line: bytes) -> int:
    """Run Beam's SDK harness in the environment ``line`` gives (none: not needed, exit)."""
    if not line.strip():
        return 0
    os.environ.update(json.loads(line))
    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main(sys.argv)
    return 0


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
    """Start the worker processes ``argv`` will ask for (call it once Beam is imported: see above)."""
    count = _workers_asked(argv)
    return WarmPool(count, verbose=verbose) if count > 1 else None


def pool_of(count: int) -> WarmPool | None:
    """This command's warm pool of ``count`` processes, if it started one."""
    return next((p for p in _POOLS.values() if p.count == count), None)


def pool(pool_id: str) -> WarmPool:
    """The pool an environment names (in this process: the driver's)."""
    return _POOLS[pool_id]


def main() -> int:
    """A spawned worker: preload, wait for the environment, run Beam's SDK harness."""
    import importlib

    for module in _PRELOAD:
        importlib.import_module(module)
    return _serve(sys.stdin.buffer.readline())


if __name__ == "__main__":
    sys.exit(main())
