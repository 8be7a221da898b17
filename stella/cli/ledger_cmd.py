"""``stella ledger ingest | generate | stats``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from stella.cli.common import emit_json, human_bytes, ingest_time, ledger_root, progress_line
from stella.errors import UsageError
from stella.ledger.generate import generate_ledger
from stella.ledger.ingest import ingest_paths
from stella.ledger.stats import ledger_stats
from stella.ledger.store import LedgerStore
from stella.model import validate_tenant

__all__ = ["register"]


def register(groups: Any) -> None:
    ledger = groups.add_parser("ledger", help="ingest, generate and inspect the evidence ledger")
    commands = ledger.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    ingest = commands.add_parser(
        "ingest", help="ingest OSV/CycloneDX/SPDX/OpenVEX/CSAF files, folders and JSONL streams"
    )
    ingest.add_argument("--tenant", required=True)
    ingest.add_argument(
        "--ledger", help="ledger location (default $STELLA_HOME/ledger); a gs:// URL works too"
    )
    ingest.add_argument(
        "--ingested-at", help="record this receive time (default SOURCE_DATE_EPOCH, else now)"
    )
    ingest.add_argument(
        "--strict", action="store_true", help="exit 7 if any document was rejected or any input file refused"
    )
    ingest.add_argument("--json", action="store_true", help="print the report as JSON")
    ingest.add_argument(
        "--from-mirror",
        metavar="DIR",
        help="load a mirror's records (stella mirror import) with their original provenance, instead of PATHs",
    )
    ingest.add_argument("paths", nargs="*", metavar="PATH")
    ingest.set_defaults(handler=_ingest)

    generate = commands.add_parser("generate", help="add realistic synthetic documents (demo, benchmarks)")
    generate.add_argument("--tenant", required=True)
    generate.add_argument("--records", type=int, required=True)
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--advisories-only", action="store_true", help="only OSV advisories")
    generate.add_argument("--workers", type=int, help="worker processes (default: CPU count)")
    generate.add_argument("--ledger")
    generate.add_argument("--ingested-at")
    generate.add_argument("--json", action="store_true")
    generate.set_defaults(handler=_generate)

    stats = commands.add_parser("stats", help="counts per kind and format, segments and quarantine")
    stats.add_argument("--tenant", required=True)
    stats.add_argument("--ledger")
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(handler=_stats)


def _ingest(args: argparse.Namespace) -> int:
    store = LedgerStore(ledger_root(args.ledger))
    if bool(args.from_mirror) == bool(args.paths):
        raise UsageError("give either PATHs to ingest or --from-mirror DIR")
    if args.from_mirror:
        from stella.mirror.ledger import ingest_mirror

        report = ingest_mirror(store, validate_tenant(args.tenant), Path(args.from_mirror))
    else:
        report = ingest_paths(
            store,
            validate_tenant(args.tenant),
            args.paths,
            ingested_at=ingest_time(args.ingested_at),
            progress=lambda n: progress_line(f"read {n} documents..."),
        )
    if args.json:
        emit_json(report.to_json())
    else:
        print(f"ledger {store.root}, tenant {report.tenant}")
        print(f"{'kind':<10} {'format':<14} {'added':>8} {'duplicate':>10}")
        for kind, fmt in sorted(set(report.added) | set(report.duplicates)):
            print(f"{kind:<10} {fmt:<14} {report.added[(kind, fmt)]:>8} {report.duplicates[(kind, fmt)]:>10}")
        print(f"{'total':<25} {report.total_added:>8} {report.total_duplicates:>10}")
        if report.skipped_files:
            print(
                f"skipped {len(report.skipped_files)} files that are not JSON documents (e.g. {report.skipped_files[0]})"
            )
        if report.future_dated:
            source, upstream_id, modified = report.future_dated[0]
            print(
                f"{len(report.future_dated)} document(s) claim a modified time after their ingestion "
                f"(e.g. {upstream_id} in {source}: {modified}); kept as received, dated at ingestion in bundles"
            )
        if report.placeholder_times:
            source, upstream_id, note = report.placeholder_times[0]
            print(
                f"{len(report.placeholder_times)} document(s) carry a placeholder time "
                f"(e.g. {upstream_id} in {source}: {note})"
            )
        for label, kind in report.refused:
            print(f"refused {label}: a {kind}, not a regular file (not read)")
        if report.cleaned:
            print(f"removed {len(report.cleaned)} temp file(s) left by killed runs")
        if report.rejections:
            print(f"rejected {len(report.rejections)} (quarantined with their bytes):")
            for rejection in report.rejections:
                print(f"  {rejection.source}: {rejection.reason}")
    if args.strict and (report.rejections or report.refused):
        return 7
    return 0


def _generate(args: argparse.Namespace) -> int:
    store = LedgerStore(ledger_root(args.ledger))
    report = generate_ledger(
        store,
        validate_tenant(args.tenant),
        args.records,
        seed=args.seed,
        ingested_at=ingest_time(args.ingested_at),
        workers=args.workers,
        advisories_only=args.advisories_only,
        progress=lambda done, total: progress_line(f"generated {done}/{total} documents"),
    )
    if args.json:
        emit_json(
            {
                "tenant": report.tenant,
                "requested": report.requested,
                "added": report.added,
                "segments": [s.name for s in report.segments],
            }
        )
    else:
        if sys.stderr.isatty():
            print(file=sys.stderr)
        print(
            f"ledger {store.root}, tenant {report.tenant}: added {report.added} of {report.requested} "
            f"synthetic documents in {len(report.segments)} segments"
        )
    return 0


def _stats(args: argparse.Namespace) -> int:
    stats = ledger_stats(LedgerStore(ledger_root(args.ledger)), args.tenant)
    if args.json:
        emit_json(stats.to_json())
        return 0
    print(
        f"ledger {stats.ledger}, tenant {stats.tenant}: {stats.records} records in {len(stats.segments)} "
        f"segments ({human_bytes(stats.bytes)}), {stats.quarantined} quarantined "
        f"({stats.quarantine_rejections} rejection(s))"
    )
    if stats.quarantine_torn:
        print(
            f"  {len(stats.quarantine_torn)} quarantine reason file(s) are torn (unreadable): "
            + ", ".join(stats.quarantine_torn)
        )
    for (kind, fmt), n in stats.by_kind_format.items():
        print(f"  {kind:<10} {fmt:<14} {n:>9}")
    return 0
