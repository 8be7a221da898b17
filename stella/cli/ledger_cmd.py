"""``stella ledger ingest | generate | stats | tenants | quarantine``."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from stella import storage
from stella.cli.common import (
    LEDGER_HELP,
    TENANT_HELP,
    human_bytes,
    ingest_time,
    ledger_root,
    plural,
    tenant_of,
)
from stella.errors import InputError, UsageError
from stella.ledger.generate import generate_ledger
from stella.ledger.ingest import ingest_paths
from stella.ledger.stats import ledger_stats
from stella.ledger.store import LedgerStore
from stella.model import validate_tenant

__all__ = ["register"]

STDIN = "-"


def register(groups: Any) -> None:
    ledger = groups.add_parser("ledger", help="ingest, generate and inspect the evidence ledger")
    commands = ledger.add_subparsers(dest="command", metavar="COMMAND")

    ingest = commands.add_parser(
        "ingest",
        help="ingest OSV/CycloneDX/SPDX/OpenVEX/CSAF files, folders and JSONL streams (- reads stdin)",
        description="Exit 7 when nothing usable was found (an empty folder, every document rejected), "
        "or with --strict when anything was rejected.",
    )
    ingest.add_argument("--tenant", help=TENANT_HELP)
    ingest.add_argument("--ledger", help=LEDGER_HELP)
    ingest.add_argument(
        "--ingested-at", help="record this receive time (default SOURCE_DATE_EPOCH, else now)"
    )
    ingest.add_argument(
        "--strict", action="store_true", help="exit 7 if any document was rejected or any input file refused"
    )
    ingest.add_argument(
        "--from-mirror",
        metavar="DIR",
        help="load a mirror's records (stella mirror import) with their original provenance, instead of PATHs",
    )
    ingest.add_argument(
        "paths", nargs="*", metavar="PATH", help="files, folders, or - for one document or JSONL on stdin"
    )
    ingest.set_defaults(handler=_ingest)

    generate = commands.add_parser("generate", help="add realistic synthetic documents (demo, benchmarks)")
    generate.add_argument("--tenant", help=TENANT_HELP)
    generate.add_argument("--records", type=int, required=True, help="documents to generate")
    generate.add_argument("--seed", type=int, default=0, help="random seed (default 0: reproducible)")
    generate.add_argument("--advisories-only", action="store_true", help="only OSV advisories")
    generate.add_argument("--workers", type=int, help="worker processes (default: CPU count)")
    generate.add_argument("--ledger", help=LEDGER_HELP)
    generate.add_argument(
        "--ingested-at", help="record this receive time (default SOURCE_DATE_EPOCH, else now)"
    )
    generate.set_defaults(handler=_generate)

    stats = commands.add_parser(
        "stats", help="counts per kind and format, segments and quarantine (every tenant without --tenant)"
    )
    stats.add_argument("--tenant", help="only this tenant (default: every tenant, or $STELLA_TENANT)")
    stats.add_argument("--ledger", help=LEDGER_HELP)
    stats.set_defaults(handler=_stats)

    tenants = commands.add_parser("tenants", help="list the ledger's tenants with record and segment counts")
    tenants.add_argument("--ledger", help=LEDGER_HELP)
    tenants.set_defaults(handler=_tenants)

    quarantine = commands.add_parser(
        "quarantine", help="list or purge rejected documents kept with their reason"
    )
    actions = quarantine.add_subparsers(dest="action", metavar="ACTION")
    listing = actions.add_parser("ls", help="list quarantined documents: source, reason, when")
    listing.add_argument("--tenant", help=TENANT_HELP)
    listing.add_argument("--ledger", help=LEDGER_HELP)
    listing.set_defaults(handler=_quarantine_ls)
    purge = actions.add_parser("purge", help="delete a tenant's quarantined documents (after review)")
    purge.add_argument("--tenant", help=TENANT_HELP)
    purge.add_argument("--ledger", help=LEDGER_HELP)
    purge.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing")
    purge.set_defaults(handler=_quarantine_purge)


@contextmanager
def _stdin_paths(paths: list[str]) -> Iterator[list[str]]:
    """``-`` becomes a private temporary file named for what stdin holds (one document or JSONL)."""
    if STDIN not in paths:
        yield paths
        return
    if paths.count(STDIN) > 1:
        raise UsageError("- (standard input) can be given once")
    with tempfile.TemporaryDirectory(prefix="stella-stdin-") as scratch:
        spool = Path(scratch) / "stdin"
        with spool.open("wb") as out:
            _copy_stdin(out)
        target = spool.with_name("stdin.jsonl" if _is_json_lines(spool) else "stdin.json")
        spool.rename(target)
        yield [str(target) if p == STDIN else p for p in paths]


def _copy_stdin(out: BinaryIO) -> None:
    """Standard input into ``out``; ``-`` with no readable stdin (closed, captured) is a usage error, not a crash.

    Raises:
        UsageError: stdin is closed or cannot be read.
    """
    stdin = sys.stdin
    try:
        if stdin is None:  # the process was started with file descriptor 0 closed
            raise OSError("standard input is closed")
        shutil.copyfileobj(stdin.buffer, out, 1 << 20)
    except (OSError, ValueError) as exc:  # ValueError: read of a closed file
        raise UsageError(
            f"- means read documents from standard input, but it cannot be read ({exc}); "
            "pipe the documents in (… | stella ledger ingest -) or name files or folders instead"
        ) from exc


def _is_json_lines(path: Path) -> bool:
    """Several non-empty lines, the first a complete JSON value: a JSONL stream."""
    with path.open("rb") as handle:
        first = handle.readline()
        rest = any(line.strip() for line in handle)
    try:
        json.loads(first)
    except ValueError:
        return False
    return rest


def _counter(stage: str, args: argparse.Namespace) -> Callable[[int], None]:
    """A cumulative-count callback as progress deltas."""
    seen = [0]

    def update(done: int) -> None:
        args.progress.advance(stage, done=done - seen[0], unit="documents")
        seen[0] = done

    return update


def _ingest(args: argparse.Namespace) -> int:
    store = LedgerStore(ledger_root(args.ledger))
    tenant = tenant_of(args.tenant)
    when = ingest_time(args.ingested_at)
    if bool(args.from_mirror) == bool(args.paths):
        raise UsageError("give either PATHs to ingest or --from-mirror DIR")
    if args.from_mirror:
        from stella.mirror.ledger import ingest_mirror

        report = ingest_mirror(store, tenant, Path(args.from_mirror))
    else:
        with _stdin_paths(list(args.paths)) as paths:
            report = ingest_paths(store, tenant, paths, ingested_at=when, progress=_counter("read", args))
    _notify_schedules(report.tenant, {kind for (kind, _fmt), n in report.added.items() if n})
    summary = report.to_json()
    if report.total_added + report.total_duplicates == 0:
        args.output.keep(summary)
        what = (
            f"every one of {plural(len(report.rejections), 'document')} was rejected"
            if report.rejections
            else "no JSON documents found"
        )
        if not args.output.json:
            _print_ingest(store, report)
        raise InputError(
            f"nothing ingested into tenant {tenant}: {what} in {' '.join(args.paths)}",
            details={"rejected": len(report.rejections), "skippedFiles": len(report.skipped_files)},
        )
    args.output.result(summary)
    if not args.output.json:
        _print_ingest(store, report)
    if args.strict and (report.rejections or report.refused):
        return 7
    return 0


def _notify_schedules(tenant: str, kinds: set[str]) -> None:
    """Record one ``ingest:<kind>`` event per kind added, for ``--on ingest:…`` schedules.

    Only into an existing SQLite store (or a configured PostgreSQL one): without a
    store nobody listens, and an ingest must not create a database as a side effect.
    """
    if not kinds:
        return
    from stella.service.config import ServiceConfig

    url = ServiceConfig.from_env().store_url
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).is_file():
        return
    # The store's own modules, not the schedule commands (which import every target).
    from stella.schedules.scheduler import record_ingest
    from stella.service.store.schedules import open_schedule_store

    record_ingest(open_schedule_store(url), tenant, kinds, datetime.now(UTC))


def _print_ingest(store: LedgerStore, report: Any) -> None:
    print(f"ledger {store.root}, tenant {report.tenant}")
    print(f"{'kind':<10} {'format':<14} {'added':>8} {'duplicate':>10}")
    for kind, fmt in sorted(set(report.added) | set(report.duplicates)):
        print(f"{kind:<10} {fmt:<14} {report.added[(kind, fmt)]:>8} {report.duplicates[(kind, fmt)]:>10}")
    print(f"{'total':<25} {report.total_added:>8} {report.total_duplicates:>10}")
    if report.skipped_files:
        print(
            f"skipped {plural(len(report.skipped_files), 'file')} that are not JSON documents "
            f"(e.g. {report.skipped_files[0]})"
        )
    if report.future_dated:
        source, upstream_id, modified = report.future_dated[0]
        print(
            f"{plural(len(report.future_dated), 'document')} claim a modified time after their ingestion "
            f"(e.g. {upstream_id} in {source}: {modified}); kept as received, dated at ingestion in bundles"
        )
    if report.placeholder_times:
        source, upstream_id, note = report.placeholder_times[0]
        print(
            f"{plural(len(report.placeholder_times), 'document')} carry a placeholder time "
            f"(e.g. {upstream_id} in {source}: {note})"
        )
    for label, kind in report.refused:
        print(f"refused {label}: a {kind}, not a regular file (not read)")
    if report.cleaned:
        print(f"removed {plural(len(report.cleaned), 'temp file')} left by killed runs")
    if report.rejections:
        print(f"rejected {len(report.rejections):,} (quarantined with their bytes):")
        for rejection in report.rejections:
            print(f"  {rejection.source}: {rejection.reason}")


def _generate(args: argparse.Namespace) -> int:
    store = LedgerStore(ledger_root(args.ledger))
    if args.records < 1:
        raise UsageError(f"--records must be at least 1, not {args.records}")
    seen = [0]

    def update(done: int, total: int) -> None:
        args.progress.advance("generate", done=done - seen[0], total=total, unit="documents")
        seen[0] = done

    report = generate_ledger(
        store,
        tenant_of(args.tenant),
        args.records,
        seed=args.seed,
        ingested_at=ingest_time(args.ingested_at),
        workers=args.workers,
        advisories_only=args.advisories_only,
        progress=update,
    )
    args.progress.end("generate")
    args.output.result(
        {
            "tenant": report.tenant,
            "requested": report.requested,
            "added": report.added,
            "segments": [s.name for s in report.segments],
        }
    )
    if not args.output.json:
        print(
            f"ledger {store.root}, tenant {report.tenant}: added {report.added:,} of "
            f"{plural(report.requested, 'synthetic document')} in {plural(len(report.segments), 'segment')}"
        )
    return 0


def _stats(args: argparse.Namespace) -> int:
    store = LedgerStore(ledger_root(args.ledger))
    chosen = args.tenant or _env_tenant()
    names = [validate_tenant(chosen)] if chosen else store.tenants()
    if not names:
        _raise_empty_ledger(store)
    tenants = [ledger_stats(store, name) for name in names]
    args.output.result({"ledger": store.root, "tenants": [stats.to_json() for stats in tenants]})
    if args.output.json:
        return 0
    for stats in tenants:
        print(
            f"ledger {stats.ledger}, tenant {stats.tenant}: {plural(stats.records, 'record')} in "
            f"{plural(len(stats.segments), 'segment')} ({human_bytes(stats.bytes)}), "
            f"{stats.quarantined:,} quarantined ({plural(stats.quarantine_rejections, 'rejection')})"
        )
        if stats.quarantine_torn:
            print(
                f"  {plural(len(stats.quarantine_torn), 'quarantine reason file')} torn (unreadable): "
                + ", ".join(stats.quarantine_torn)
            )
        for (kind, fmt), n in stats.by_kind_format.items():
            print(f"  {kind:<10} {fmt:<14} {n:>9,}")
    return 0


def _env_tenant() -> str | None:
    from stella.cli.common import load_settings

    return load_settings().tenant


def _raise_empty_ledger(store: LedgerStore) -> None:
    from stella.errors import NotFoundError

    raise NotFoundError(
        f"ledger {store.root} has no tenants; ingest some first (stella ledger ingest --tenant T PATH...)",
        details={"ledger": store.root},
    )


def _tenants(args: argparse.Namespace) -> int:
    store = LedgerStore(ledger_root(args.ledger))
    rows: list[dict[str, Any]] = []
    for name in store.tenants():
        segments = store.segments(name)
        rows.append(
            {
                "tenant": name,
                "records": sum(s.records for s in segments),
                "segments": len(segments),
                "bytes": sum(s.bytes for s in segments),
            }
        )
    args.output.result({"ledger": store.root, "tenants": rows})
    if not args.output.json:
        if not rows:
            print(f"ledger {store.root}: no tenants yet")
        for row in rows:
            print(
                f"{row['tenant']:<24} {plural(row['records'], 'record'):>16}  "
                f"{plural(row['segments'], 'segment'):>12}  {human_bytes(row['bytes']):>10}"
            )
    return 0


def _quarantine_entries(store: LedgerStore, tenant: str) -> list[dict[str, Any]]:
    return sorted(
        store.quarantined(tenant), key=lambda e: (str(e.get("source", e.get("file"))), str(e.get("reason")))
    )


def _quarantine_ls(args: argparse.Namespace) -> int:
    store = LedgerStore(ledger_root(args.ledger))
    tenant = tenant_of(args.tenant)
    entries = _quarantine_entries(store, tenant)
    args.output.result({"tenant": tenant, "quarantined": entries})
    if not args.output.json:
        print(f"tenant {tenant}: {plural(len(entries), 'quarantined document')}")
        for entry in entries:
            if entry.get("torn"):
                print(f"  {entry['file']}: torn reason file (unreadable)")
            else:
                print(f"  {', '.join(entry.get('sources', [entry.get('source')]))}: {entry.get('reason')}")
    return 0


def _quarantine_purge(args: argparse.Namespace) -> int:
    store = LedgerStore(ledger_root(args.ledger))
    tenant = tenant_of(args.tenant)
    folder = storage.join(store.root, "tenants", tenant, "quarantine")
    files = [*storage.list_files(folder, ".json"), *storage.list_files(folder, ".bin")]
    if not args.dry_run:
        for path in files:
            storage.remove(path)
    documents = sum(1 for f in files if f.endswith(".json"))
    args.output.result({"tenant": tenant, "purged": documents, "dryRun": args.dry_run})
    if not args.output.json:
        verb = "would purge" if args.dry_run else "purged"
        print(f"tenant {tenant}: {verb} {plural(documents, 'quarantined document')}")
    return 0
