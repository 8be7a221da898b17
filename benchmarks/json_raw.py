"""json:raw throughput and memory against two floors and itself on two workers, in one run.

    python -m benchmarks.json_raw --records 1000000

* The plain-loop floor reads the same ledger segments with the export's reader (the
  compiled row decoder when it is built, else fastavro) and writes the same canonical JSON lines through zstd level 3 with sha256, in one loop with no Beam and no
  sort, building a ``LedgerRecord`` per row as every profile did until the row read path
  (so its figures compare with earlier runs). Target: the export at >= 0.8x its throughput.
* The row-path loop is the same loop on the export's row read path (lines spliced from
  the Avro rows, no records): shown for information, the fastest this work now goes with
  per-record Python on one core.
* The I/O floor has no per-record Python at all: it reads the segment files' bytes and
  compresses (zstd-3) and hashes (sha256) the export's uncompressed payload bytes in
  large chunks. Target: >= 0.25x.
* ``--workers 2`` against one worker (target >= 1.6x; the bundles must be identical).

The I/O floor and both exports run ``--repeat`` rounds (default 3), interleaved; their
medians make the table and the ratios, and each round's ratios are printed too.

``--export-only`` runs only the one-worker export and prints its row (for 10M documents).

Ratios are printed by wall time and by CPU time; on a shared machine trust the latter.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import zstandard

from benchmarks.common import BIN, Measurement, bench_ledger, measure, median_run, print_table, ratio_line

__all__ = ["floor_main", "io_floor_main", "run"]


def floor_main(ledger: str, out: str, *, rows: bool = False) -> None:
    """The floor: segments -> canonical lines -> zstd-3 -> sha256, one plain loop (``rows``: no records)."""
    import hashlib

    from stella.adapters.jsonraw import envelope_line, row_line
    from stella.bundle.shards import zstd_compressor
    from stella.ledger.store import LedgerStore, read_rows, read_segment

    digest = hashlib.sha256()
    count = raw_bytes = 0

    class Sink:
        def write(self, data: bytes) -> int:
            digest.update(data)
            handle.write(data)
            return len(data)

    with open(out, "wb") as handle, zstd_compressor().stream_writer(Sink(), closefd=False) as writer:  # type: ignore[arg-type]
        for segment in LedgerStore(ledger).segments("bench"):
            lines = (
                map(row_line, (row for chunk in read_rows(segment.path) for row in chunk))
                if rows
                else map(envelope_line, read_segment(segment.path))
            )
            for line in lines:
                raw_bytes += len(line) + 1
                count += 1
                writer.write(line + b"\n")
    print(json.dumps({"records": count, "bytes": raw_bytes, "digest": digest.hexdigest()}))


def io_floor_main(ledger: str, payload: str, out: str) -> None:
    """The I/O floor: segment bytes read, then the payload through zstd-3 + sha256, 4 MB at a time."""
    import hashlib

    from stella.bundle.shards import zstd_compressor
    from stella.ledger.store import LedgerStore

    read = 0
    for segment in LedgerStore(ledger).segments("bench"):
        with open(segment.path, "rb") as handle:
            while chunk := handle.read(1 << 22):
                read += len(chunk)
    digest = hashlib.sha256()

    class Sink:
        def write(self, data: bytes) -> int:
            digest.update(data)
            handle.write(data)
            return len(data)

    compressor = zstd_compressor()
    with (
        open(payload, "rb") as source,
        open(out, "wb") as handle,
        compressor.stream_writer(Sink(), closefd=False) as writer,  # type: ignore[arg-type]
    ):
        while chunk := source.read(1 << 22):
            writer.write(chunk)
    print(json.dumps({"segment_bytes": read, "digest": digest.hexdigest()}))


def _export(ledger: Path, out: Path, records: int, payload_mb: float, workers: int) -> Measurement:
    return measure(
        f"json:raw export, --workers {workers}",
        [str(BIN / "stella"), "export", "run", "--tenant", "bench", "--profile", "json:raw",
         "--ledger", str(ledger), "--out", str(out), "--json", "--workers", str(workers)],
        items=records,
        megabytes=payload_mb,
    )  # fmt: skip


def run(records: int, *, export_only: bool = False, repeat: int = 3) -> dict[str, object]:
    ledger = bench_ledger(records)
    work = Path(tempfile.mkdtemp(prefix="stella-bench-"))
    try:
        if export_only:  # no floors: the payload size they measure is unknown (MB/s shows 0)
            one = _export(ledger, work / "one", records, 0.0, 1)
            assert sum(json.loads(one.output)["counts"].values()) == records, one.output
            print_table(f"json:raw, {records:,} advisories", [one])
            print(f"peak RSS: {one.peak_rss_mb:,.0f} MB one worker")
            return {"records": records, "export": one.__dict__}
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
        floor = replace(floor, items=records, megabytes=payload_mb)
        row_floor = measure(
            "row-path loop (info): no records",
            [
                sys.executable,
                "-m",
                "benchmarks.json_raw",
                "--row-floor",
                str(ledger),
                str(work / "rows.jsonl.zst"),
            ],
            items=records,
            megabytes=payload_mb,
        )
        assert json.loads(row_floor.output)["digest"] == json.loads(floor.output)["digest"], (
            "row path changed the lines"
        )
        payload = work / "payload.jsonl"
        with (work / "floor.jsonl.zst").open("rb") as compressed, payload.open("wb") as plain:
            zstandard.ZstdDecompressor().copy_stream(compressed, plain)  # untimed: the I/O floor's input
        ones, twos, io_floors = [], [], []
        for _round in range(repeat):  # interleaved, so a slow minute of the VM hits all three alike
            io_floors.append(
                measure(
                    "I/O floor: bytes, zstd-3 + sha256",
                    [
                        sys.executable,
                        "-m",
                        "benchmarks.json_raw",
                        "--io-floor",
                        str(ledger),
                        str(payload),
                        str(work / "io.jsonl.zst"),
                    ],
                    items=records,
                    megabytes=payload_mb,
                )  # fmt: skip
            )
            for workers, runs in ((1, ones), (2, twos)):
                runs.append(_export(ledger, work / f"w{workers}", records, payload_mb, workers))
                shutil.rmtree(work / f"w{workers}")
        payload.unlink()
        summaries = [json.loads(m.output) for m in (*ones, *twos)]
        assert all(sum(s["counts"].values()) == records for s in summaries), summaries
        assert len({s["exportId"] for s in summaries}) == 1, "worker count or repetition changed the bundle"
        io_floor, one, two = median_run(io_floors), median_run(ones), median_run(twos)
        print_table(
            f"json:raw, {records:,} advisories ({payload_mb:,.0f} MB of canonical JSONL)",
            [floor, row_floor, io_floor, one, two],
        )
        lines = [
            ratio_line("export / plain-loop floor", one, floor, target=">= 0.8"),
            ratio_line("export / I/O floor", one, io_floor, target=">= 0.25"),
            ratio_line("export / row-path loop (info)", one, row_floor),
            ratio_line("--workers 2 / --workers 1", two, one, target=">= 1.6"),
        ]
        print("\n".join(lines))
        if repeat > 1:
            each = ", ".join(f"{a.seconds / b.seconds:.2f}x" for a, b in zip(ones, twos, strict=True))
            floors = ", ".join(
                f"{f.cpu_seconds / a.cpu_seconds:.2f}x" for a, f in zip(ones, io_floors, strict=True)
            )
            print(f"each round: --workers 2 / 1 by wall {each}; export / I/O floor by CPU {floors}")
        print(f"peak RSS: {one.peak_rss_mb:,.0f} MB one worker, {two.peak_rss_mb:,.0f} MB two")
        return {
            "records": records,
            "floor": floor.__dict__,
            "row_floor": row_floor.__dict__,
            "io_floor": io_floor.__dict__,
            "export": one.__dict__,
            "workers2": two.__dict__,
            "ratios": lines,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument(
        "--export-only",
        action="store_true",
        help="run only the one-worker export (no floors, no --workers 2)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="rounds of I/O floor + both exports; the medians count (default 3)",
    )
    parser.add_argument("--floor", nargs=2, metavar=("LEDGER", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--row-floor", nargs=2, metavar=("LEDGER", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--io-floor", nargs=3, metavar=("LEDGER", "PAYLOAD", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor or args.row_floor:
        floor_main(*(args.floor or args.row_floor), rows=bool(args.row_floor))
        return
    if args.io_floor:
        io_floor_main(*args.io_floor)
        return
    run(args.records, export_only=args.export_only, repeat=max(1, args.repeat))


if __name__ == "__main__":
    main()
