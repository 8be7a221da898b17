"""``stella ledger ingest`` and ``stella ledger generate``, each beside a plain loop, in one run.

    python -m benchmarks.ingest                       # ingest of the real advisories; generate 100,000
    python -m benchmarks.ingest --records 1000000     # generate at 1M (≈ 100 CPU s per run)
    python -m benchmarks.ingest --repeat 5            # each ingest 5 times, the least CPU counts

Ingest, on every ``.jsonl.zst`` of the shared ``data/advisories`` (9,689 real OSV records):

* baseline: one loop that decompresses each file, ``json.loads`` and sha256es every line;
* ``stella ledger ingest`` into a fresh ledger (target: >= 10,000 documents per CPU-second),
  then the same files again, every digest known (target: faster still);
* the same two ingests inside one process, measuring only the ``ingest_paths`` call: the
  steady-state rate, without the interpreter's start-up that 9,689 documents can't amortise.

Generate, ``--records`` synthetic OSV advisories:

* baseline: the generator alone (document bytes and their sha256, nothing stored);
* ``stella ledger generate --workers 1`` and ``--workers 2``; the two ledgers must be
  byte-identical (checked), and the CPU rate extrapolates to 10M documents.

Each run is its own process: peak RSS is its own (the largest single process for a worker
pool), CPU time is user + system of it and every worker it waited for. On a shared machine
trust the CPU figures; wall-time ratios drift with the load.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import shutil
import sys
import tempfile
from pathlib import Path

from benchmarks.common import BIN, REPO, Measurement, measure, print_table, ratio_line

__all__ = ["run"]

DATA = REPO.parent / "shared" / "data" / "advisories"
T0 = "2026-11-27T00:00:00Z"
TEN_MILLION = 10_000_000


def _floor(paths: list[str]) -> None:
    """The ingest baseline: every line decompressed, parsed and hashed, nothing else."""
    import zstandard

    count = 0
    for path in paths:
        with open(path, "rb") as handle:
            for line in zstandard.ZstdDecompressor().stream_reader(handle).readall().splitlines():
                if line.strip():
                    json.loads(line)
                    hashlib.sha256(line).hexdigest()
                    count += 1
    print(json.dumps({"documents": count}))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _steady(paths: list[str]) -> None:
    """Both ingests in this process, timing only the ``ingest_paths`` calls."""
    from stella.ledger.ingest import ingest_paths
    from stella.ledger.store import LedgerStore

    with tempfile.TemporaryDirectory(prefix="stella-bench-steady-") as root:
        store = LedgerStore(root)
        figures = {}
        for run in ("fresh", "again"):
            started = _cpu()
            report = ingest_paths(store, "bench", paths, ingested_at=T0)
            figures[run] = _cpu() - started
            figures[run + "Documents"] = report.total_added + report.total_duplicates
    print(json.dumps(figures))


def _generator_floor(records: int) -> None:
    """The generate baseline: the synthetic documents' bytes and digests, nothing stored."""
    from stella.ledger.synthetic import synthetic_documents

    count = 0
    for _fmt, raw in synthetic_documents(records, seed=7, advisories_only=True):
        hashlib.sha256(raw).hexdigest()
        count += 1
    print(json.dumps({"documents": count}))


def _best(name: str, command: list[str], *, items: int, repeat: int) -> Measurement:
    """The run with the least CPU time of ``repeat``: on a shared machine, the least disturbed."""
    return min((measure(name, command, items=items) for _ in range(repeat)), key=lambda m: m.cpu_seconds)


def _ingest(work: Path, repeat: int) -> list[str]:
    files = sorted(str(p) for p in DATA.glob("*.jsonl.zst"))
    if not files:
        raise SystemExit(f"no advisories under {DATA} (set STELLA_SHARED)")
    floor_command = [sys.executable, "-m", "benchmarks.ingest", "--child", "floor", *files]
    documents = json.loads(measure("count", floor_command, items=0).output)["documents"]
    floor = _best("baseline: unzstd + json.loads + sha256", floor_command, items=documents, repeat=repeat)
    fresh_runs, again_runs = [], []
    for attempt in range(repeat):
        command = [str(BIN / "stella"), "ledger", "ingest", "--tenant", "bench", "--ledger",
                   str(work / f"ingest-{attempt}"), "--ingested-at", T0, "--json", *files]  # fmt: skip
        fresh_runs.append(measure("stella ledger ingest, fresh ledger", command, items=documents))
        again_runs.append(measure("the same again (every digest known)", command, items=documents))
    fresh = min(fresh_runs, key=lambda m: m.cpu_seconds)
    again = min(again_runs, key=lambda m: m.cpu_seconds)
    steady_command = [sys.executable, "-m", "benchmarks.ingest", "--child", "steady", *files]
    steadies = [measure("in-process: both ingest_paths calls", steady_command, items=2 * documents)
                for _ in range(repeat)]  # fmt: skip
    inners = [json.loads(m.output) for m in steadies]
    assert all(i["freshDocuments"] == i["againDocuments"] == documents for i in inners), inners
    steady = min(steadies, key=lambda m: m.cpu_seconds)
    title = (
        f"ingest, {documents:,} real OSV documents in {len(files)} files (least CPU of {repeat} runs each)"
    )
    print_table(title, [floor, fresh, again, steady])
    per_cpu = [
        ("CLI, fresh", documents / fresh.cpu_seconds),
        ("CLI, again", documents / again.cpu_seconds),
        ("ingest_paths, fresh", documents / min(i["fresh"] for i in inners)),
        ("ingest_paths, again", documents / min(i["again"] for i in inners)),
        ("baseline", documents / floor.cpu_seconds),
    ]
    return [
        "documents per CPU-second (target >= 10,000 fresh; re-ingest faster still): "
        + ", ".join(f"{name} {rate:,.0f}" for name, rate in per_cpu),
        ratio_line("ingest / baseline", fresh, floor),
        ratio_line("re-ingest / ingest", again, fresh, target="> 1"),
    ]


def _segment_digests(root: Path) -> list[tuple[str, str]]:
    from stella.ledger.store import LedgerStore

    return [(s.name, s.digest) for s in LedgerStore(str(root)).segments("bench")]


def _generate(work: Path, records: int) -> list[str]:
    floor = measure(
        "baseline: generator alone + sha256",
        [sys.executable, "-m", "benchmarks.ingest", "--child", "generator", str(records)],
        items=records,
    )
    runs: list[Measurement] = []
    for workers in (1, 2):
        root = work / f"generate-{workers}"
        command = [str(BIN / "stella"), "ledger", "generate", "--tenant", "bench", "--records", str(records),
                   "--seed", "7", "--advisories-only", "--workers", str(workers), "--ledger", str(root),
                   "--ingested-at", T0, "--json", "--quiet"]  # fmt: skip
        runs.append(measure(f"stella ledger generate --workers {workers}", command, items=records))
    one, two = runs
    identical = _segment_digests(work / "generate-1") == _segment_digests(work / "generate-2")
    if not identical:
        raise SystemExit("generate: --workers 1 and --workers 2 made different ledgers")
    print_table(f"generate, {records:,} synthetic OSV advisories", [floor, one, two])
    rate = records / one.cpu_seconds
    minutes = TEN_MILLION / rate / 60
    return [
        f"generate: {rate:,.0f} documents per CPU-second; 10M documents = {minutes:.1f} CPU-minutes, "
        f"{minutes / 2:.1f} min on 2 idle cores (target < 15 min); ledgers of 1 and 2 workers identical",
        ratio_line("generate / generator alone", one, floor),
        ratio_line("generate --workers 2 / --workers 1", two, one),
    ]


def run(records: int = 100_000, *, repeat: int = 3) -> None:
    work = Path(tempfile.mkdtemp(prefix="stella-bench-ingest-"))
    try:
        lines = _ingest(work, repeat)
        lines += _generate(work, records)
        print("\n".join(lines))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=100_000, help="documents to generate")
    parser.add_argument(
        "--repeat", type=int, default=3, help="ingest runs of each kind; the least CPU counts"
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, *rest = args.child
        if mode == "floor":
            _floor(rest)
        elif mode == "steady":
            _steady(rest)
        else:
            _generator_floor(int(rest[0]))
        return
    run(args.records, repeat=args.repeat)


if __name__ == "__main__":
    main()
