"""json:raw throughput and memory against the plain-Python floor, in one run.

    python -m benchmarks.json_raw --records 1000000

The floor reads the same ledger segments with fastavro and writes the same canonical
JSON lines through zstd level 3 with sha256, in one loop with no Beam and no sort: the
fastest this work can go in Python on one core. The Beam export must stay within 2x of
it (ratio >= 0.5) with peak RSS under 1.5 GB at a million documents.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from benchmarks.common import BIN, Measurement, bench_ledger, measure, print_table

__all__ = ["floor_main", "run"]


def floor_main(ledger: str, out: str) -> None:
    """The floor: segments -> canonical lines -> zstd-3 -> sha256, one plain loop."""
    import hashlib

    from stella.adapters.jsonraw import envelope_line
    from stella.bundle.shards import zstd_compressor
    from stella.ledger.store import LedgerStore, read_segment

    digest = hashlib.sha256()
    count = raw_bytes = 0

    class Sink:
        def write(self, data: bytes) -> int:
            digest.update(data)
            handle.write(data)
            return len(data)

    with open(out, "wb") as handle, zstd_compressor().stream_writer(Sink(), closefd=False) as writer:  # type: ignore[arg-type]
        for segment in LedgerStore(ledger).segments("bench"):
            for record in read_segment(segment.path):
                line = envelope_line(record) + b"\n"
                raw_bytes += len(line)
                count += 1
                writer.write(line)
    print(json.dumps({"records": count, "bytes": raw_bytes, "digest": digest.hexdigest()}))


def run(records: int) -> dict[str, object]:
    ledger = bench_ledger(records)
    work = Path(tempfile.mkdtemp(prefix="stella-bench-"))
    try:
        floor = measure(
            "floor: plain loop, zstd-3 + sha256",
            [
                sys.executable,
                "-m",
                "benchmarks.json_raw",
                "--floor",
                str(ledger),
                str(work / "floor.jsonl.zst"),
            ],
            items=records,
        )
        payload_mb = json.loads(floor.output)["bytes"] / 1e6
        floor = Measurement(floor.name, floor.seconds, floor.peak_rss_mb, records, payload_mb, floor.output)
        beam = measure(
            "json:raw export (Beam, FnApiRunner)",
            [
                str(BIN / "stella"),
                "export",
                "run",
                "--tenant",
                "bench",
                "--profile",
                "json:raw",
                "--ledger",
                str(ledger),
                "--out",
                str(work / "out"),
                "--json",
            ],
            items=records,
            megabytes=payload_mb,
        )
        summary = json.loads(beam.output)
        assert sum(summary["counts"].values()) == records, summary
        print_table(
            f"json:raw, {records:,} advisories ({payload_mb:,.0f} MB of canonical JSONL)", [floor, beam]
        )
        ratio = beam.items_per_second / floor.items_per_second
        print(
            f"Beam / floor throughput: {ratio:.2f}x (target >= 0.5); Beam peak RSS {beam.peak_rss_mb:,.0f} MB (target < 1536)"
        )
        return {"records": records, "floor": floor.__dict__, "beam": beam.__dict__, "ratio": ratio}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--floor", nargs=2, metavar=("LEDGER", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor:
        floor_main(*args.floor)
        return
    run(args.records)


if __name__ == "__main__":
    main()
