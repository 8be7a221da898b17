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

4. The adapter-alone loop: read the segments, translate every advisory
   (``trivy_db_items``), sort each group in memory and write the DB and its reports
   with the export's own ``write_db_outputs``, no Beam, no external sort, one process.
   Its ``trivy.db`` must be byte-identical to the export's (checked). Target: the
   export at >= 0.6x its throughput.
5. The export again with ``--workers 2`` (target >= 1.6x one worker; same bundle). With
   ``--repeat N`` (default 3) both exports run N rounds, interleaved, and their medians
   make the table and the ratio (each round's ratio is printed too): the VM's speed
   drifts by 15 % from minute to minute, more than the margin of one pair of runs.
6. The layer (``db.tar.gz``) of the exported ``trivy.db`` written alone, by the old
   single-threaded stdlib writer and by ``stella.gzipstream`` at one and two threads
   (``benchmarks.trivy_layer``): the export's last serial step, on its own.

``--export-only`` runs step 2 alone (one worker) and prints its row: for ledgers too
large to run the baselines beside it (10M documents).

Ratios are printed by wall time and by CPU time; on a shared machine trust the latter.
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
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks import trivy_layer
from benchmarks.common import BIN, Measurement, bench_ledger, measure, median_run, print_table, ratio_line

__all__ = ["adapter_main", "dump_main", "floor_main", "run"]

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


def adapter_main(ledger: str, out: str) -> None:
    """The adapter-alone loop: read -> translate -> in-memory sort -> the export's DB writer."""
    from collections import defaultdict

    from stella.adapters.trivy.dbitems import is_osv_advisory, trivy_db_items, write_db_outputs
    from stella.ledger.store import LedgerStore, read_segment
    from stella.rangemerge import PairLists

    groups: dict[str, list[tuple[bytes, bytes]]] = defaultdict(list)
    count = 0
    for segment in LedgerStore(ledger).segments("bench"):
        for record in read_segment(segment.path):
            if is_osv_advisory(record):
                count += 1
                for group, key, value in trivy_db_items(record):
                    groups[group].append((key, value))
    for pairs in groups.values():
        pairs.sort()
    entries = write_db_outputs(out, PairLists(groups))
    print(json.dumps({"advisories": count, "files": [e.path for e in entries]}))


def _export(ledger: Path, out: Path, records: int, workers: int, beam_args: Sequence[str]) -> Measurement:
    label = " ".join(beam_args) or f"--workers {workers}"
    flags = list(beam_args) if beam_args else ["--workers", str(workers)]
    return measure(
        f"trivy:db export, {label}",
        [str(BIN / "stella"), "export", "run", "--tenant", "bench", "--profile", "trivy:db",
         "--ledger", str(ledger), "--out", str(out), "--json", *flags],
        items=records,
    )  # fmt: skip


def run(
    records: int, beam_args: Sequence[str] = (), *, export_only: bool = False, repeat: int = 3
) -> dict[str, object]:
    ledger = bench_ledger(records)
    work = Path(tempfile.mkdtemp(prefix="stella-bench-trivy-"))
    try:
        export = _export(ledger, work / "one", records, 1, beam_args)
        summary = json.loads(export.output)
        bundle = Path(summary["bundle"])
        manifest = json.loads((bundle / "export.json").read_bytes())
        db_file = bundle / manifest["trivy"]["dbFile"]
        db_mb = db_file.stat().st_size / 1e6
        assert summary["counts"] == {"advisory": records}, summary
        export = replace(export, megabytes=db_mb)
        if export_only:
            return _export_only(records, export, summary, manifest, db_mb)
        adapter = measure(
            "adapter alone: read, translate, sort, write",
            [sys.executable, "-m", "benchmarks.trivy_db", "--adapter", str(ledger), str(work / "adapter")],
            items=records,
            megabytes=db_mb,
        )
        adapter_identical = filecmp.cmp(
            work / "adapter" / manifest["trivy"]["dbFile"], db_file, shallow=False
        )
        two = None
        ones, twos = [export], []
        if not beam_args:
            for round_ in range(repeat):  # interleaved rounds, as benchmarks.json_raw: medians count
                if round_:
                    ones.append(
                        replace(_export(ledger, work / f"one{round_}", records, 1, ()), megabytes=db_mb)
                    )
                twos.append(replace(_export(ledger, work / f"two{round_}", records, 2, ()), megabytes=db_mb))
                for run_ in (ones[-1], twos[-1]):
                    assert json.loads(run_.output)["exportId"] == summary["exportId"], (
                        "worker count or repetition changed the bundle"
                    )
                for folder in (work / f"one{round_}", work / f"two{round_}"):
                    if round_ or folder.name.startswith("two"):
                        shutil.rmtree(folder, ignore_errors=True)
            export, two = median_run(ones), median_run(twos)

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
            f"trivy:db, {records:,} advisories -> {entries:,} DB entries",
            [adapter, export, *([two] if two else [])],
            unit="advisories",
        )
        print_table("floor", [floor], unit="entries")
        print(
            f"trivy.db {db_mb:,.1f} MB; bundle {summary['bytes'] / 1e6:,.1f} MB in {summary['files']} files"
        )
        print(
            f"export {export.seconds:,.1f} s = {export.seconds / floor.seconds:.1f}x the floor's {floor.seconds:,.1f} s"
        )
        print(f"floor output byte-identical to the exported trivy.db: {identical}")
        print(f"adapter-alone trivy.db byte-identical to the exported one: {adapter_identical}")
        print(ratio_line("export / adapter-alone loop", export, adapter, target=">= 0.6"))
        if two:
            print(ratio_line("--workers 2 / --workers 1", two, export, target=">= 1.6"))
            if len(twos) > 1:
                each = ", ".join(f"{a.seconds / b.seconds:.2f}x" for a, b in zip(ones, twos, strict=True))
                print(f"each round: --workers 2 / 1 by wall {each}")
        print(f"untranslated: {json.dumps(manifest['untranslated'], sort_keys=True)}")
        layer = trivy_layer.run(db_file, work)
        return {
            "records": records,
            "entries": entries,
            "db_bytes": db_file.stat().st_size,
            "export": export.__dict__,
            "floor": floor.__dict__,
            "floor_identical": identical,
            "adapter": adapter.__dict__,
            "adapter_identical": adapter_identical,
            "workers2": two.__dict__ if two else None,
            "untranslated": manifest["untranslated"],
            "layer": layer,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _export_only(
    records: int, export: Measurement, summary: dict[str, Any], manifest: dict[str, Any], db_mb: float
) -> dict[str, object]:
    """``--export-only``: the one-worker export's row and sizes, no baselines (for 10M-document runs)."""
    entries = manifest["trivy"]["entries"]
    print_table(f"trivy:db, {records:,} advisories -> {entries:,} DB entries", [export], unit="advisories")
    print(f"trivy.db {db_mb:,.1f} MB; bundle {summary['bytes'] / 1e6:,.1f} MB in {summary['files']} files")
    print(f"untranslated: {json.dumps(manifest['untranslated'], sort_keys=True)}")
    return {
        "records": records,
        "entries": entries,
        "export": export.__dict__,
        "untranslated": manifest["untranslated"],
    }


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
    parser.add_argument(
        "--export-only",
        action="store_true",
        help="run only the one-worker export (no floor, no adapter loop, no --workers 2)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="rounds of both exports, interleaved; the medians count (default 3)",
    )
    parser.add_argument("--dump", nargs=2, metavar=("DB", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--floor", nargs=2, metavar=("PAIRS", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--adapter", nargs=2, metavar=("LEDGER", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.adapter:
        adapter_main(*args.adapter)
        return
    if args.dump:
        dump_main(*args.dump)
    elif args.floor:
        floor_main(*args.floor)
    else:
        result = run(args.records, args.beam_arg, export_only=args.export_only, repeat=max(1, args.repeat))
        if args.json:
            print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
