"""Live progress from worker processes: each worker appends its updates to a file the driver tails.

In one process the CLI sees the DoFns' progress log records directly (stella.cli.progress).
With ``--workers N`` the DoFns run in worker processes whose logging never reaches the
driver's handlers, so the driver sets ``STELLA_PROGRESS_DIR`` before the runner starts its
workers (they inherit the environment); a worker's first progress-reporting step calls
:func:`relay_progress`, which appends every ``extra={"progress": ...}`` record of the
``transforms`` loggers to ``<dir>/<pid>.jsonl``. :func:`tail_progress`, around the run in the
driver, reads the new lines every half second and logs them again on ``transforms.progress``
with the same ``progress`` mapping: the display and the service's events see one stream,
whatever the worker count.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = ["ENV_DIR", "relay_progress", "tail_progress"]

ENV_DIR = "STELLA_PROGRESS_DIR"
_ENV_DRIVER = "STELLA_PROGRESS_DRIVER"
_POLL_SECONDS = 0.5
_LOG = logging.getLogger("transforms.progress")
_relayed: set[int] = set()


class _FileRelay(logging.Handler):
    """Appends the progress mapping and message of each record, one JSON line, flushed."""

    def __init__(self, path: Path) -> None:
        super().__init__(logging.INFO)
        self._path = path

    def emit(self, record: logging.LogRecord) -> None:
        update = getattr(record, "progress", None)
        if update is None:
            return
        try:
            line = json.dumps({"message": record.getMessage(), "progress": update}, sort_keys=True)
            with self._path.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        except Exception:  # progress must never fail the work it reports on
            self.handleError(record)


def relay_progress() -> None:
    """In a worker process of a multi-process run, send this process's progress to the driver (once)."""
    folder, driver = os.environ.get(ENV_DIR), os.environ.get(_ENV_DRIVER)
    pid = os.getpid()
    if not folder or driver == str(pid) or pid in _relayed:
        return
    _relayed.add(pid)
    logger = logging.getLogger("transforms")
    logger.setLevel(logging.INFO)
    logger.addHandler(_FileRelay(Path(folder) / f"{pid}.jsonl"))


def _forward(folder: Path, offsets: dict[Path, int]) -> None:
    for path in sorted(folder.glob("*.jsonl")):
        with path.open("rb") as handle:
            handle.seek(offsets.get(path, 0))
            data = handle.read()
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next poll
        offsets[path] = offsets.get(path, 0) + len(complete)
        for line in complete.splitlines():
            entry = json.loads(line)
            _LOG.info("%s", entry["message"], extra={"progress": entry["progress"]})


@contextlib.contextmanager
def tail_progress(enabled: bool) -> Iterator[None]:
    """Around a multi-process run in the driver: forward the workers' progress as it is written."""
    if not enabled:
        yield
        return
    stop = threading.Event()
    offsets: dict[Path, int] = {}
    with tempfile.TemporaryDirectory(prefix="stella-progress-") as name:
        folder = Path(name)
        saved = {key: os.environ.get(key) for key in (ENV_DIR, _ENV_DRIVER)}
        os.environ.update({ENV_DIR: name, _ENV_DRIVER: str(os.getpid())})

        def poll() -> None:
            while not stop.wait(_POLL_SECONDS):
                _forward(folder, offsets)

        thread = threading.Thread(target=poll, name="stella-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            _forward(folder, offsets)  # what the workers wrote last
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
