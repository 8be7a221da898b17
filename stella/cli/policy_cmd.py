"""``stella policy publish | list``: pinned policy snapshots per tenant."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from stella.cli.common import LEDGER_HELP, TENANT_HELP, ledger_root, tenant_of
from stella.policy.language import load_policy
from stella.policy.snapshot import SnapshotStore, canonical_snapshot

__all__ = ["register"]


def register(groups: Any) -> None:
    policy = groups.add_parser("policy", help="publish and list pinned policy snapshots (json:policy)")
    commands = policy.add_subparsers(dest="command", metavar="COMMAND")

    publish = commands.add_parser(
        "publish", help="validate a policy YAML file and store it as a content-addressed snapshot"
    )
    publish.add_argument("path", metavar="POLICY.yaml", help="policy file (docs/policy.md)")
    publish.add_argument("--tenant", help=TENANT_HELP)
    publish.add_argument("--ledger", help=LEDGER_HELP)
    publish.set_defaults(handler=_publish)

    listing = commands.add_parser("list", help="the tenant's published snapshots")
    listing.add_argument("--tenant", help=TENANT_HELP)
    listing.add_argument("--ledger", help=LEDGER_HELP)
    listing.set_defaults(handler=_list)


def _publish(args: argparse.Namespace) -> int:
    tenant = tenant_of(args.tenant)
    snapshot = canonical_snapshot(load_policy(args.path, now=datetime.now(UTC)))
    _path, created = SnapshotStore(ledger_root(args.ledger)).publish(tenant, snapshot)
    result = {
        "snapshotId": snapshot.id,
        "tenant": tenant,
        "name": snapshot.policy.name,
        "rules": len(snapshot.policy.rules),
        "exceptions": len(snapshot.policy.exceptions),
        "created": created,
    }
    args.output.result(result)
    if not args.output.json:
        print(snapshot.id)
    return 0


def _list(args: argparse.Namespace) -> int:
    tenant = tenant_of(args.tenant)
    snapshots = SnapshotStore(ledger_root(args.ledger)).list(tenant)
    rows = [
        {
            "snapshotId": s.id,
            "name": s.policy.name,
            "rules": len(s.policy.rules),
            "exceptions": len(s.policy.exceptions),
            "nextExpiry": min((e.expires for e in s.policy.exceptions), default=None),
        }
        for s in snapshots
    ]
    args.output.result({"tenant": tenant, "snapshots": rows})
    if args.output.json:
        return 0
    print(f"{'snapshot id':<72} {'name':<24} rules exceptions")
    for row in rows:
        print(f"{row['snapshotId']:<72} {row['name']:<24} {row['rules']:>5} {row['exceptions']:>10}")
    return 0
