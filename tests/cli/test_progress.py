"""The progress reporter: live on a terminal, periodic plain lines otherwise, nothing with -q."""

from __future__ import annotations

import io
import logging

from stella.cli.progress import Progress, ProgressHandler, format_stage, human_bytes, plural


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_are_periodic_and_end_with_the_totals() -> None:
    out, clock = io.StringIO(), _Clock()
    progress = Progress("plain", stream=out, clock=clock, interval=5.0)
    progress.advance("read", done=1000, bytes=2 * 1024 * 1024)
    clock.now += 1
    progress.advance("read", done=1000)  # within the interval: no line
    assert out.getvalue() == ""
    clock.now += 5
    progress.advance("read", done=1000)
    assert out.getvalue() == "read: 3,000 records, 2.0 MiB (500 records/s, 6.0 s)\n"
    progress.end("read")
    assert out.getvalue().splitlines()[-1] == "read: 3,000 records, 2.0 MiB (500 records/s, 6.0 s)"


def test_quiet_prints_nothing_and_live_draws_on_a_terminal() -> None:
    quiet = io.StringIO()
    with Progress.for_terminal(quiet=True, stream=quiet) as progress:
        progress.note("exporting")
        progress.advance("read", done=5)
    assert quiet.getvalue() == ""
    tty = _Tty()
    with Progress.for_terminal(quiet=False, stream=tty) as progress:
        assert progress.mode == "live"
        progress.advance("write", done=7, bytes=2048)
    assert "write" in tty.getvalue() and "2.0 KiB" in tty.getvalue()
    assert Progress.for_terminal(quiet=False, stream=io.StringIO()).mode == "plain"


def test_log_records_with_progress_extras_become_stage_updates() -> None:
    out, clock = io.StringIO(), _Clock()
    progress = Progress("plain", stream=out, clock=clock, interval=3600)
    logger = logging.getLogger("stella.test_progress")
    logger.handlers[:] = [ProgressHandler(progress, out)]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.info("reading s: %d records", 10, extra={"progress": {"stage": "read", "records": 10, "bytes": 5}})
    logger.info("wrote data/x")
    logger.warning("careful")
    clock.now += 2
    progress.close()
    assert out.getvalue().splitlines() == [
        "wrote data/x",
        "warning: careful",
        "read: 10 records, 5 B (5 records/s, 2.0 s)",
    ]


def test_counts_read_as_english() -> None:
    assert plural(1, "file") == "1 file" and plural(2, "file") == "2 files"
    assert plural(1, "ledger segment") == "1 ledger segment" and plural(1234, "record") == "1,234 records"
    assert (
        human_bytes(512) == "512 B" and human_bytes(1536) == "1.5 KiB" and human_bytes(3 << 30) == "3.0 GiB"
    )
    from stella.cli.progress import StageCounts

    early = StageCounts("read", started=10.0, done=5)
    assert format_stage(early, 10.1) == "read: 5 records (0.1 s)"  # no rate from a tenth of a second
