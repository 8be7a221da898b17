"""Flat in N: one profile's export at several ledger sizes, throughput and peak RSS against the smallest.

    python -m benchmarks.scale --profile json:raw --records 1000000 10000000
    python -m benchmarks.scale --profile trivy:db --profile mirror:full --records 1000000 10000000

Each size is a synthetic advisory ledger (cached like every benchmark ledger; 10M takes
~13 CPU-minutes to generate) exported once, one worker, in its own measured process.
The baseline is the first size, measured in the same run: the issue's target is
throughput at the largest size >= 0.8x and peak RSS <= 1.2x the baseline's. The
bundle is deleted after each export (10M documents of mirror:full are ~12 GB).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from benchmarks.common import BIN, Measurement, bench_ledger, measure, print_table, ratio_line

__all__ = ["run"]


def _export(profile: str, ledger: Path, out: Path, records: int) -> Measurement:
    return measure(
        f"{profile} export, {records:,} docs",
        [str(BIN / "stella"), "-q", "export", "run", "--tenant", "bench", "--profile", profile,
         "--ledger", str(ledger), "--out", str(out), "--json", "--workers", "1"],
        items=records,
    )  # fmt: skip


def run(profiles: list[str], sizes: list[int]) -> dict[str, object]:
    ledgers = {n: bench_ledger(n) for n in sizes}
    figures: dict[str, object] = {}
    for profile in profiles:
        rows = []
        for n in sizes:
            work = Path(tempfile.mkdtemp(prefix="stella-bench-scale-"))
            try:
                row = _export(profile, ledgers[n], work / "out", n)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            summary = json.loads(row.output)
            assert sum(summary["counts"].values()) > 0, summary
            rows.append(row)
        print_table(f"{profile}: one worker, by ledger size", rows)
        base, top = rows[0], rows[-1]
        lines = [
            ratio_line(f"throughput {top.items:,} / {base.items:,}", top, base, target=">= 0.8"),
            f"peak RSS {top.items:,} / {base.items:,}: {top.peak_rss_mb / base.peak_rss_mb:.2f}x "
            f"({top.peak_rss_mb:,.0f} MB / {base.peak_rss_mb:,.0f} MB) (target <= 1.2)",
            "CPU per document: "
            + ", ".join(f"{r.items:,}: {r.cpu_seconds / r.items * 1e6:.1f} us" for r in rows),
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
    args = parser.parse_args()
    run(args.profile or ["json:raw"], sorted(args.records))


if __name__ == "__main__":
    main()
