"""``stella export push BUNDLE --to HOST[:PORT]/REPO[:TAG]``: a Trivy bundle's OCI artifact to a registry.

Pushing is egress, so it is explicit configuration (BRIEF contract 11): the destination
must be loopback or on the allowlist (``--allow-host``, or ``STELLA_EGRESS_ALLOWLIST``
as a comma-separated list), and plain HTTP is used only for loopback or with
``--allow-plain-http``. Registry credentials come from ``--username`` and the
``STELLA_REGISTRY_PASSWORD`` environment variable, never from the command line, where
other users could read them. What a push checks is :func:`stella.targets.bundles.push_bundle`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from stella.cli.egress_flags import add_egress_arguments, egress_from_args
from stella.cli.trust_flags import add_trust_arguments, trust_from_args
from stella.targets.bundles import push_bundle
from stella.targets.oci import OciRegistryTarget

__all__ = ["register"]


def register(commands: Any) -> None:
    push = commands.add_parser(
        "push",
        help="push a Trivy bundle's OCI artifact to a registry (trivy:db, trivy:java-db)",
        description="Verifies the bundle (folder or .tar.zst; with --key/--trust-root its signatures "
        "too), then pushes its data/oci layout. Trivy pulls it with "
        "--db-repository HOST:PORT/REPO:2 (or --java-db-repository …:1). "
        "Exit codes as for verify (3, 4, 5), 8 egress denied, 13 registry failure.",
    )
    push.add_argument("bundle", metavar="BUNDLE", help="bundle folder or .tar.zst archive")
    add_trust_arguments(push, "verify signatures with this public key before pushing")
    push.add_argument("--to", required=True, metavar="HOST[:PORT]/REPO[:TAG]", help="tag defaults to 2 or 1")
    add_egress_arguments(push, retries=False)
    push.set_defaults(handler=_push)


def _push(args: argparse.Namespace) -> int:
    egress = egress_from_args(args)
    target = OciRegistryTarget(reference=args.to, policy=egress.policy, credentials=egress.credentials)
    args.progress.note(f"pushing {args.bundle} to {args.to}...")
    pushed = push_bundle(Path(args.bundle), target, trust=trust_from_args(args))
    args.output.result(
        {
            "bundle": str(pushed.bundle),
            "exportId": pushed.export_id,
            "reference": args.to,
            "location": pushed.published.location,
            "digest": pushed.published.digest,
            "signature": pushed.signature,
        }
    )
    if not args.output.json:
        print(f"pushed {pushed.export_id} to {args.to} as {pushed.published.digest}")
    return 0
