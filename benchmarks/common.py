"""What every benchmark shares: a cached synthetic ledger and measuring a child process.

Each measured run is its own process, so its peak RSS (``ru_maxrss`` of the waited-for
child) belongs to that run alone; wall time is measured around it, and CPU time (user +
system of the process and the workers it waited for) beside it. On a machine shared with
other work, wall-time ratios drift with the load while CPU-time ratios do not; both are
printed, and ratios are only ever taken between runs of the same invocation.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

__all__ = ["Measurement", "bench_ledger", "measure", "median_run", "print_table", "ratio_line"]

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CACHE = Path(os.environ.get("STELLA_BENCH_CACHE", REPO / ".cache" / "bench"))


@dataclass(frozen=True)
class Measurement:
    name: str
    seconds: float
    peak_rss_mb: float
    items: int
    megabytes: float
    output: str
    cpu_seconds: float = 0.0

    @property
    def items_per_second(self) -> float:
        return self.items / self.seconds if self.seconds else 0.0

    @property
    def mb_per_second(self) -> float:
        return self.megabytes / self.seconds if self.seconds else 0.0


def measure(
    name: str, command: list[str], *, items: int, megabytes: float = 0.0, env: dict[str, str] | None = None
) -> Measurement:
    """Run ``command`` in a fresh wrapper process and report its wall time and peak RSS."""
    wrapper = (
        "import resource, subprocess, sys, json, time\n"
        "t = time.perf_counter()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "dt = time.perf_counter() - t\n"
        "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(json.dumps({'rc': p.returncode, 'seconds': dt, 'rss': u.ru_maxrss / 1024, 'cpu': u.ru_utime + u.ru_stime, 'out': p.stdout[-4000:], 'err': p.stderr[-4000:]}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", wrapper, *command],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    data = json.loads(result.stdout)
    if data["rc"] != 0:
        raise SystemExit(f"{name} failed ({data['rc']}):\n{data['out']}\n{data['err']}")
    return Measurement(name, data["seconds"], data["rss"], items, megabytes, data["out"], data["cpu"])


def bench_ledger(records: int, *, seed: int = 7, advisories_only: bool = True) -> Path:
    """A synthetic ledger of ``records`` documents, generated once and cached."""
    root = CACHE / f"ledger-{records}-{seed}-{'adv' if advisories_only else 'mix'}"
    marker = root / "COMPLETE"
    if marker.exists():
        return root
    command = [
        str(BIN / "stella"),
        "ledger",
        "generate",
        "--tenant",
        "bench",
        "--records",
        str(records),
        "--seed",
        str(seed),
        "--ledger",
        str(root),
        "--ingested-at",
        "2026-11-27T00:00:00Z",
    ]
    if advisories_only:
        command.append("--advisories-only")
    started = time.perf_counter()
    subprocess.run(command, check=True)
    print(
        f"  generated {records} documents in {time.perf_counter() - started:.1f} s -> {root}", file=sys.stderr
    )
    marker.write_text("ok\n")
    return root


def median_run(runs: Sequence[Measurement]) -> Measurement:
    """The median wall time and the median CPU time of repeated runs (peak RSS: the largest).

    On a shared VM one run can land in a slow minute; the median of interleaved repeats
    keeps a ratio from hanging on it (the single runs are printed beside it).
    """
    first = runs[0]
    return replace(
        first,
        name=f"{first.name} (median of {len(runs)})" if len(runs) > 1 else first.name,
        seconds=statistics.median(r.seconds for r in runs),
        cpu_seconds=statistics.median(r.cpu_seconds for r in runs),
        peak_rss_mb=max(r.peak_rss_mb for r in runs),
    )


def print_table(title: str, rows: list[Measurement], *, unit: str = "docs") -> None:
    print(f"\n{title}")
    print(f"{'run':<52} {'seconds':>8} {'cpu s':>8} {unit + '/s':>12} {'MB/s':>8} {'peak RSS MB':>12}")
    for row in rows:
        print(
            f"{row.name:<52} {row.seconds:>8.2f} {row.cpu_seconds:>8.2f} {row.items_per_second:>12,.0f} "
            f"{row.mb_per_second:>8.1f} {row.peak_rss_mb:>12.0f}"
        )


def ratio_line(label: str, run: Measurement, base: Measurement, *, target: str = "") -> str:
    """``run``'s throughput over ``base``'s, by wall time and by CPU time (same items per run)."""
    wall = (run.items / run.seconds) / (base.items / base.seconds)
    cpu = (
        (run.items / run.cpu_seconds) / (base.items / base.cpu_seconds)
        if run.cpu_seconds and base.cpu_seconds
        else 0.0
    )
    aim = f" (target {target})" if target else ""
    return f"{label}: {wall:.2f}x by wall time, {cpu:.2f}x by CPU time{aim}"
