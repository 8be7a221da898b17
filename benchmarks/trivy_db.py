"""trivy:db export time, throughput and memory beside the bbolt writer's floor, in one run.

    python -m benchmarks.trivy_db --records 1000000

1. A synthetic ledger of ``--records`` OSV advisories (``stella ledger generate
   --advisories-only``, cached by :func:`benchmarks.common.bench_ledger`).
2. ``stella export run --profile trivy:db`` in its own process: wall time, advisories/s,
   peak RSS (``ru_maxrss``: the largest of the process and any worker it waited for),
   ``trivy.db`` size. ``--beam-arg`` passes runner options (e.g. two worker processes).
3. The floor: the very key/values of the exported ``trivy.db`` (dumped first as pickled
   tuples, untimed) written again by ``write_bolt`` alone, in its own process. Nothing
   else in the export can be faster than this, and since the input and the writer are
   the same, its output must be byte-identical to the exported DB (checked).

The export does much more than the floor -- decode every document, translate OSV to
Trivy entries, external sort, revision resolution, merge, tarball, OCI layout, hashes --
so the interesting figures are its absolute cost per advisory and its memory, which
must stay flat (bounded by batch and merge fan-in, not by the ledger size).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import pickle
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from benchmarks.common import BIN, Measurement, bench_ledger, measure, print_table

__all__ = ["dump_main", "floor_main", "run"]

_CHUNK = 10_000


def dump_main(db_path: str, out: str) -> None:
    """Write every entry of ``db_path`` (in order) to ``out`` as pickled lists of tuples."""
    from tests.adapters.boltread import BoltReader

    count = 0
    with BoltReader.open(db_path) as reader, open(out, "wb") as handle:
        chunk: list[tuple[tuple[bytes, ...], bytes, bytes]] = []
        for entry in reader.entries():
            chunk.append(entry)
            if len(chunk) == _CHUNK:
                pickle.dump(chunk, handle, protocol=pickle.HIGHEST_PROTOCOL)
                count += len(chunk)
                chunk = []
        pickle.dump(chunk, handle, protocol=pickle.HIGHEST_PROTOCOL)
        count += len(chunk)
    print(json.dumps({"entries": count}))


def _pairs(path: str) -> Iterator[tuple[tuple[bytes, ...], bytes, bytes]]:
    with open(path, "rb") as handle:
        while True:
            try:
                chunk = pickle.load(handle)
            except EOFError:
                return
            yield from chunk


def floor_main(pairs: str, out: str) -> None:
    """The floor: the sorted entries straight into ``write_bolt``."""
    from stella.adapters.trivy.bbolt import write_bolt

    stats = write_bolt(out, _pairs(pairs))
    print(json.dumps({"entries": stats.entries, "bytes": stats.file_bytes}))


def run(records: int, beam_args: Sequence[str] = ()) -> dict[str, object]:
    ledger = bench_ledger(records)
    work = Path(tempfile.mkdtemp(prefix="stella-bench-trivy-"))
    label = " ".join(beam_args) or "FnApiRunner, in process"
    try:
        export = measure(
            f"trivy:db export ({label})",
            [str(BIN / "stella"), "export", "run", "--tenant", "bench", "--profile", "trivy:db",
             "--ledger", str(ledger), "--out", str(work / "out"), "--json", *beam_args],
            items=records,
        )  # fmt: skip
        summary = json.loads(export.output)
        bundle = Path(summary["bundle"])
        manifest = json.loads((bundle / "export.json").read_bytes())
        db_file = bundle / manifest["trivy"]["dbFile"]
        db_mb = db_file.stat().st_size / 1e6
        assert summary["counts"] == {"advisory": records}, summary
        export = Measurement(export.name, export.seconds, export.peak_rss_mb, records, db_mb, export.output)

        pairs = work / "entries.pickle"
        measure(
            "dump", [sys.executable, "-m", "benchmarks.trivy_db", "--dump", str(db_file), str(pairs)], items=0
        )
        entries = manifest["trivy"]["entries"]
        floor = measure(
            "floor: write_bolt alone, same entries",
            [sys.executable, "-m", "benchmarks.trivy_db", "--floor", str(pairs), str(work / "floor.db")],
            items=entries,
            megabytes=db_mb,
        )
        identical = filecmp.cmp(work / "floor.db", db_file, shallow=False)

        print_table(
            f"trivy:db, {records:,} advisories -> {entries:,} DB entries", [export], unit="advisories"
        )
        print_table("floor", [floor], unit="entries")
        print(
            f"trivy.db {db_mb:,.1f} MB; bundle {summary['bytes'] / 1e6:,.1f} MB in {summary['files']} files"
        )
        print(
            f"export {export.seconds:,.1f} s = {export.seconds / floor.seconds:.1f}x the floor's {floor.seconds:,.1f} s"
        )
        print(f"floor output byte-identical to the exported trivy.db: {identical}")
        print(f"untranslated: {json.dumps(manifest['untranslated'], sort_keys=True)}")
        return {
            "records": records,
            "entries": entries,
            "db_bytes": db_file.stat().st_size,
            "export": export.__dict__,
            "floor": floor.__dict__,
            "floor_identical": identical,
            "untranslated": manifest["untranslated"],
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument(
        "--beam-arg",
        action="append",
        default=[],
        help="pass a Beam option to the export, e.g. --beam-arg=--direct_num_workers=2 (repeatable); "
        "peak RSS is then that of the largest process",
    )
    parser.add_argument("--dump", nargs=2, metavar=("DB", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--floor", nargs=2, metavar=("PAIRS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dump:
        dump_main(*args.dump)
    elif args.floor:
        floor_main(*args.floor)
    else:
        result = run(args.records, args.beam_arg)
        if args.json:
            print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
