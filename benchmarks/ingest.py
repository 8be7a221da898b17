"""``stella ledger ingest`` on the real shared OSV advisories, beside a parse-only floor, in one run.

    python -m benchmarks.ingest

* The parse-only floor decompresses the same ``.jsonl.zst`` files and ``json.loads``
  every line: no recognition, canonicalisation, Avro or digests.
* A fresh ingest of every advisory file in ``data/advisories`` (target: >= 10,000
  documents/s), then the same files again, where every digest is already known (target:
  faster still).

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

from benchmarks.common import BIN, REPO, measure, print_table, ratio_line

__all__ = ["floor_main", "run"]

DATA = REPO.parent / "shared" / "data" / "advisories"


def floor_main(*paths: str) -> None:
    """The floor: every line decompressed and parsed, nothing else."""
    import zstandard

    count = 0
    for path in paths:
        with open(path, "rb") as handle:
            for line in zstandard.ZstdDecompressor().stream_reader(handle).readall().splitlines():
                if line.strip():
                    json.loads(line)
                    count += 1
    print(json.dumps({"documents": count}))


def run(data: Path = DATA) -> dict[str, object]:
    files = sorted(str(p) for p in data.glob("*.jsonl.zst"))
    if not files:
        raise SystemExit(f"no advisories under {data} (set STELLA_SHARED)")
    work = Path(tempfile.mkdtemp(prefix="stella-bench-ingest-"))
    try:
        floor = measure(
            "floor: decompress + json.loads",
            [sys.executable, "-m", "benchmarks.ingest", "--floor", *files],
            items=0,
        )
        documents = json.loads(floor.output)["documents"]
        command = [str(BIN / "stella"), "ledger", "ingest", "--tenant", "bench", "--ledger", str(work / "ledger"),
                   "--ingested-at", "2026-11-27T00:00:00Z", "--json", *files]  # fmt: skip
        fresh = measure("ingest, fresh ledger", command, items=documents)
        again = measure("ingest again (every digest known)", command, items=documents)
        from stella.ledger.store import LedgerStore

        stored = sum(s.records for s in LedgerStore(str(work / "ledger")).segments("bench"))
        floor = replace(floor, items=documents)
        print_table(f"ingest, {documents:,} real OSV documents in {len(files)} files", [floor, fresh, again])
        print(f"{stored:,} documents in the ledger after both runs (the second added none)")
        lines = [
            ratio_line("ingest / parse-only floor", fresh, floor),
            ratio_line("re-ingest / ingest", again, fresh, target="> 1"),
        ]
        print("\n".join(lines))
        return {
            "documents": documents,
            "floor": floor.__dict__,
            "fresh": fresh.__dict__,
            "again": again.__dict__,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--floor", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor:
        floor_main(*args.floor)
        return
    run()


if __name__ == "__main__":
    main()
