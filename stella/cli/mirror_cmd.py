"""``stella mirror import | status``: the air-gapped side of mirror:full / mirror:delta."""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stella.cli import trust_flags
from stella.documents.interface import normalize_time
from stella.encryption.recipients import load_identities
from stella.errors import InputError, NotFoundError, UsageError

__all__ = ["register"]


def register(groups: Any) -> None:
    mirror = groups.add_parser(
        "mirror", help="import mirror bundles into an air-gapped mirror and inspect it"
    )
    commands = mirror.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "import",
        help="verify a mirror:full or mirror:delta bundle and apply it atomically",
        description="Exit codes: 0 applied (or would apply, --dry-run); 3/4/5 verification; "
        "18 rollback or replay; 19 expired; 20 delta does not apply to the current state; "
        "21 other tenant or mirror name. The mirror is unchanged whenever the exit code is not 0.",
    )
    run.add_argument("bundle", metavar="BUNDLE", help="bundle folder or .tar.zst")
    run.add_argument("--into", required=True, metavar="DIR", help="the mirror folder (created if missing)")
    trust_flags.add_trust_arguments(run, "the exporter's public key (PEM) to trust")
    run.add_argument(
        "--identity", action="append", default=[], metavar="FILE|PKCS11-URI", help="key for encrypted bundles"
    )
    run.add_argument("--now", help="the import's clock (RFC 3339; default: the system clock, read once)")
    run.add_argument("--dry-run", action="store_true", help="verify and report, change nothing")
    run.set_defaults(handler=_import)

    status = commands.add_parser("status", help="what a mirror holds: export, sequence, freshness, history")
    status.add_argument("mirror", metavar="DIR", help="the mirror folder")
    status.add_argument("--now", help="clock for the freshness check (default: the system clock)")
    status.set_defaults(handler=_status)


def _now(value: str | None) -> datetime:
    if not value:
        return datetime.now(UTC)
    try:
        normalized = normalize_time(value, field="--now")
    except InputError as exc:
        raise UsageError(f"--now {value!r} is not an RFC 3339 time") from exc
    assert normalized is not None
    return datetime.fromisoformat(normalized.replace("Z", "+00:00"))


def _import(args: argparse.Namespace) -> int:
    from stella.mirror.importer import import_bundle

    trust = trust_flags.trust_from_args(args)
    if trust is None:
        raise UsageError("a mirror imports only verified bundles: give --trust-root FILE or --key PUB")
    args.progress.note(f"verifying {args.bundle}...")
    outcome = import_bundle(
        Path(args.bundle),
        Path(args.into),
        trust=trust,
        now=_now(args.now),
        identities=load_identities(args.identity, environ=os.environ),
        dry_run=args.dry_run,
    )
    args.output.result(outcome.to_json())
    if args.output.json:
        return 0
    verb = "would apply" if outcome.dry_run else "applied"
    print(f"{verb:<11} {outcome.export_id} ({outcome.mode}, sequence {outcome.sequence}) to {outcome.mirror}")
    print(f"records     +{outcome.added} added, ~{outcome.changed} changed, -{outcome.removed} removed")
    return 0


def _status(args: argparse.Namespace) -> int:
    from stella.mirror.state import applied_log, current_state

    root = Path(args.mirror)
    state = current_state(root) if root.is_dir() else None
    if state is None:
        raise NotFoundError(
            f"{root} holds no mirror; import a mirror:full bundle first", details={"mirror": str(root)}
        )
    value = dict(state.value)
    now = _now(args.now)
    expires = datetime.fromisoformat(str(value["expires"]).replace("Z", "+00:00"))
    log = applied_log(state)
    summary = {
        "mirror": str(root),
        "tenant": value["tenant"],
        "name": value["name"],
        "exportId": value["exportId"],
        "sequence": value["sequence"],
        "mode": value["mode"],
        "generatedAt": value["generatedAt"],
        "expires": value["expires"],
        "expired": now > expires,
        "counts": value["counts"],
        "recordSet": value["recordSet"],
        "files": len(value["contents"]),
        "applied": log,
    }
    args.output.result(summary)
    if args.output.json:
        return 0
    counts = ", ".join(f"{k} {v}" for k, v in value["counts"].items()) or "no records"
    print(f"mirror      {root}   tenant {value['tenant']}   name {value['name']}")
    print(f"export      {value['exportId']} ({value['mode']}, sequence {value['sequence']})")
    print(
        f"data as of  {value['generatedAt']}   expires {value['expires']}"
        + ("   EXPIRED" if summary["expired"] else "")
    )
    print(f"records     {counts}")
    print(f"history     {len(log)} applied exports (appliedExportIds.log)")
    return 0
