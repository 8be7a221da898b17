"""Progress for long work, the same way for every command.

* on a terminal: a live line per stage (rich) -- records, bytes, rate, elapsed;
* not a terminal (CI, a pipe, a log file): plain lines, at most one per stage every few
  seconds plus one when the stage ends, so logs stay readable;
* ``-q``: nothing at all (warnings and errors still reach stderr).

Library code never talks to this module: it logs on its own logger with an
``extra={"progress": {...}}`` mapping (``stage``, ``records``, ``bytes``, ``total``, ``unit``),
and :class:`ProgressHandler` turns those records into stage updates. That keeps Beam
DoFns free of any terminal handle (the embedded runner runs them in this process, where
the handler sees them live), and any other logged INFO line becomes a note.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, TextIO

__all__ = [
    "Progress",
    "ProgressHandler",
    "StageCounts",
    "format_stage",
    "human_bytes",
    "own_stderr",
    "plural",
    "silenced_stderr",
]

Mode = Literal["live", "plain", "quiet"]
PLAIN_INTERVAL = 5.0


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """``1 file``, ``2 files``: counts read as English."""
    return f"{count:,} {noun if count == 1 else (plural_form or noun + 's')}"


def human_bytes(n: int) -> str:
    """Binary units, named as such (``MiB``), so a size matches what ``du -h`` users expect."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass
class StageCounts:
    """What one stage has done so far."""

    name: str
    started: float
    unit: str = "records"
    done: int = 0
    bytes: int = 0
    total: int | None = None


MIN_RATE_SECONDS = 0.5


def format_stage(stage: StageCounts, now: float, *, elapsed: bool = True) -> str:
    """``read: 120,000 records, 48.0 MiB (40,000 records/s, 3.0 s)``.

    The rate appears once the stage has run long enough to mean something.
    """
    seconds = max(now - stage.started, 0.0)
    count = f"{stage.done:,}" + (f"/{stage.total:,}" if stage.total is not None else "")
    parts = [f"{count} {stage.unit}"]
    if stage.bytes:
        parts.append(human_bytes(stage.bytes))
    timing = []
    if seconds >= MIN_RATE_SECONDS:
        timing.append(f"{stage.done / seconds:,.0f} {stage.unit}/s")
    if elapsed:
        timing.append(f"{seconds:.1f} s")
    return f"{stage.name}: {', '.join(parts)}" + (f" ({', '.join(timing)})" if timing else "")


class Progress:
    """Stage counters rendered live, as periodic plain lines, or not at all."""

    def __init__(
        self,
        mode: Mode,
        *,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        interval: float = PLAIN_INTERVAL,
    ) -> None:
        self.mode: Mode = mode
        self._stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self._interval = interval
        self._stages: dict[str, StageCounts] = {}
        self._printed: dict[str, float] = {}
        self._live: Any = None
        self._tasks: dict[str, Any] = {}

    @classmethod
    def for_terminal(cls, *, quiet: bool, stream: TextIO | None = None) -> Progress:
        out = stream if stream is not None else sys.stderr
        if quiet:
            return cls("quiet", stream=out)
        return cls("live" if out.isatty() else "plain", stream=out)

    def __enter__(self) -> Progress:
        if self.mode == "live":
            from rich.console import Console
            from rich.progress import Progress as RichProgress
            from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

            self._live = RichProgress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TextColumn("{task.fields[counts]}"),
                TimeElapsedColumn(),
                console=Console(file=self._stream),
                transient=False,
            )
            self._live.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        for name in list(self._stages):
            self.end(name)
        if self._live is not None:
            self._live.stop()
            self._live = None

    def note(self, text: str) -> None:
        """A one-off line (a file written, a header): printed above the live lines."""
        if self.mode == "quiet":
            return
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self._stream, flush=True)

    def advance(
        self,
        stage: str,
        *,
        done: int = 0,
        bytes: int = 0,
        total: int | None = None,
        unit: str = "records",
    ) -> None:
        """Add to a stage's counters (the stage starts on first use)."""
        now = self._clock()
        counts = self._stages.get(stage)
        if counts is None:
            counts = self._stages[stage] = StageCounts(stage, now, unit)
            self._printed[stage] = now
        counts.done += done
        counts.bytes += bytes
        if total is not None:
            counts.total = total
        if self.mode == "live" and self._live is not None:
            text = format_stage(counts, now, elapsed=False).split(": ", 1)[1]
            if stage not in self._tasks:
                self._tasks[stage] = self._live.add_task(stage, total=None, counts=text)
            self._live.update(self._tasks[stage], counts=text)
        elif self.mode == "plain" and now - self._printed[stage] >= self._interval:
            self._printed[stage] = now
            print(format_stage(counts, now), file=self._stream, flush=True)

    def end(self, stage: str) -> None:
        """Close a stage: its final counts, once."""
        counts = self._stages.pop(stage, None)
        if counts is None:
            return
        if self.mode == "plain":
            print(format_stage(counts, self._clock()), file=self._stream, flush=True)
        elif self._live is not None and stage in self._tasks:
            self._live.stop_task(self._tasks.pop(stage))


class ProgressHandler(logging.Handler):
    """Routes our packages' log records into a :class:`Progress`.

    A record with ``extra={"progress": {...}}`` updates a stage; an ``end`` key closes
    it. Other INFO records become notes; warnings and errors always print.
    """

    def __init__(self, progress: Progress, stream: TextIO | None = None) -> None:
        super().__init__(logging.DEBUG)
        self._progress = progress
        self._stream = stream if stream is not None else sys.stderr

    def emit(self, record: logging.LogRecord) -> None:
        try:
            update: Mapping[str, Any] | None = getattr(record, "progress", None)
            if record.levelno >= logging.WARNING:
                print(f"warning: {record.getMessage()}", file=self._stream, flush=True)
            elif update is not None:
                stage = str(update["stage"])
                self._progress.advance(
                    stage,
                    done=int(update.get("records", 0)),
                    bytes=int(update.get("bytes", 0)),
                    total=update.get("total"),
                    unit=str(update.get("unit", "records")),
                )
                if update.get("end"):
                    self._progress.end(stage)
            else:
                self._progress.note(record.getMessage())
        except Exception:  # a broken progress display must never fail the work it reports on
            self.handleError(record)


def own_stderr() -> TextIO:
    """A private handle on stderr for our own lines, unaffected by :func:`silenced_stderr`."""
    try:
        return os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1, encoding="utf-8", errors="replace")
    except (AttributeError, OSError, ValueError):  # stderr replaced by a test harness: use it as is
        return sys.stderr


@contextlib.contextmanager
def silenced_stderr() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for the duration (``-v`` skips this).

    Beam's multi-process workers are subprocesses that inherit our stderr and log dozens of
    INFO lines there before any option could quiet them; their failures still come back
    through the runner as exceptions. Our own output goes through :func:`own_stderr`.
    """
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, fd)
        os.close(saved)
        os.close(null)
