"""Flat in N, and faster with workers: a profile's export at several sizes and worker counts.

    python -m benchmarks.scale --profile json:raw --records 1000000 10000000
    python -m benchmarks.scale --profile trivy:db --profile mirror:full --records 1000000 10000000
    python -m benchmarks.scale --profile json:raw --profile trivy:db --records 1000000 --workers 1 2

Each size is a synthetic advisory ledger (cached like every benchmark ledger; 10M takes
~13 CPU-minutes to generate) exported once, one worker, in its own measured process.
The baseline is the first size, measured in the same run: the issue's target is
throughput at the largest size >= 0.8x and peak RSS <= 1.2x the baseline's. With
several ``--workers`` counts each size runs at each, and the largest count's wall-time
speed-up over the smallest is printed (target >= 1.6x for 2 over 1; it needs that many
idle cores, so run it on a quiet machine), with a check that the bundles are identical.
The bundle is deleted after each export (10M documents of mirror:full are ~12 GB).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from benchmarks.common import BIN, Measurement, bench_ledger, measure, print_table, ratio_line

__all__ = ["run"]


def _export(profile: str, ledger: Path, out: Path, records: int, workers: int) -> Measurement:
    return measure(
        f"{profile} {records:,} docs, {workers} workers",
        [str(BIN / "stella"), "-q", "export", "run", "--tenant", "bench", "--profile", profile,
         "--ledger", str(ledger), "--out", str(out), "--json", "--workers", str(workers)],
        items=records,
    )  # fmt: skip


def run(profiles: list[str], sizes: list[int], workers: list[int]) -> dict[str, object]:
    ledgers = {n: bench_ledger(n) for n in sizes}
    figures: dict[str, object] = {}
    for profile in profiles:
        rows = []
        lines = []
        for n in sizes:
            by_workers = []
            for count in workers:
                work = Path(tempfile.mkdtemp(prefix="stella-bench-scale-"))
                try:
                    by_workers.append(_export(profile, ledgers[n], work / "out", n, count))
                finally:
                    shutil.rmtree(work, ignore_errors=True)
            ids = {json.loads(row.output)["exportId"] for row in by_workers}
            assert len(ids) == 1, f"{profile} at {n:,}: worker count changed the bundle: {ids}"
            if len(by_workers) > 1:
                lines.append(
                    ratio_line(
                        f"{n:,} docs: --workers {workers[-1]} / --workers {workers[0]}",
                        by_workers[-1],
                        by_workers[0],
                        target=">= 1.6 by wall, on idle cores",
                    )
                )
            rows.extend(by_workers)
        print_table(f"{profile}: by ledger size and worker count", rows)
        single = [row for row in rows if row.name.endswith(f" {workers[0]} workers")]
        base, top = single[0], single[-1]
        lines += [
            ratio_line(f"throughput {top.items:,} / {base.items:,}", top, base, target=">= 0.8"),
            f"peak RSS {top.items:,} / {base.items:,}: {top.peak_rss_mb / base.peak_rss_mb:.2f}x "
            f"({top.peak_rss_mb:,.0f} MB / {base.peak_rss_mb:,.0f} MB) (target <= 1.2)",
            "CPU per document: "
            + ", ".join(f"{r.items:,}: {r.cpu_seconds / r.items * 1e6:.1f} us" for r in single),
        ]
        print("\n".join(lines), flush=True)
        figures[profile] = {"rows": [r.__dict__ for r in rows], "ratios": lines}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", action="append", help="json:raw (default), trivy:db, mirror:full, ...")
    parser.add_argument("--records", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--workers", type=int, nargs="+", default=[1], help="worker counts (default 1)")
    args = parser.parse_args()
    run(args.profile or ["json:raw"], sorted(args.records), sorted(args.workers))


if __name__ == "__main__":
    main()
